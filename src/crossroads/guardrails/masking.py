"""Reversible masking: personal data leaves as placeholders and comes back in the answer.

Before the request goes upstream each value found is replaced by a placeholder such as
`<EMAIL_ADDRESS_1>`; the same value always gets the same placeholder within one request, so
the model can still tell two people apart and refer back to them. The answer is unmasked by
swapping placeholders back. One `MaskVault` lives for one request and is never logged: its
`repr` shows placeholders only.

A streamed answer may cut a placeholder in two (`<EMAIL_AD` + `DRESS_1>`). `StreamUnmasker`
holds back a tail that could still become a placeholder and releases everything else at once,
so unmasking costs no buffering beyond the length of one placeholder.
"""

from __future__ import annotations

import re

__all__ = ["MaskVault", "StreamUnmasker"]

_PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]*?)_(\d+)>")


class MaskVault:
    """The per-request map between original values and their placeholders."""

    def __init__(self) -> None:
        self._by_value: dict[tuple[str, str], str] = {}
        self._by_placeholder: dict[str, str] = {}
        self._counts: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"MaskVault(placeholders={sorted(self._by_placeholder)})"

    def __len__(self) -> int:
        return len(self._by_placeholder)

    def __bool__(self) -> bool:
        return bool(self._by_placeholder)

    def placeholder(self, entity: str, value: str) -> str:
        """The placeholder for `value`, made on first sight and stable afterwards."""
        key = (entity, value)
        existing = self._by_value.get(key)
        if existing is not None:
            return existing
        number = self._counts.get(entity, 0) + 1
        self._counts[entity] = number
        made = f"<{entity}_{number}>"
        self._by_value[key] = made
        self._by_placeholder[made] = value
        return made

    @property
    def placeholders(self) -> frozenset[str]:
        return frozenset(self._by_placeholder)

    @property
    def longest(self) -> int:
        """Length of the longest placeholder: how much a stream must hold back at most."""
        return max((len(p) for p in self._by_placeholder), default=0)

    def unmask(self, text: str) -> str:
        """Every known placeholder in `text` back to its value; unknown ones stay as they are."""
        if not self._by_placeholder or "<" not in text:
            return text
        return _PLACEHOLDER.sub(lambda m: self._by_placeholder.get(m.group(0), m.group(0)), text)

    def mask_known(self, text: str) -> str:
        """Every value this vault masked, in `text`, back to its placeholder: for the request
        log, so an unmasked answer is stored masked."""
        if not self._by_value:
            return text
        for (_, value), placeholder in sorted(
            self._by_value.items(), key=lambda item: -len(item[0][1])
        ):
            if value and value in text:
                text = text.replace(value, placeholder)
        return text

    def could_become_placeholder(self, tail: str) -> bool:
        """True when `tail` (starting with '<', no '>') is the start of a known placeholder."""
        return any(p.startswith(tail) for p in self._by_placeholder)


class StreamUnmasker:
    """Unmask a streamed answer chunk by chunk, holding back only a possible placeholder start."""

    def __init__(self, vault: MaskVault) -> None:
        self._vault = vault
        self._held = ""

    def feed(self, chunk: str) -> str:
        """Return the unmasked text that is certain now; keep a possible placeholder start."""
        text = self._held + chunk
        self._held = ""
        if not self._vault:
            return text
        cut = text.rfind("<")
        if cut != -1 and ">" not in text[cut:]:
            tail = text[cut:]
            if len(tail) < self._vault.longest and self._vault.could_become_placeholder(tail):
                self._held = tail
                text = text[:cut]
        return self._vault.unmask(text)

    def flush(self) -> str:
        """Whatever is still held, at the end of the stream."""
        rest, self._held = self._held, ""
        return self._vault.unmask(rest)
