"""Recognizers that replace two of Presidio's own, for speed and to stay offline.

Imported only by `pii.py` once Presidio is known to be installed.

- Phone numbers: Presidio's `PhoneRecognizer` runs libphonenumber's matcher over the text once
  per region and costs about 15 ms per KB of text on one core, three times everything else
  together. Here one regular expression finds candidates and libphonenumber only checks that
  a candidate is a possible number, in well under a millisecond. A bare digit run scores
  below the default threshold unless a context word ("call", "phone", "fax"…) is near, so
  timestamps and ids in technical text are left alone.
- E-mail: Presidio validates the domain with `tldextract`, whose default extractor downloads
  the public suffix list on first use. This one uses the list `tldextract` ships, so analysis
  never touches the network.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import phonenumbers
import tldextract
from presidio_analyzer import Pattern, PatternRecognizer
from presidio_analyzer.predefined_recognizers import EmailRecognizer

__all__ = ["OfflineEmailRecognizer", "PhonePatternRecognizer"]

# Regions tried for numbers written without a country code, most likely first.
_REGIONS = ("US", "GB", "IN", "DE", "FR", "CH", "SE", "CA", "AU", "BR")
_DATE_LIKE = re.compile(r"^\d{4}[-./]\d{1,2}[-./]\d{1,2}$|^\d{1,2}[-./]\d{1,2}[-./]\d{2,4}$")
_DOTTED_QUAD = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")
_EXTENSION = re.compile(r"\s?(?:x|ext\.?)\s?\d{1,5}$", re.IGNORECASE)


class PhonePatternRecognizer(PatternRecognizer):
    """Phone numbers: one regex for candidates, libphonenumber for plausibility."""

    PATTERNS: ClassVar[list[Pattern]] = [
        # International: +CC or 00CC, then digits in groups.
        Pattern(
            "phone (international)",
            r"(?<![\w+])(?:\+|00)[1-9]\d{0,2}[ .-]?(?:\(0\)[ ]?)?(?:\(?\d{1,5}\)?[ .-]?){1,6}\d"
            r"(?:[ ]?(?:x|ext\.?)[ ]?\d{1,5})?(?!\w|-\d|\.\d)",
            0.7,
        ),
        # North American shapes: (415) 555-0132, 415-555-0132, 415.555.0132, 1-415-555-0132.
        Pattern(
            "phone (north american)",
            r"(?<![\w+.-])(?:1[ .-])?(?:\(\d{3}\)[ ]?|\d{3}[.-])\d{3}[.-]\d{4}"
            r"(?:[ ]?(?:x|ext\.?)[ ]?\d{1,5})?(?!\w|-\d|\.\d)",
            0.6,
        ),
        # Other grouped national forms: 07700 900123, (07700) 900 123, 0301 234567.
        Pattern(
            "phone (grouped)",
            r"(?<![\w+.-])(?:\(0\d{2,5}\)|0\d{2,5})[ ]?\d{3,4}[ ]?\d{3,4}(?!\w|-\d|\.\d)",
            0.45,
        ),
        # Bare digit runs of phone length: only with a context word nearby.
        Pattern("phone (digits)", r"(?<![\w+.-])\d{10,11}(?!\w|-\d|\.\d)", 0.3),
        Pattern("phone (digits, split)", r"(?<![\w+.-])\d{3}-\d{7}(?!\w|-\d|\.\d)", 0.3),
    ]
    CONTEXT: ClassVar[list[str]] = [
        "phone",
        "telephone",
        "tel",
        "cell",
        "mobile",
        "call",
        "fax",
        "number",
        "contact",
        "reach",
        "text",
        "sms",
        "whatsapp",
        "desk",
        "office",
        "registered",
        "answering",
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            supported_entity="PHONE_NUMBER",
            patterns=self.PATTERNS,
            context=self.CONTEXT,
            supported_language="en",
            name="PhonePatternRecognizer",
            **kwargs,
        )

    def validate_result(self, pattern_text: str) -> bool | None:
        """Keep a candidate only if libphonenumber finds it possible somewhere."""
        text = _EXTENSION.sub("", pattern_text.strip())
        if _DATE_LIKE.match(text) or _DOTTED_QUAD.match(text):
            return False
        digits = sum(c.isdigit() for c in text)
        if digits < 7 or digits > 15:
            return False
        regions: tuple[str | None, ...] = (None,) if text.startswith(("+", "00")) else _REGIONS
        candidate = "+" + text[2:] if text.startswith("00") else text
        for region in regions:
            try:
                number = phonenumbers.parse(candidate, region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_possible_number(number):
                # None keeps the pattern's own score (True would raise it to the maximum).
                return None
        return False


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's e-mail recognizer with the domain checked against the bundled suffix list."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

    def validate_result(self, pattern_text: str) -> bool:
        return self._extract(pattern_text).fqdn != ""
