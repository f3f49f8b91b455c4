"""Structured output for the embedded llama.cpp engine: validate, then constrain decoding.

The engine enforces a constraint while it samples, but it is a poor judge of its input: a
bad GBNF grammar only yields "failed to parse grammar", and an LLGuidance grammar that does
not compile (bad regex, unknown name, unsupported JSON-schema keyword) is logged and then
*ignored* — generation runs unconstrained. Its own `json_schema` field is no better: it
silently drops keywords it cannot convert (measured: `multipleOf`, `format`, `minimum` next to
a `$ref`, patterns without `^…$`). So every caller-supplied constraint is validated here
first, and everything is translated into something the engine is known to enforce:

* JSON schemas become an LLGuidance `%json` grammar (compact JSON, so a small model wastes
  no tokens on whitespace) after `jsonschema`'s meta-schema check, a local-`$ref` check and
  an allow-list of keywords LLGuidance implements. `oneOf` is refused (LLGuidance cannot
  guarantee "exactly one"), unknown `format`s are dropped (an annotation in 2020-12).
* Regexes (Python `re` syntax, as the caller would test them) are rewritten into the Rust
  `regex` syntax LLGuidance uses, with every construct it cannot do rejected by name.
* `guided_choice` becomes a grammar of quoted literals; `guided_grammar` must be GBNF and
  passes `gbnf.check_gbnf`. LLGuidance grammars (`%llguidance`) are refused there: any
  mistake in one silently disables the constraint, and only a full LLGuidance compiler
  could rule that out.
"""

from __future__ import annotations

import copy
import json
import re
import unicodedata
import warnings
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import unquote

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from crossroads.protocol.errors import GatewayError
from crossroads.providers.llamacpp.gbnf import GbnfError, check_gbnf

__all__ = [
    "LLGUIDANCE",
    "constraint_fields",
    "engine_schema",
    "json_grammar",
    "lark_string",
    "rust_regex",
]

LLGUIDANCE = "%llguidance {}\n"  # the engine picks LLGuidance over GBNF by this first line
_COMPACT = {"whitespace_flexible": False}
# fmt: off
_ONE_OF = "use 'anyOf' (the engine cannot guarantee that exactly one branch matches)"
_UNSUPPORTED = ("oneOf", "not", "if", "then", "else", "contains", "minContains", "maxContains",
                "uniqueItems", "propertyNames", "dependentRequired", "dependentSchemas",
                "dependencies", "unevaluatedItems", "unevaluatedProperties", "$dynamicRef",
                "$dynamicAnchor", "$recursiveRef", "$recursiveAnchor")
_FORMATS = frozenset(("date-time", "time", "date", "duration", "email", "hostname", "ipv4",
                      "ipv6", "uuid"))
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SCHEMA_ONE = ("additionalProperties", "items", "additionalItems", "contains", "not", "if",
               "then", "else", "propertyNames", "unevaluatedItems", "unevaluatedProperties")
_BOUNDS = [(f"min{n}", f"max{n}") for n in ("imum", "Length", "Items", "Properties")]
# fmt: on
_PARAMS = ("response_format", "guided_json", "guided_regex", "guided_choice", "guided_grammar")


def _invalid(param: str, code: str, message: str) -> GatewayError:
    return GatewayError(400, message, param=param, code=code)


# --- regexes: Python syntax in, Rust `regex` syntax (as LLGuidance parses it) out -------------

# Python's \w, \W and \S are not Rust's; these Rust classes are subsets of Python's meaning,
# so whatever the engine produces also matches the caller's Python regex.
# fmt: off
_CLASS = {"d": r"\d", "D": r"\D", "s": r"\s", "S": r"[^\s\x{1C}-\x{1F}]",
          "w": r"[\p{L}\p{N}_]", "W": r"[^\p{L}\p{N}_]"}
_GROUPS = {"?=": "a lookahead", "?!": "a lookahead", "?<=": "a lookbehind",
           "?<!": "a lookbehind", "?P=": "a backreference", "?>": "an atomic group",
           "?(": "a conditional", "?#": "an inline comment"}
# fmt: on
_CONTROL = {"a": 7, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11}
_HEX = {"x": 2, "u": 4, "U": 8}
_OCTAL = {True: re.compile(r"[0-7]{1,3}"), False: re.compile(r"0[0-7]{0,2}|[0-7]{3}")}
_REPEAT = re.compile(r"\{([0-9]*)(?:(,)([0-9]*))?\}")
_FLAGS = re.compile(r"\(\?([a-zA-Z]*)(?:-([a-zA-Z]*))?([:)])")


def _char(code: int) -> str:
    char = chr(code)
    return char if char.isascii() and char.isalnum() else f"\\x{{{code:X}}}"


def rust_regex(pattern: str, param: str, *, search: bool = False) -> str:
    """Check a Python regex and return its Rust-syntax equivalent for LLGuidance.

    With `search=False` (a whole-output regex) a leading `^`/`\\A` and a trailing `$`/`\\Z`
    are dropped, since the whole output must match anyway; with `search=True` (JSON-schema
    `pattern`) they are kept. Anchors anywhere else are rejected, as is every construct the
    engine's regex engine lacks. The result contains no `/`, so it fits in `/…/`.
    """

    def bad(what: str, at: int, hint: str = "") -> GatewayError:
        message = f"the regex uses {what} (at position {at}), which the local engine lacks"
        return _invalid(param, "invalid_regex", message + hint)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise _invalid(param, "invalid_regex", f"invalid regex: {exc}") from None
    out: list[str] = []
    i, end, at_start = 0, len(pattern), True

    def escape(i: int, in_class: bool) -> tuple[str, int, int | None]:
        char = pattern[i + 1]
        if char in _CLASS:
            return _CLASS[char], i + 2, None
        octal = _OCTAL[in_class].match(pattern, i + 1)
        if octal:
            code, i = int(octal.group(), 8), octal.end()
        elif char.isdigit():
            raise bad("a backreference", i)
        elif char in "bB" and not (in_class and char == "b"):
            raise bad(r"a word boundary (\b, \B)", i)
        elif char in "AZ":
            raise bad(r"an anchor (\A, \Z) not at the start or end", i)
        elif char in _HEX:
            size = _HEX[char]
            code, i = int(pattern[i + 2 : i + 2 + size], 16), i + 2 + size
        elif char == "N":
            close = pattern.index("}", i)
            code, i = ord(unicodedata.lookup(pattern[i + 3 : close])), close + 1
        else:
            code, i = (8 if char == "b" else _CONTROL.get(char, ord(char))), i + 2
        return _char(code), i, code

    def char_class(i: int) -> tuple[str, int]:
        parts, i = ["["], i + 1
        if pattern[i] == "^":
            parts.append("^")
            i += 1
        first = True
        while pattern[i] != "]" or first:
            first = False
            if pattern[i] == "\\":
                text, i, code = escape(i, True)
            else:
                text, code, i = _char(ord(pattern[i])), ord(pattern[i]), i + 1
            if code is not None and pattern[i] == "-" and pattern[i + 1] != "]":
                if pattern[i + 1] == "\\":
                    high, i, _ = escape(i + 1, True)
                else:
                    high, i = _char(ord(pattern[i + 1])), i + 2
                text = f"{text}-{high}"
            parts.append(text)
        return "".join(parts) + "]", i + 1

    while i < end:
        char, start = pattern[i], at_start
        at_start = False
        if char == "\\" and pattern[i + 1] in "AZ":
            edge = (start and pattern[i + 1] == "A") or (i + 2 == end and pattern[i + 1] == "Z")
            if not edge:
                raise bad(r"an anchor (\A, \Z) not at the start or end", i)
            out.append(("^" if pattern[i + 1] == "A" else "$") if search else "")
            i += 2
        elif char == "\\":
            text, i, _ = escape(i, False)
            out.append(text)
        elif char == "[":
            text, i = char_class(i)
            out.append(text)
        elif char in "^$":
            if not ((char == "^" and start) or (char == "$" and i + 1 == end)):
                hint = "; the whole output is matched anyway"
                raise bad(f"an anchor ('{char}') not at the start or end", i, hint)
            out.append(char if search else "")
            i += 1
        elif pattern.startswith("(?", i):
            kind = next((k for k in _GROUPS if pattern.startswith(k, i + 1)), None)
            flags = _FLAGS.match(pattern, i)
            if kind:
                raise bad(_GROUPS[kind], i)
            if pattern.startswith("(?P<", i):
                out.append("(?:")
                i = pattern.index(">", i) + 1
            elif flags:
                on, off, close = flags.group(1), flags.group(2) or "", flags.group(3)
                unknown = sorted(set(on + off) - set("imsu"))
                if unknown:
                    raise bad(f"the inline flag '{unknown[0]}'", i, " (only i, m and s)")
                on, off = on.replace("u", ""), off.replace("u", "")
                body = on + ("-" + off if off else "")
                out.append(f"(?{body}{close}" if body or close == ":" else "")
                at_start = start and close == ")"
                i = flags.end()
            else:  # unreachable after re.compile accepted the pattern
                raise bad("this group syntax", i)
        elif char in "*+?" or (char == "{" and _REPEAT.match(pattern, i) and pattern[i + 1] != "}"):
            repeat = _REPEAT.match(pattern, i) if char == "{" else None
            if repeat:
                low, comma, high = repeat.group(1) or "0", repeat.group(2), repeat.group(3)
                out.append(f"{{{low},{high}}}" if comma else f"{{{low}}}")
                i = repeat.end()
            else:
                out.append(char)
                i += 1
            if pattern.startswith("+", i):
                raise bad("a possessive quantifier", i)
            if pattern.startswith("?", i):
                out.append("?")
                i += 1
        elif char in "|().":
            out.append(char)
            i += 1
        else:
            out.append(_char(ord(char)))
            i += 1
    return "".join(out)


def lark_string(text: str) -> str:
    """`text` as an LLGuidance string literal (Lark's are JSON strings; DEL must be escaped)."""
    return json.dumps(text, ensure_ascii=True).replace("\x7f", "\\u007f")


# --- JSON schemas ---------------------------------------------------------------------------


def _subschemas(schema: Any, path: str) -> Iterator[tuple[dict[str, Any], str]]:
    """Every schema object inside `schema` (itself first), with its JSON pointer."""
    if not isinstance(schema, dict):
        return
    yield schema, path or "/"
    for key in _SCHEMA_MAPS:
        if isinstance(schema.get(key), dict):
            for name, sub in schema[key].items():
                yield from _subschemas(sub, f"{path}/{key}/{name}")
    for key in _SCHEMA_LISTS:
        if isinstance(schema.get(key), list):
            for index, sub in enumerate(schema[key]):
                yield from _subschemas(sub, f"{path}/{key}/{index}")
    for key in _SCHEMA_ONE:
        yield from _subschemas(schema.get(key), f"{path}/{key}")


def _resolves(root: Any, ref: str) -> bool:
    if ref.startswith("#/") or ref == "#":
        node = root
        for token in ref[2:].split("/") if ref != "#" else []:
            token = unquote(token).replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and token in node:
                node = node[token]
            elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
                node = node[int(token)]
            else:
                return False
        return True
    return any(sub.get("$anchor") == ref[1:] for sub, _ in _subschemas(root, ""))


def engine_schema(schema: Any, param: str) -> dict[str, Any]:
    """Validate a JSON schema and return the copy LLGuidance should enforce (400 if unusable)."""

    def fail(message: str) -> GatewayError:
        return _invalid(param, "invalid_schema", message)

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        where = "/".join(str(p) for p in exc.path)
        raise fail(f"invalid JSON schema at /{where}: {exc.message}") from None
    if schema is False:
        raise fail("the JSON schema `false` matches nothing")
    result: dict[str, Any] = copy.deepcopy(schema) if isinstance(schema, dict) else {}
    for sub, path in _subschemas(result, ""):
        for key in _UNSUPPORTED:
            if key in sub:
                why = _ONE_OF if key == "oneOf" else "the engine cannot enforce it while generating"
                raise fail(f"JSON schema keyword '{key}' at {path} is not supported here: {why}")
        if "$id" in sub and sub is not result:
            raise fail(f"nested '$id' at {path} is not supported")
        ref = sub.get("$ref")
        if isinstance(ref, str) and not (ref.startswith("#") and _resolves(result, ref)):
            detail = "does not resolve" if ref.startswith("#") else "is not a local '#/…' reference"
            raise fail(f"$ref '{ref}' at {path} {detail}")
        for low, high in _BOUNDS:
            both = isinstance(sub.get(low), int | float) and isinstance(sub.get(high), int | float)
            if both and sub[low] > sub[high]:
                raise fail(f"{low} > {high} at {path}: nothing can match")
        if sub.get("enum") == []:
            raise fail(f"empty 'enum' at {path}: nothing can match")
        if sub.get("additionalProperties") is False and not sub.get("patternProperties"):
            props = sub.get("properties", {})
            for name in sub.get("required", []):
                if name not in props:
                    raise fail(f"'{name}' at {path} is required but additionalProperties is false")
        if isinstance(sub.get("format"), str) and sub["format"] not in _FORMATS:
            del sub["format"]
        if isinstance(sub.get("pattern"), str):
            sub["pattern"] = rust_regex(sub["pattern"], param, search=True)
        if isinstance(sub.get("patternProperties"), dict):
            sub["patternProperties"] = {
                rust_regex(key, param, search=True): value
                for key, value in sub["patternProperties"].items()
            }
    result.pop("x-guidance", None)
    return result


def json_grammar(schema: Mapping[str, Any]) -> str:
    """The LLGuidance `%json` construct for an `engine_schema` result, compact whitespace."""
    return "%json " + json.dumps({**schema, "x-guidance": _COMPACT}, ensure_ascii=True)


# --- the request ----------------------------------------------------------------------------


def _unicode(text: Any) -> bool:
    return isinstance(text, str) and text.encode("utf-8", "replace").decode() == text


def _choice_grammar(choices: Any) -> str:
    if not isinstance(choices, list) or not choices:
        raise _invalid("guided_choice", "invalid_value", "'guided_choice' must be a non-empty list")
    for index, choice in enumerate(choices):
        if not choice or not _unicode(choice):
            message = f"guided_choice[{index}] must be a non-empty string of valid Unicode"
            raise _invalid("guided_choice", "invalid_value", message)
    return " | ".join(lark_string(choice) for choice in dict.fromkeys(choices))


def _gbnf(text: Any) -> str:
    def fail(message: str) -> GatewayError:
        return _invalid("guided_grammar", "invalid_grammar", message)

    if not _unicode(text):
        raise fail("'guided_grammar' must be a string of valid Unicode")
    if text.lstrip().startswith("%llguidance"):
        raise fail(
            "LLGuidance (%llguidance) grammars are not accepted: the engine silently ignores one "
            "that does not compile; use GBNF, guided_regex, guided_choice or guided_json"
        )
    try:
        check_gbnf(text)
    except GbnfError as exc:
        raise fail(f"invalid GBNF grammar: {exc}") from None
    return str(text)


def _regex(pattern: Any) -> str:
    regex = rust_regex(pattern, "guided_regex") if isinstance(pattern, str) else ""
    if not regex:
        message = "'guided_regex' must be a regex that matches some non-empty output"
        raise _invalid("guided_regex", "invalid_regex", message)
    return f"/{regex}/"


def _json(schema: Any, param: str) -> str:
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except ValueError:
            raise _invalid(param, "invalid_schema", f"'{param}' is not valid JSON") from None
    return json_grammar(engine_schema(schema, param))


def constraint_fields(body: Mapping[str, Any]) -> dict[str, Any]:
    """Engine request fields that enforce the body's structured-output parameters.

    `response_format` json_object (or json_schema without a schema) → the engine's own
    JSON-object constraint; json_schema, `guided_json`, `guided_regex`, `guided_choice` → an
    LLGuidance `grammar`; `guided_grammar` → the checked GBNF `grammar`; `response_format`
    "text" or nothing set → `{}`. Raises a 400 `GatewayError` when an input is invalid or
    unsupported, or when more than one of them is set (naming them).
    """
    response_format = body.get("response_format")
    kind = response_format.get("type") if isinstance(response_format, Mapping) else None
    given = [
        name
        for name in _PARAMS
        if body.get(name) is not None and (name != "response_format" or kind != "text")
    ]
    if len(given) > 1:
        names = " and ".join(f"'{name}'" for name in given)
        raise _invalid(given[1], "invalid_value", f"{names} cannot be used together; set one")
    if not given:
        return {}
    name, value = given[0], body[given[0]]
    if name == "guided_grammar":
        return {"grammar": _gbnf(value)}
    if name == "guided_json":
        start = _json(value, name)
    elif name == "guided_regex":
        start = _regex(value)
    elif name == "guided_choice":
        start = _choice_grammar(value)
    else:
        spec = value.get("json_schema") if isinstance(value, Mapping) else None
        schema = spec.get("schema", spec.get("schema_")) if isinstance(spec, Mapping) else None
        if kind not in ("json_object", "json_schema"):
            message = f"unknown response_format type {kind!r}"
            raise _invalid("response_format", "invalid_value", message)
        if kind == "json_object" or schema is None:
            return {"response_format": {"type": "json_object"}}
        start = _json(schema, "response_format.json_schema.schema")
    return {"grammar": f"{LLGUIDANCE}start: {start}"}
