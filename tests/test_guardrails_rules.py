"""The operator's rules on their own: policy deny-lists, regexes and topics, and custom rules
found by entry point (a package installed on the path, made here) or by dotted path — what
each may return, and what happens when one cannot be found or raises."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from crossroads.guardrails.config import CustomCheck, PolicyCheck
from crossroads.guardrails.custom import ENTRY_POINT_GROUP, load_rule, run_rule
from crossroads.guardrails.errors import GuardrailError, GuardrailUnavailable
from crossroads.guardrails.policy import evaluate_policy
from crossroads.guardrails.results import Detection
from crossroads.guardrails.runner import REDACTED, GuardrailEngines


def _policy(**rules: object) -> PolicyCheck:
    return PolicyCheck.model_validate({"check": "policy", "action": "block", **rules})


def test_deny_phrases_match_whole_words_in_any_case_and_spacing() -> None:
    check = _policy(deny=["drop table", "secret"])
    text = "Then DROP   TABLE users; the backdrop tablet and secretary stay. A secret."
    found = evaluate_policy(check, text)
    assert [(d.kind, text[d.start : d.end]) for d in found] == [
        ("deny", "DROP   TABLE"),
        ("deny", "secret"),
    ]


def test_regexes_and_topics() -> None:
    check = _policy(
        regexes=[r"\bPRJ-\d{4}\b"],
        topics=[{"name": "weapons", "keywords": ["rifle", "ammunition", "scope"], "min_hits": 2}],
    )
    assert evaluate_policy(check, "a rifle at the fair") == []  # one keyword of two needed
    text = "PRJ-1234: a rifle with ammunition"
    kinds = [(d.kind, text[d.start : d.end]) for d in evaluate_policy(check, text)]
    assert kinds == [
        ("regex:0", "PRJ-1234"),
        ("topic:weapons", "rifle"),
        ("topic:weapons", "ammunition"),
    ]


def test_a_policy_needs_a_rule_and_valid_regexes() -> None:
    with pytest.raises(ValueError, match="at least one of deny, regexes, topics"):
        _policy()
    with pytest.raises(ValueError, match=r"regexes\[0\]"):
        _policy(regexes=["(unclosed"])


def test_policy_redaction_through_the_runner() -> None:
    engines = GuardrailEngines()
    check = PolicyCheck(action="redact", deny=("internal only",), regexes=(r"\d{3}-\d{4}",))
    result, text = engines.run(check, "Internal only: call 555-0199 now", on_error="block")
    assert (result.outcome, text) == ("redacted", f"{REDACTED}: call {REDACTED} now")


RULES_SOURCE = '''
from crossroads.guardrails.results import Detection


def shouting(text, options):
    """Share of upper-case letters, flagged past options["limit"]."""
    letters = [c for c in text if c.isalpha()]
    share = sum(c.isupper() for c in letters) / max(len(letters), 1)
    return share >= options.get("limit", 0.8)


def spans(text, options):
    word = options["word"]
    at = text.find(word)
    return [] if at < 0 else [Detection("word", at, at + len(word), 0.7)]


def broken(text, options):
    raise KeyError("missing setting")


def wrong(text, options):
    return {"score": 1}


def loud(text, options):
    return 7


not_callable = 3
'''


@pytest.fixture
def installed_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A package on the path with a distribution declaring two rules in the entry point
    group, as `pip install` of a rules package would leave it."""
    (tmp_path / "house_rules.py").write_text(textwrap.dedent(RULES_SOURCE))
    info = tmp_path / "house_rules-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: house-rules\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nshouting = house_rules:shouting\nspans = house_rules:spans\n"
        "missing = house_rules:nowhere\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    load_rule.cache_clear()
    yield
    load_rule.cache_clear()
    sys.modules.pop("house_rules", None)


def test_a_rule_is_found_by_its_entry_point_name(installed_rules: None) -> None:
    rule = load_rule("shouting")
    assert run_rule(rule, "STOP THAT NOW", {}) == (1.0, [])
    assert run_rule(rule, "Stop that now", {}) == (0.0, [])
    assert run_rule(rule, "Stop That", {"limit": 0.2}) == (1.0, [])
    score, found = run_rule(load_rule("spans"), "say banana", {"word": "banana"})
    assert (score, found) == (0.7, [Detection("word", 4, 10, 0.7)])


def test_a_rule_is_found_by_dotted_path_too(installed_rules: None) -> None:
    assert run_rule(load_rule("house_rules:loud"), "x", {}) == (1.0, [])  # clamped to 1


def test_a_rule_that_cannot_be_found_says_how_to_register_it(installed_rules: None) -> None:
    with pytest.raises(GuardrailUnavailable, match=f"entry point group '{ENTRY_POINT_GROUP}'"):
        load_rule("nonexistent")
    with pytest.raises(GuardrailUnavailable, match="failed to load"):
        load_rule("missing")
    with pytest.raises(GuardrailUnavailable, match="cannot import"):
        load_rule("no_such_module:rule")
    with pytest.raises(GuardrailUnavailable, match="has no nowhere"):
        load_rule("house_rules:nowhere")
    with pytest.raises(GuardrailUnavailable, match="not callable"):
        load_rule("house_rules:not_callable")


def test_a_rule_that_raises_or_returns_nonsense_is_a_guardrail_error(
    installed_rules: None,
) -> None:
    with pytest.raises(GuardrailError, match="raised KeyError"):
        run_rule(load_rule("house_rules:broken"), "x", {})
    with pytest.raises(GuardrailError, match="returned dict"):
        run_rule(load_rule("house_rules:wrong"), "x", {})


def test_custom_checks_act_and_fail_closed_or_open(installed_rules: None) -> None:
    engines = GuardrailEngines()
    spans = CustomCheck(action="redact", rule="spans", options={"word": "banana"})
    result, text = engines.run(spans, "a banana split", on_error="block")
    assert (result.outcome, result.score, text) == ("redacted", 0.7, f"a {REDACTED} split")
    strict = CustomCheck(action="block", rule="spans", options={"word": "banana"}, threshold=0.9)
    result, _ = engines.run(strict, "a banana split", on_error="block")
    assert (result.outcome, result.triggered) == ("passed", False)  # 0.7 is under 0.9
    broken = CustomCheck(action="block", rule="house_rules:broken")
    closed, _ = engines.run(broken, "x", on_error="block")
    assert closed.outcome == "blocked" and "KeyError" in (closed.error or "")
    opened, _ = engines.run(broken, "x", on_error="allow")
    assert opened.outcome == "error"
    missing, _ = engines.run(CustomCheck(rule="nonexistent"), "x", on_error="block")
    assert missing.outcome == "blocked" and "no custom rule" in (missing.error or "")
