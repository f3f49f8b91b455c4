"""The only place SQL happens: the request log (and later keys, usage and collections)."""
