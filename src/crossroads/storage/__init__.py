"""The only place SQL happens: the request log and virtual keys (later usage, collections)."""
