"""The PII engine on its own: what Presidio finds with the offline model, what it leaves alone
in technical text, redaction, reversible masking, and failing closed or open when the
analyzer breaks."""

from __future__ import annotations

from typing import Any

import pytest
from presidio_analyzer import EntityRecognizer

from crossroads.guardrails.config import GuardrailSet, PiiCheck
from crossroads.guardrails.errors import GuardrailError
from crossroads.guardrails.masking import MaskVault
from crossroads.guardrails.pii import PiiEngine
from crossroads.guardrails.runner import GuardrailEngines

SAMPLES = {
    "EMAIL_ADDRESS": "jane.doe@example.com",
    "PHONE_NUMBER": "+44 20 7946 0958",
    "CREDIT_CARD": "4111 1111 1111 1111",
    "US_SSN": "536-22-8726",
    "IP_ADDRESS": "192.168.10.24",
    "IBAN_CODE": "DE89370400440532013000",
}
DEFAULT = tuple(SAMPLES)
TECHNICAL = (
    "Deploy the S3 bucket and the EKS cluster on C4 instances, then call the API on port 8080. "
    "Upgrade Kubernetes to v1.29 and Redis 7.2, give the pod 4 GiB, and run commit 3f9a2c1e4b7d "
    "of build 20240117 through GitHub Actions; ticket INC-20931 tracks it."
)


@pytest.fixture(scope="module")
def engine() -> PiiEngine:
    return PiiEngine()


def _found(engine: PiiEngine, text: str, entities: tuple[str, ...] = DEFAULT) -> list[Any]:
    return [(d.kind, text[d.start : d.end]) for d in engine.analyze(text, entities)]


@pytest.mark.parametrize("entity", DEFAULT)
def test_each_default_entity_is_found_where_it_is(engine: PiiEngine, entity: str) -> None:
    value = SAMPLES[entity]
    text = f"Please note the details: {value} for the account."
    assert _found(engine, text) == [(entity, value)]


def test_technical_text_has_no_personal_data(engine: PiiEngine) -> None:
    assert _found(engine, TECHNICAL) == []
    ner = ("PERSON", "LOCATION", "ORGANIZATION")
    reported = [value for _, value in _found(engine, TECHNICAL, ner)]
    for term in ("S3", "EKS", "C4", "API", "Kubernetes", "Redis 7.2", "GiB", "GitHub Actions"):
        assert term not in reported


def test_names_and_places_need_the_ner_entities(engine: PiiEngine) -> None:
    text = "Yesterday Maria Gonzalez flew from Madrid to see her sister."
    assert _found(engine, text) == []
    found = _found(engine, text, ("PERSON", "LOCATION"))
    assert ("PERSON", "Maria Gonzalez") in found and ("LOCATION", "Madrid") in found


def test_the_allow_list_and_the_threshold(engine: PiiEngine) -> None:
    text = "Write to support@example.com or jane.doe@example.com."
    kept = engine.analyze(text, DEFAULT, allow=("support@example.com",))
    assert [text[d.start : d.end] for d in kept] == ["jane.doe@example.com"]
    assert engine.analyze(text, DEFAULT, threshold=1.01) == []
    assert engine.analyze("", DEFAULT) == []


def test_redaction_names_the_entity_type(engine: PiiEngine) -> None:
    text = f"Card {SAMPLES['CREDIT_CARD']}, mail {SAMPLES['EMAIL_ADDRESS']}."
    redacted = engine.redact(text, engine.analyze(text, DEFAULT))
    assert redacted == "Card <CREDIT_CARD>, mail <EMAIL_ADDRESS>."


def test_reversible_masking_round_trips(engine: PiiEngine) -> None:
    text = (
        f"From {SAMPLES['EMAIL_ADDRESS']} to bob@example.org, cc {SAMPLES['EMAIL_ADDRESS']}; "
        f"call {SAMPLES['PHONE_NUMBER']}, SSN {SAMPLES['US_SSN']}."
    )
    vault = MaskVault()
    masked = engine.mask(text, engine.analyze(text, DEFAULT), vault)
    assert masked == (
        "From <EMAIL_ADDRESS_1> to <EMAIL_ADDRESS_2>, cc <EMAIL_ADDRESS_1>; "
        "call <PHONE_NUMBER_1>, SSN <US_SSN_1>."
    )
    for value in SAMPLES.values():
        assert value not in masked
    # The answer comes back with the placeholders, maybe reordered: unmasked exactly.
    answer = "Sent <EMAIL_ADDRESS_2> a note; <US_SSN_1> belongs to <EMAIL_ADDRESS_1>."
    assert vault.unmask(answer) == (
        f"Sent bob@example.org a note; {SAMPLES['US_SSN']} belongs to {SAMPLES['EMAIL_ADDRESS']}."
    )
    assert vault.unmask(masked) == text
    # A second message of the same request reuses the placeholders.
    again = f"Still {SAMPLES['EMAIL_ADDRESS']}."
    assert engine.mask(again, engine.analyze(again, DEFAULT), vault) == "Still <EMAIL_ADDRESS_1>."


class _Broken(EntityRecognizer):
    """A recognizer that raises, as a faulty custom or upgraded recognizer would."""

    def __init__(self) -> None:
        super().__init__(supported_entities=["EMAIL_ADDRESS"], name="Broken")

    def load(self) -> None:
        return None

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
        raise RuntimeError("recognizer crashed")


@pytest.fixture
def broken_engines() -> GuardrailEngines:
    """Engines whose PII analyzer raises on every text."""
    engines = GuardrailEngines()
    registry = engines.pii()._registry
    registry.add_recognizer(_Broken())
    return engines


def test_an_analyzer_error_is_a_guardrail_error(broken_engines: GuardrailEngines) -> None:
    with pytest.raises(GuardrailError, match="PII analyzer failed: RuntimeError"):
        broken_engines.pii().analyze("mail jane.doe@example.com", DEFAULT)


def test_a_failed_check_blocks_by_default_and_allows_when_told(
    broken_engines: GuardrailEngines,
) -> None:
    text = "mail jane.doe@example.com"
    guard = GuardrailSet.model_validate({"input": [{"check": "pii", "action": "mask"}]})
    check = guard.input[0]
    assert guard.on_error_for(check) == "block"
    result, out = broken_engines.run(check, text, on_error="block", vault=MaskVault())
    assert (result.outcome, result.triggered, out) == ("blocked", False, text)
    assert result.error is not None and "RuntimeError" in result.error
    result, out = broken_engines.run(check, text, on_error="allow", vault=MaskVault())
    assert (result.outcome, out) == ("error", text)
    # A check's own on_error wins over the set's.
    own = PiiCheck(action="mask", on_error="allow")
    result, _ = broken_engines.run(own, text, on_error="block")
    assert result.outcome == "error"
    own = PiiCheck(action="mask", on_error="block")
    result, _ = broken_engines.run(own, text, on_error="allow")
    assert result.outcome == "blocked"


def test_the_runner_masks_redacts_flags_and_blocks(engine: PiiEngine) -> None:
    engines = GuardrailEngines()
    text = f"mail {SAMPLES['EMAIL_ADDRESS']} now"
    vault = MaskVault()
    masked, out = engines.run(PiiCheck(action="mask"), text, on_error="block", vault=vault)
    assert (masked.outcome, out) == ("masked", "mail <EMAIL_ADDRESS_1> now")
    assert [d.kind for d in masked.detections] == ["EMAIL_ADDRESS"]
    assert SAMPLES["EMAIL_ADDRESS"] not in repr(masked)
    redacted, out = engines.run(PiiCheck(action="mask"), text, on_error="block")
    assert (redacted.outcome, out) == ("redacted", "mail <EMAIL_ADDRESS> now")
    flagged, out = engines.run(PiiCheck(action="flag"), text, on_error="block")
    assert (flagged.outcome, flagged.triggered, out) == ("flagged", True, text)
    blocked, _ = engines.run(PiiCheck(action="block"), text, on_error="block")
    assert blocked.outcome == "blocked"
    clean, out = engines.run(PiiCheck(action="block"), "nothing here", on_error="block")
    assert (clean.outcome, clean.triggered, out) == ("passed", False, "nothing here")
