"""Who owns a collection: the caller's team when its virtual key has one, else the key.

Members of a team (virtual keys with the same `team`) share the team's collections; any
other key, including config keys, owns its own. Loopback-only mode's single user is "".
"""

from __future__ import annotations

from crossroads.storage.key_store import VirtualKey

__all__ = ["collection_owner"]


def collection_owner(key_id: str | None, virtual_key: VirtualKey | None) -> str:
    if virtual_key is not None and virtual_key.team:
        return f"team:{virtual_key.team}"
    return key_id or ""
