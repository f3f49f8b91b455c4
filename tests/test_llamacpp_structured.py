"""Structured output on the local engine: input validation, then real constrained generation.

The unit tests pin the 400s (what is wrong, and where) and the translations; the engine tests
run each kind of constraint on Gemma 3 270M and check that the output parses and matches.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from crossroads.protocol.errors import GatewayError
from crossroads.providers.llamacpp.engine import LlamaEngine
from crossroads.providers.llamacpp.gbnf import GbnfError, check_gbnf
from crossroads.providers.llamacpp.structured import (
    LLGUIDANCE,
    constraint_fields,
    engine_schema,
    rust_regex,
)

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "role": {"enum": ["admin", "user", "guest"]},
    },
    "required": ["name", "age", "role"],
    "additionalProperties": False,
}
ORDER = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "maxLength": 24},
        "tags": {
            "type": "array",
            "items": {"type": "string", "pattern": "^[a-z]{2,8}$"},
            "minItems": 1,
            "maxItems": 3,
        },
        "address": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 15},
                "zip": {"type": "string", "pattern": r"^\d{5}$"},
            },
            "required": ["city", "zip"],
            "additionalProperties": False,
        },
    },
    "required": ["title", "tags", "address"],
    "additionalProperties": False,
}
POINT = {
    "type": "object",
    "properties": {
        "x": {"type": "integer", "minimum": -9, "maximum": 9},
        "y": {"type": "integer", "minimum": -9, "maximum": 9},
    },
    "required": ["x", "y"],
    "additionalProperties": False,
}
LINE = {
    "$defs": {"point": POINT},
    "type": "object",
    "properties": {
        "kind": {"const": "line"},
        "from": {"$ref": "#/$defs/point"},
        "to": {"$ref": "#/$defs/point"},
        "step": {"type": "integer", "multipleOf": 5, "minimum": 0, "maximum": 50},
        "closed": {"type": "boolean"},
        "label": {"anyOf": [{"type": "null"}, {"type": "string", "maxLength": 10}]},
        "day": {"type": "string", "format": "date"},
    },
    "required": ["kind", "from", "to", "step", "closed", "label", "day"],
    "additionalProperties": False,
}
COLOURS = {
    "type": "array",
    "items": {"enum": ["red", "green", "blue"]},
    "minItems": 2,
    "maxItems": 4,
}


def rejected(body: dict[str, Any]) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        constraint_fields(body)
    assert caught.value.status == 400
    return caught.value


# --- mapping --------------------------------------------------------------------------------


def test_nothing_or_text_adds_nothing() -> None:
    assert constraint_fields({"messages": []}) == {}
    assert constraint_fields({"response_format": {"type": "text"}}) == {}


def test_json_object_uses_the_engines_own_constraint() -> None:
    expected = {"response_format": {"type": "json_object"}}
    assert constraint_fields({"response_format": {"type": "json_object"}}) == expected
    # A json_schema format without a schema still promises JSON.
    schemaless = {"type": "json_schema", "json_schema": {"name": "x"}}
    assert constraint_fields({"response_format": schemaless}) == expected


def test_schemas_become_compact_llguidance_json() -> None:
    spec = {"name": "person", "schema": PERSON, "strict": True}
    fields = constraint_fields({"response_format": {"type": "json_schema", "json_schema": spec}})
    assert list(fields) == ["grammar"]
    header, body = fields["grammar"].split("start: %json ", 1)
    assert header == LLGUIDANCE
    assert json.loads(body) == {**PERSON, "x-guidance": {"whitespace_flexible": False}}
    as_string = constraint_fields({"guided_json": json.dumps(PERSON)})
    assert as_string == constraint_fields({"guided_json": PERSON}) == fields


def test_two_constraints_at_once_are_refused_by_name() -> None:
    error = rejected({"guided_json": PERSON, "guided_regex": "a+"})
    assert "'guided_json' and 'guided_regex'" in error.message
    error = rejected({"response_format": {"type": "json_object"}, "guided_choice": ["a"]})
    assert "'response_format' and 'guided_choice'" in error.message
    assert error.param == "guided_choice"
    # "text" is not a constraint, so it combines with anything.
    assert constraint_fields({"response_format": {"type": "text"}, "guided_regex": "a"})


# --- JSON schema validation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "nonsense"}, "invalid JSON schema at /type"),
        ({"properties": {"a": {"minLength": -1}}}, "at /properties/a/minLength"),
        ({"properties": {"a": {"$ref": "#/$defs/missing"}}}, "'#/$defs/missing' at /properties/a"),
        ({"$ref": "https://example.com/s.json"}, "is not a local"),
        ({"type": "array", "uniqueItems": True}, "keyword 'uniqueItems' at /"),
        ({"properties": {"a": {"not": {"type": "null"}}}}, "keyword 'not' at /properties/a"),
        ({"oneOf": [{"type": "integer"}, {"type": "number"}]}, "use 'anyOf'"),
        ({"if": {"required": ["a"]}, "then": {"required": ["b"]}}, "keyword 'if'"),
        ({"type": "integer", "minimum": 5, "maximum": 3}, "minimum > maximum at /"),
        ({"items": {"type": "string", "minLength": 4, "maxLength": 2}}, "minLength > maxLength"),
        ({"enum": []}, "empty 'enum'"),
        (False, "matches nothing"),
        (
            {"properties": {"a": {}}, "required": ["b"], "additionalProperties": False},
            "'b' at / is required but additionalProperties is false",
        ),
        ({"type": "string", "pattern": "^a(?=b)"}, "lookahead"),
        ({"properties": {"$id": {"$id": "https://x/y", "type": "string"}}}, "nested '$id'"),
    ],
)
def test_unusable_schemas_are_refused_precisely(schema: Any, expected: str) -> None:
    error = rejected({"guided_json": schema})
    assert expected in error.message
    assert error.param == "guided_json"
    assert error.code in ("invalid_schema", "invalid_regex")


def test_schema_details_are_prepared_for_the_engine() -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$defs": {"a/b": {"$anchor": "ab", "type": "integer"}},
        "type": "object",
        "properties": {
            "site": {"type": "string", "format": "uri"},  # unknown to the engine: dropped
            "day": {"type": "string", "format": "date"},  # enforced
            "code": {"type": "string", "pattern": r"^\w+/\d$"},
            "n": {"$ref": "#/$defs/a~1b"},
            "m": {"$ref": "#ab"},
        },
        "patternProperties": {"^x-": {"type": "string"}},
        "x-guidance": {"lenient": True},  # the caller's engine options are not ours to take
    }
    prepared = engine_schema(schema, "guided_json")
    assert "format" not in prepared["properties"]["site"]
    assert prepared["properties"]["day"]["format"] == "date"
    assert prepared["properties"]["code"]["pattern"] == r"^[\p{L}\p{N}_]+\x{2F}\d$"
    assert list(prepared["patternProperties"]) == [r"^x\x{2D}"]
    assert "x-guidance" not in prepared
    assert schema["properties"]["site"]["format"] == "uri"  # the caller's copy is untouched
    assert engine_schema(True, "p") == {}


# --- regexes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (r"^[a-z]{3}-\d{2,4}$", r"[a-z]{3}\x{2D}\d{2,4}"),  # anchors dropped: all must match
        (r"\A\d\Z", r"\d"),
        (r"a/b", r"a\x{2F}b"),  # never ends the /…/ literal early
        (r"a\/b", r"a\x{2F}b"),
        (r"x{,3}y{2,}z{x", r"x{0,3}y{2,}z\x{7B}x"),  # Python's {,n} and literal braces
        (r"(?P<year>\d{4})(?i:ab)", r"(?:\d{4})(?i:ab)"),
        (r"(?i)^ab$", "(?i)ab"),
        (r"[[a]", r"[\x{5B}a]"),  # Python reads '[' in a class literally; Rust would nest
        (r"[a&&b~~c-]", r"[a\x{26}\x{26}b\x{7E}\x{7E}c\x{2D}]"),  # no Rust set operations
        (r"[\b\0\x41-\x5a]\n", r"[\x{8}\x{0}A-Z]\x{A}"),
        (r"\w\W\S\s\d", r"[\p{L}\p{N}_][^\p{L}\p{N}_][^\s\x{1C}-\x{1F}]\s\d"),
        (r"\N{SNOWMAN}é+?", r"\x{2603}\x{E9}+?"),
    ],
)
def test_regexes_are_translated_to_rust_syntax(pattern: str, expected: str) -> None:
    assert rust_regex(pattern, "guided_regex") == expected


@pytest.mark.parametrize(
    ("pattern", "construct"),
    [
        (r"a(?=b)", "a lookahead (at position 1)"),
        (r"a(?!b)", "a lookahead"),
        (r"(?<=a)b", "a lookbehind (at position 0)"),
        (r"(?<!a)b", "a lookbehind"),
        (r"(a)\1", "a backreference (at position 3)"),
        (r"(?P<x>a)(?P=x)", "a backreference"),
        (r"a*+", "a possessive quantifier"),
        (r"a{2}+", "a possessive quantifier"),
        (r"(?>ab)", "an atomic group"),
        (r"(a)?(?(1)b|c)", "a conditional"),
        (r"\bword", "a word boundary"),
        (r"a^b", "an anchor ('^') not at the start or end"),
        (r"a$|b", "an anchor ('$') not at the start or end"),
        (r"a\Zb", r"an anchor (\A, \Z)"),
        (r"(?x) a b", "the inline flag 'x'"),
        (r"(?#note)a", "an inline comment"),
        (r"[a-", "invalid regex: unterminated character set"),
        (r"a)", "invalid regex: unbalanced parenthesis"),
    ],
)
def test_regexes_the_engine_cannot_run_are_refused_by_name(pattern: str, construct: str) -> None:
    error = rejected({"guided_regex": pattern})
    assert construct in error.message
    assert (error.param, error.code) == ("guided_regex", "invalid_regex")


def test_a_regex_that_only_matches_nothing_is_refused() -> None:
    assert "matches some non-empty output" in rejected({"guided_regex": "^$"}).message


# --- choices and grammars -------------------------------------------------------------------

CHOICES = ["yes", 'say "hi"', "back\\slash", "two\nlines", "naïve ☃/𝄞", "yes", "\x7f"]


def test_choices_become_escaped_literals() -> None:
    grammar = constraint_fields({"guided_choice": CHOICES})["grammar"]
    header, start = grammar.split("start: ")
    assert header == LLGUIDANCE
    literals = [json.loads(literal) for literal in start.split(" | ")]
    assert literals == list(dict.fromkeys(CHOICES))  # deduplicated, order kept
    assert "\n" not in start and "\x7f" not in start


@pytest.mark.parametrize(
    ("choices", "expected"),
    [([], "non-empty list"), (["a", ""], "guided_choice[1]"), (["\ud800"], "guided_choice[0]")],
)
def test_bad_choices_are_refused(choices: list[str], expected: str) -> None:
    error = rejected({"guided_choice": choices})
    assert expected in error.message and error.param == "guided_choice"


GRAMMAR = """# an answer, then a reason
root   ::= answer ", " reason "."
answer ::= "yes" | "no"
reason ::= [a-z]{1,10} (" " [a-z]{1,10}){1,3}
"""
GRAMMAR_RX = r"(yes|no), [a-z]{1,10}( [a-z]{1,10}){1,3}\."
MULTILINE = r"""root ::= "ID-" [0-9]{3} ("-" code)? "\n" item   # a code, then an item
code ::= [A-F]{2}
item ::= (
    "alpha" |
    "beta"
  ) [^\n"\\]{0,10}
"""
MULTILINE_RX = r'ID-[0-9]{3}(-[A-F]{2})?\n(alpha|beta)[^\n"\\]{0,10}'


def test_gbnf_grammars_pass_through_once_checked() -> None:
    assert constraint_fields({"guided_grammar": GRAMMAR}) == {"grammar": GRAMMAR}
    for grammar in (MULTILINE, 'root ::= <[2]> !<[3]>{2} "\\u00e9\\U0001F600" .\r\n'):
        check_gbnf(grammar)


@pytest.mark.parametrize(
    ("grammar", "message"),
    [
        ('root ::= "a" foo', "line 1, column 14: undefined rule 'foo'"),
        ('item ::= "a"', "missing rule 'root'"),
        ('root ::= x\nx ::= ("a" | "b"', "line 2, column 7: unclosed '('"),
        ('root ::= "a', "line 1, column 10: unterminated string"),
        ("root ::= [abc", "line 1, column 10: unclosed '['"),
        ('root ::= "a" )', "line 1, column 14: unmatched ')'"),
        ('root ::= "a"\n  "b"', "line 2, column 3: expected a rule name"),
        ('root ::= "a"\nroot ::= "b"', "line 2, column 1: rule 'root' is defined twice"),
        ("root ::= my_rule", "line 1, column 12: rule names may only contain"),
        ('root ::= "\\q"', "line 1, column 11: unknown escape '\\q'"),
        ('root ::= "\\x4"', "'\\x' needs exactly 2 hex digits"),
        ("root ::= [z-a]", "line 1, column 11: reversed range 'z'-'a'"),
        ('root ::= "a" []', "line 1, column 14: empty character class"),
        ('root ::= "a"{3,1}', "line 1, column 13: repetition {3,1} has its maximum below"),
        ('root ::= "a"{2001}', "at most 2000 repetitions"),
        ('root ::= "a"{0,5000}', "upper bound may be at most 2000"),
        ('root ::= ("a"{0,10}){0,200}', "expands to too many rules"),
        ("root ::= *", "line 1, column 10: '*' has nothing before it to repeat"),
        ('root ::= root "a" | "b"', "left recursion: rule 'root'"),
        ('root ::= e root "x"\ne ::= f\nf ::= "" | "c"', "left recursion"),
        ('root ::= ("a"?)*', "repeats something that can match the empty string"),
        ("root ::= {2}", "nothing before it to repeat"),
        ('root ::= "a"{2,', "expected '}' to close the repetition"),
        ("", "the grammar is empty"),
        ('root ::= "\x00"', "NUL character"),
    ],
)
def test_gbnf_mistakes_are_reported_with_their_place(grammar: str, message: str) -> None:
    with pytest.raises(GbnfError) as caught:
        check_gbnf(grammar)
    assert message in str(caught.value)
    error = rejected({"guided_grammar": grammar})
    assert message in error.message and error.code == "invalid_grammar"


def test_llguidance_grammars_are_refused() -> None:
    error = rejected({"guided_grammar": "%llguidance {}\nstart: /[a-z/"})
    assert "LLGuidance" in error.message and error.param == "guided_grammar"


# --- on the real engine ---------------------------------------------------------------------


async def generate(
    engine: LlamaEngine,
    body: dict[str, Any],
    prompt: str | list[dict[str, Any]],
    seed: int = 1,
    max_tokens: int = 200,
) -> str:
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    request = {
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0.8,
        "seed": seed,
        **constraint_fields(body),
    }
    result = await engine.call("handle_chat_completions", request)
    choice = result["choices"][0]
    assert choice["finish_reason"] == "stop", choice  # bounded constraints always finish
    content = choice["message"]["content"]
    assert isinstance(content, str)
    return content


@pytest.mark.engine
async def test_json_schemas_are_enforced(engine: LlamaEngine) -> None:
    cases = [
        ({"guided_json": PERSON}, PERSON, "Describe a person as JSON.", 1),
        ({"guided_json": PERSON}, PERSON, "Invent a user.", 2),
        ({"guided_json": ORDER}, ORDER, "An order with tags and an address, as JSON.", 3),
        ({"guided_json": json.dumps(COLOURS)}, COLOURS, "Some colours:", 4),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "l", "schema": LINE},
                }
            },
            LINE,
            "A line segment as JSON.",
            5,
        ),
    ]
    # Escaped characters can take several tokens each, hence the generous limit.
    outputs = await asyncio.gather(
        *(generate(engine, body, prompt, seed, 400) for body, _, prompt, seed in cases)
    )
    for (_, schema, _, _), output in zip(cases, outputs, strict=True):
        value = json.loads(output)
        Draft202012Validator(schema).validate(value)
        if schema is LINE:  # RFC 3339 full-date (Python's date checker refuses year 0000)
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", value["day"]), value


@pytest.mark.engine
async def test_json_object_is_enforced(engine: LlamaEngine) -> None:
    # Any object is allowed, so nothing bounds its length; without an example this model
    # runs to max_tokens about a third of the time. With one, it answers briefly.
    messages = [
        {"role": "user", "content": "Reply with a small JSON object."},
        {"role": "assistant", "content": '{"ok": true}'},
        {"role": "user", "content": "Another one."},
    ]
    body = {"response_format": {"type": "json_object"}}
    outputs = await asyncio.gather(*(generate(engine, body, messages, seed) for seed in (1, 2)))
    for output in outputs:
        assert isinstance(json.loads(output), dict)


@pytest.mark.engine
async def test_regexes_are_enforced(engine: LlamaEngine) -> None:
    patterns = [
        (r"^[A-Z]{3}-\d{3,4}$", "A ticket code:"),
        (r"(yes|no), because [a-z ]{5,30}\.", "Is the sky blue?"),
        (r"\w{2,8}@example\.(com|org)", "An email address:"),
        (r"\d{1,2}/\d{1,2}/20\d\d", "A date:"),
        (r"(?i)hello (world|there)!?", "Greet me."),
        (r"caf[eé] [a-z]{2,6}[.!]", "Name a café."),
    ]
    outputs = await asyncio.gather(
        *(generate(engine, {"guided_regex": p}, q, i) for i, (p, q) in enumerate(patterns))
    )
    for (pattern, _), output in zip(patterns, outputs, strict=True):
        assert re.fullmatch(pattern, output), (pattern, output)


@pytest.mark.engine
async def test_choices_and_grammars_are_enforced(engine: LlamaEngine) -> None:
    runs = [
        ({"guided_choice": CHOICES}, "Pick one.", 1),
        ({"guided_choice": CHOICES}, "Say hi.", 2),
        ({"guided_grammar": GRAMMAR}, "Is water wet?", 3),
        ({"guided_grammar": MULTILINE}, "Give an item id.", 4),
    ]
    choice_1, choice_2, answer, item = await asyncio.gather(
        *(generate(engine, body, prompt, seed, 60) for body, prompt, seed in runs)
    )
    assert {choice_1, choice_2} <= set(CHOICES)
    assert re.fullmatch(GRAMMAR_RX, answer), answer
    assert re.fullmatch(MULTILINE_RX, item), item
