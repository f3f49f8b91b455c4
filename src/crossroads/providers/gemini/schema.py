"""JSON Schema (as OpenAI callers write it) → the Schema object Gemini accepts.

Gemini's `Schema` is a select subset of OpenAPI 3.0: upper-case `type` names, `nullable`
instead of a `"null"` type, string-only `enum`, `anyOf` but no `$ref`, no `not`, no maps.
Tool parameters and `response_format` schemas are converted here before they are sent.

The one design decision: nothing is silently weakened. A keyword Gemini cannot express
(`uniqueItems: true`, `additionalProperties` as a schema, a recursive `$ref`, …) raises a
400 whose `param` is the dotted body path of that keyword and whose message says what to
change. Only keywords that never constrain a value (`$schema`, `$comment`, `examples`, …)
and string/number formats Gemini ignores are dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from crossroads.protocol.errors import GatewayError, bad_request

__all__ = ["SchemaCache", "to_gemini_schema"]

_TYPES = {
    "string": "STRING",
    "number": "NUMBER",
    "integer": "INTEGER",
    "boolean": "BOOLEAN",
    "array": "ARRAY",
    "object": "OBJECT",
}
_FORMATS = {
    "STRING": frozenset({"date-time", "enum"}),
    "NUMBER": frozenset({"float", "double"}),
    "INTEGER": frozenset({"int32", "int64"}),
}
# Copied as they are: Gemini's Schema has a field of the same name and meaning.
_COPIED = (
    "title",
    "description",
    "nullable",
    "default",
    "example",
    "required",
    "minItems",
    "maxItems",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "pattern",
    "minProperties",
    "maxProperties",
)
_EXCLUSIVE = (("exclusiveMinimum", "minimum", 1), ("exclusiveMaximum", "maximum", -1))
# Constraints Gemini has no field for, with what the caller can do instead.
_REJECTED = {
    "not": "describe the excluded values in `description` instead",
    "if": "flatten the conditional into `anyOf` branches",
    "then": "flatten the conditional into `anyOf` branches",
    "else": "flatten the conditional into `anyOf` branches",
    "patternProperties": "list the allowed keys under `properties`",
    "propertyNames": "list the allowed keys under `properties`",
    "unevaluatedProperties": "list the allowed keys under `properties`",
    "unevaluatedItems": "describe the items with a single `items` schema",
    "prefixItems": "use an object with named properties instead of a tuple",
    "contains": "describe the required element in `description` instead",
    "minContains": "describe the required element in `description` instead",
    "maxContains": "describe the required element in `description` instead",
    "dependentRequired": "make the dependent properties required, or split the schema",
    "dependentSchemas": "merge the dependent schema into `properties`",
    "dependencies": "make the dependent properties required, or split the schema",
    "multipleOf": "remove it and check the value in your code",
    "$dynamicRef": "use a local `$ref` to `#/$defs/...` instead",
    "$recursiveRef": "unroll the recursion to a fixed depth",
}


def to_gemini_schema(schema: Mapping[str, Any], *, path: str) -> dict[str, Any]:
    """`schema` in Gemini's subset; `path` is the schema's own body path, for errors."""
    return _Conversion(schema, path).convert(schema, path, ())


class SchemaCache:
    """Remembers conversions: callers send the same tool schemas on every request.

    Keyed by the schema's serialised form and path; bounded, the oldest entry leaving first.
    Converted schemas are only ever serialised, never mutated, so sharing them is safe. One
    cache belongs to one provider, created with it.
    """

    __slots__ = ("_entries", "_size")

    def __init__(self, size: int = 512) -> None:
        self._entries: dict[tuple[bytes, str], dict[str, Any]] = {}
        self._size = size

    def convert(self, schema: Mapping[str, Any], *, path: str) -> dict[str, Any]:
        if not self._size:
            return to_gemini_schema(schema, path=path)
        try:
            key = (orjson.dumps(schema), path)
        except TypeError:  # not JSON-serialisable: convert (and fail) without remembering
            return to_gemini_schema(schema, path=path)
        if (cached := self._entries.get(key)) is not None:
            return cached
        result = to_gemini_schema(schema, path=path)
        if len(self._entries) >= self._size:
            del self._entries[next(iter(self._entries))]
        self._entries[key] = result
        return result


class _Conversion:
    __slots__ = ("_root", "_root_path")

    def __init__(self, root: Mapping[str, Any], root_path: str) -> None:
        self._root = root
        self._root_path = root_path

    def convert(self, node: Any, path: str, refs: tuple[str, ...]) -> dict[str, Any]:
        if node is True:
            return {}
        if not isinstance(node, Mapping):
            raise bad_request(f"A schema must be a JSON object, got {node!r}.", param=path)
        if "$ref" in node:
            return self._inline(node, path, refs)
        for keyword, advice in _REJECTED.items():
            if keyword in node:
                raise _inexpressible(keyword, f"{path}.{keyword}", advice)
        if node.get("uniqueItems") is True:
            raise _inexpressible(
                "uniqueItems: true",
                f"{path}.uniqueItems",
                "remove it and check uniqueness in your code",
            )
        if isinstance(node.get("items"), list):
            raise _inexpressible(
                "items as a list (a tuple)",
                f"{path}.items",
                "use an object with named properties instead of a tuple",
            )
        extra = node.get("additionalProperties", False)
        if extra is not False:
            raise _inexpressible(
                "additionalProperties other than false (a map with free keys)",
                f"{path}.additionalProperties",
                "list the allowed keys under `properties`, or pass the map as a JSON string",
            )
        if "allOf" in node:
            return self._merge_all_of(node, path, refs)
        if "oneOf" in node or "anyOf" in node:
            return self._any_of(node, path, refs)
        if isinstance(node.get("type"), list):
            return self._type_list(node, path, refs)
        return self._plain(node, path, refs)

    def _inline(self, node: Mapping[str, Any], path: str, refs: tuple[str, ...]) -> dict[str, Any]:
        ref = node["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise bad_request(
                f"Only local `$ref`s (`#/$defs/...`) can be converted for Gemini, got {ref!r}; "
                "inline the referenced schema.",
                param=f"{path}.$ref",
            )
        if ref in refs:
            raise bad_request(
                f"The `$ref` {ref!r} is recursive, and Gemini's schema has no references to "
                "express recursion; unroll it to a fixed depth.",
                param=f"{path}.$ref",
            )
        target, target_path = self._resolve(ref, path)
        siblings = {key: value for key, value in node.items() if key != "$ref"}
        if not siblings:
            return self.convert(target, target_path, (*refs, ref))
        # Keywords beside a `$ref` apply together with it; the local ones (usually a
        # `description`) take precedence over the referenced schema's.
        merged = {**_as_mapping(target, target_path), **siblings}
        return self.convert(merged, path, (*refs, ref))

    def _resolve(self, ref: str, path: str) -> tuple[Any, str]:
        target: Any = self._root
        target_path = self._root_path
        for raw in ref[1:].split("/")[1:] if ref != "#" else ():
            key = raw.replace("~1", "/").replace("~0", "~")
            if isinstance(target, Mapping) and key in target:
                target = target[key]
                target_path += f".{key}"
            elif isinstance(target, list) and key.isdigit() and int(key) < len(target):
                target = target[int(key)]
                target_path += f"[{key}]"
            else:
                raise bad_request(
                    f"The `$ref` {ref!r} points to nothing in this schema; "
                    "define it under `$defs`.",
                    param=f"{path}.$ref",
                )
        return target, target_path

    def _merge_all_of(
        self, node: Mapping[str, Any], path: str, refs: tuple[str, ...]
    ) -> dict[str, Any]:
        members = node["allOf"]
        if not isinstance(members, list) or len(members) != 1:
            raise _inexpressible(
                "allOf with more than one schema",
                f"{path}.allOf",
                "merge the schemas into one",
            )
        rest = {key: value for key, value in node.items() if key != "allOf"}
        member = _as_mapping(members[0], f"{path}.allOf[0]")
        if not rest:
            return self.convert(member, f"{path}.allOf[0]", refs)
        return self.convert({**member, **rest}, path, refs)

    def _any_of(self, node: Mapping[str, Any], path: str, refs: tuple[str, ...]) -> dict[str, Any]:
        keyword = "oneOf" if "oneOf" in node else "anyOf"
        if "oneOf" in node and "anyOf" in node:
            raise _inexpressible("oneOf beside anyOf", f"{path}.oneOf", "merge them into anyOf")
        members = node[keyword]
        if not isinstance(members, list) or not members:
            raise bad_request(f"`{keyword}` must be a non-empty list.", param=f"{path}.{keyword}")
        branches: list[dict[str, Any]] = []
        nullable = False
        for i, member in enumerate(members):
            if isinstance(member, Mapping) and member.get("type") == "null":
                nullable = True
            else:
                branches.append(self.convert(member, f"{path}.{keyword}[{i}]", refs))
        rest = {key: value for key, value in node.items() if key != keyword}
        out = self.convert(rest, path, refs) if rest else {}
        if not branches:
            raise _only_null(f"{path}.{keyword}")
        if len(branches) == 1 and not ({"type", "properties", "items"} & out.keys()):
            # `Optional[X]` as Pydantic writes it: anyOf [X, null] → X, nullable.
            out = {**branches[0], **out}
        else:
            out["anyOf"] = branches
        if nullable:
            out["nullable"] = True
        return out

    def _type_list(
        self, node: Mapping[str, Any], path: str, refs: tuple[str, ...]
    ) -> dict[str, Any]:
        names = [name for name in node["type"] if name != "null"]
        nullable = len(names) != len(node["type"])
        if not names:
            raise _only_null(f"{path}.type")
        if len(names) == 1:
            out = self._plain({**node, "type": names[0]}, path, refs)
        else:
            annotations = {"title", "description", "default", "example", "nullable"}
            rest = {key: value for key, value in node.items() if key not in annotations}
            out = self._plain({key: node[key] for key in annotations & node.keys()}, path, refs)
            out["anyOf"] = [
                self._plain({**rest, "type": name}, f"{path}.type[{i}]", refs)
                for i, name in enumerate(names)
            ]
        if nullable:
            out["nullable"] = True
        return out

    def _plain(self, node: Mapping[str, Any], path: str, refs: tuple[str, ...]) -> dict[str, Any]:
        out: dict[str, Any] = {key: node[key] for key in _COPIED if key in node}
        kind = _gemini_type(node, path)
        enum = _enum(node, path)
        if enum is not None:
            values, nullable = enum
            if kind not in (None, "STRING"):
                raise bad_request(
                    f"Gemini's `enum` holds strings only, so an enum on a {kind.lower()} "
                    "cannot be expressed; make the values strings and the type string.",
                    param=f"{path}.{'const' if 'const' in node else 'enum'}",
                )
            kind = "STRING"
            out["enum"] = values
            if nullable:
                out["nullable"] = True
        if kind is not None:
            out["type"] = kind
        fmt = node.get("format")
        if isinstance(fmt, str) and fmt in _FORMATS.get(kind or "", ()):
            out["format"] = fmt
        for exclusive, inclusive, step in _EXCLUSIVE:
            if exclusive in node:
                _exclusive_bound(node, out, kind, (exclusive, inclusive, step), path)
        if "items" in node:
            out["items"] = self.convert(node["items"], f"{path}.items", refs)
        elif kind == "ARRAY":
            raise bad_request(
                "Gemini needs the schema of an array's elements; add `items` "
                '(for example {"type": "string"}).',
                param=f"{path}.items",
            )
        properties = node.get("properties") or {}
        if not isinstance(properties, Mapping):
            raise bad_request("`properties` must be an object.", param=f"{path}.properties")
        if properties:
            out["properties"] = {
                name: self.convert(sub, f"{path}.properties.{name}", refs)
                for name, sub in properties.items()
            }
            out["propertyOrdering"] = list(properties)
        for i, name in enumerate(out.get("required") or ()):
            if name not in properties:
                raise bad_request(
                    f"`required` names {name!r}, which is not under `properties`; Gemini "
                    "refuses that, so define the property or remove the name.",
                    param=f"{path}.required[{i}]",
                )
        return out


def _gemini_type(node: Mapping[str, Any], path: str) -> str | None:
    name = node.get("type")
    if name is None:
        if "properties" in node:
            return "OBJECT"
        return "ARRAY" if "items" in node else None
    if name == "null":
        raise _only_null(f"{path}.type")
    kind = _TYPES.get(name) if isinstance(name, str) else None
    if kind is None:
        raise bad_request(
            f"Unknown JSON Schema type {name!r}; use one of {', '.join(_TYPES)} or null.",
            param=f"{path}.type",
        )
    return kind


def _enum(node: Mapping[str, Any], path: str) -> tuple[list[str], bool] | None:
    """The string values and whether null is allowed, from `enum` or `const`."""
    if "const" in node:
        values, where = [node["const"]], f"{path}.const"
    elif "enum" in node:
        values, where = node["enum"], f"{path}.enum"
        if not isinstance(values, list) or not values:
            raise bad_request("`enum` must be a non-empty list.", param=where)
    else:
        return None
    strings = [value for value in values if value is not None]
    if not strings or not all(isinstance(value, str) for value in strings):
        raise bad_request(
            f"Gemini's enums hold strings only, so {values!r} cannot be expressed; use string "
            "values (for example ['1', '2']) and convert them in your code.",
            param=where,
        )
    return strings, len(strings) != len(values)


def _exclusive_bound(
    node: Mapping[str, Any],
    out: dict[str, Any],
    kind: str | None,
    names: tuple[str, str, int],
    path: str,
) -> None:
    """An exclusive bound on integers is an inclusive one moved by one step; on other
    numbers Gemini cannot say "strictly", so the caller has to choose."""
    exclusive, inclusive, step = names
    value = node[exclusive]
    if value is False:
        return
    if value is True:  # OpenAPI 3.0 / draft 4: a flag on `minimum` / `maximum`
        value = node.get(inclusive)
    if kind == "INTEGER" and isinstance(value, int | float) and float(value).is_integer():
        out[inclusive] = int(value) + step
        return
    raise _inexpressible(
        f"{exclusive} on a non-integer",
        f"{path}.{exclusive}",
        f"use the inclusive `{inclusive}` instead",
    )


def _as_mapping(node: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(node, Mapping):
        raise bad_request(f"A schema must be a JSON object, got {node!r}.", param=path)
    return node


def _only_null(param: str) -> GatewayError:
    return bad_request(
        "A schema that only allows null cannot be expressed for Gemini; give it a type and "
        "mark it nullable.",
        param=param,
    )


def _inexpressible(keyword: str, param: str, advice: str) -> GatewayError:
    return bad_request(
        f"`{keyword}` cannot be expressed in Gemini's schema subset; {advice}.", param=param
    )
