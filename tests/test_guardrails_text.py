"""The text machinery under the guardrails: reversible masking, and the sentences a stream
check is given (pipeline/segments.py).

Both see a streamed answer cut anywhere, so each is checked against every way of cutting a
text into chunks (hypothesis): unmasking chunk by chunk must give what unmasking the whole
gives, and the splitter must hand out the same sentences whatever the chunking.
"""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from crossroads.guardrails.masking import MaskVault, StreamUnmasker
from crossroads.pipeline.segments import Sentences

EMAIL = "jane.doe@example.com"
OTHER = "bob@example.org"
PHONE = "+1 415 555 0132"


def _vault() -> MaskVault:
    vault = MaskVault()
    vault.placeholder("EMAIL_ADDRESS", EMAIL)
    vault.placeholder("EMAIL_ADDRESS", OTHER)
    vault.placeholder("PHONE_NUMBER", PHONE)
    return vault


def test_a_value_keeps_one_placeholder_and_two_values_get_two() -> None:
    vault = MaskVault()
    first = vault.placeholder("EMAIL_ADDRESS", EMAIL)
    assert first == "<EMAIL_ADDRESS_1>"
    assert vault.placeholder("EMAIL_ADDRESS", EMAIL) == first
    assert vault.placeholder("EMAIL_ADDRESS", OTHER) == "<EMAIL_ADDRESS_2>"
    assert vault.placeholder("PHONE_NUMBER", PHONE) == "<PHONE_NUMBER_1>"
    assert len(vault) == 3 and vault.longest == len("<EMAIL_ADDRESS_1>")


def test_the_vault_never_shows_a_value() -> None:
    vault = _vault()
    for shown in (repr(vault), str(vault)):
        assert EMAIL not in shown and PHONE not in shown
        assert "<EMAIL_ADDRESS_1>" in shown


def test_masking_round_trips_and_leaves_unknown_placeholders_alone() -> None:
    vault = _vault()
    original = f"Mail {EMAIL} or {OTHER}, call {PHONE}; {EMAIL} again."
    masked = vault.mask_known(original)
    assert EMAIL not in masked and OTHER not in masked and PHONE not in masked
    assert masked == (
        "Mail <EMAIL_ADDRESS_1> or <EMAIL_ADDRESS_2>, call <PHONE_NUMBER_1>; "
        "<EMAIL_ADDRESS_1> again."
    )
    assert vault.unmask(masked) == original
    # A placeholder the vault never made (the model invented it) is left as written.
    assert vault.unmask("<EMAIL_ADDRESS_9> and <PERSON_1>") == "<EMAIL_ADDRESS_9> and <PERSON_1>"


def test_mask_known_replaces_the_longest_value_first() -> None:
    vault = MaskVault()
    vault.placeholder("EMAIL_ADDRESS", "a@b.co")
    vault.placeholder("EMAIL_ADDRESS", "xa@b.com")
    assert vault.mask_known("xa@b.com, a@b.co") == "<EMAIL_ADDRESS_2>, <EMAIL_ADDRESS_1>"


def test_an_empty_vault_changes_nothing() -> None:
    vault = MaskVault()
    assert not vault
    assert vault.unmask("<EMAIL_ADDRESS_1>") == "<EMAIL_ADDRESS_1>"
    assert vault.mask_known(EMAIL) == EMAIL
    unmasker = StreamUnmasker(vault)
    assert unmasker.feed("<EMAIL_AD") == "<EMAIL_AD"


def test_a_placeholder_cut_across_chunks_is_held_then_unmasked() -> None:
    unmasker = StreamUnmasker(_vault())
    assert unmasker.feed("Write to <EMAIL_AD") == "Write to "
    assert unmasker.feed("DRESS_1") == ""
    assert unmasker.feed("> today <") == f"{EMAIL} today "
    # "<" then text that no placeholder starts with is released at once.
    assert unmasker.feed("b>") == "<b>"
    assert unmasker.feed(" x <PHONE") == " x "
    assert unmasker.flush() == "<PHONE"
    assert unmasker.flush() == ""


_MASKED = (
    "Dear <EMAIL_ADDRESS_1>, forward to <EMAIL_ADDRESS_2> < 3 times or call <PHONE_NUMBER_1>."
    " Keep <b>tags</b> and <EMAIL_ADDRESS_7> as they are. <PHONE_NUMBER_1>"
)


@st.composite
def _chunkings(draw: st.DrawFn, text: str) -> list[str]:
    cuts = sorted(draw(st.sets(st.integers(1, len(text) - 1), max_size=25)))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=200, deadline=None)
@given(chunks=_chunkings(_MASKED))
def test_unmasking_a_stream_equals_unmasking_the_whole(chunks: list[str]) -> None:
    vault = _vault()
    unmasker = StreamUnmasker(vault)
    out = "".join(unmasker.feed(c) for c in chunks) + unmasker.flush()
    assert out == vault.unmask(_MASKED)
    assert EMAIL in out and "<EMAIL_ADDRESS_7>" in out and "<b>tags</b>" in out


def split_sentences(text: str) -> list[str]:
    """A whole text as the sentences the stream would have been cut into."""
    cut = Sentences()
    return cut.push(text) + cut.flush()


def test_sentence_ends_that_are_not_ends() -> None:
    text = (
        "Version 3.5 is out, e.g. on example.com today. Dr. Smith agreed! "
        "Is it U.S. only? Yes.\nNext line"
    )
    assert split_sentences(text) == [
        "Version 3.5 is out, e.g. on example.com today. ",
        "Dr. Smith agreed! ",
        "Is it U.S. only? ",
        "Yes.\n",
        "Next line",
    ]


def test_a_sentence_waits_until_its_end_is_certain() -> None:
    splitter = Sentences()
    assert splitter.push("It ends here.") == []
    assert splitter.push(" ") == []  # the next sentence has not started yet
    assert splitter.push("And") == ["It ends here. "]
    assert splitter.push(" then\n") == []  # trailing line breaks wait for the next text
    assert splitter.push("\nmore") == ["And then\n\n"]
    assert splitter.pending == "more"
    assert splitter.flush() == ["more"] and splitter.flush() == []


def test_an_endless_sentence_is_cut_at_a_space_within_the_limit() -> None:
    splitter = Sentences(max_chars=50)
    words = "word " * 30
    out = splitter.push(words)
    assert len(out) >= 2 and all(len(s) <= 50 for s in out)
    assert len(splitter.pending) <= 50
    assert all(s.endswith(" ") for s in out)
    assert "".join(out + splitter.flush()) == words
    assert len(Sentences(max_chars=10).push("x" * 25)) == 2


_PROSE = (
    "Call me at 415.555.0132 today. The bill was $3.50, i.e. cheap! Really?\n"
    'Mr. Jones (not Dr. No) said: "stop." Then he left... Quietly. 2. Item two.\n\nEnd'
)


@settings(max_examples=200, deadline=None)
@given(chunks=_chunkings(_PROSE))
def test_sentences_do_not_depend_on_how_the_stream_was_cut(chunks: list[str]) -> None:
    splitter = Sentences()
    sentences = [s for c in chunks for s in splitter.push(c)] + splitter.flush()
    assert sentences == split_sentences(_PROSE)
    assert "".join(sentences) == _PROSE
    # The phone number is never split between two sentences.
    assert any("415.555.0132" in s for s in sentences)
