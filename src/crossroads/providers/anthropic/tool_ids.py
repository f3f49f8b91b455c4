"""Tool-call ids in Anthropic's alphabet, so a conversation can come from any provider.

Anthropic refuses a `tool_use` id or `tool_use_id` outside `^[a-zA-Z0-9_-]+$`, while other
providers issue ids such as `functions.get_weather:0`; a conversation that began elsewhere
(or fails over to Anthropic mid-way) carries them. Such an id is rewritten on the way in
and restored on the way out.

The one design decision: the rewrite is a pure function of the id — a prefix and the id's
URL-safe base64, itself in Anthropic's alphabet — so a call and its result, translated
apart, still match, no table outlives a request, and the rewrite is undone exactly. Ids
already valid pass unchanged, except those that happen to start with the prefix, which are
encoded too so that decoding never mistakes them for a rewrite.
"""

from __future__ import annotations

import base64
import binascii
import re

__all__ = ["from_anthropic", "to_anthropic"]

_PREFIX = "xid_"
_VALID = re.compile(r"[a-zA-Z0-9_-]+")


def to_anthropic(call_id: str) -> str:
    """`call_id` as an id Anthropic accepts."""
    if _VALID.fullmatch(call_id) and not call_id.startswith(_PREFIX):
        return call_id
    return _PREFIX + base64.urlsafe_b64encode(call_id.encode()).decode().rstrip("=")


def from_anthropic(tool_id: str) -> str:
    """The caller's id for an id `to_anthropic` produced; any other id as it is."""
    if not tool_id.startswith(_PREFIX):
        return tool_id
    encoded = tool_id[len(_PREFIX) :]
    try:
        return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        return tool_id
