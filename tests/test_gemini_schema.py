"""JSON Schema → Gemini's Schema subset: what is converted, dropped, and refused (and where)."""

from __future__ import annotations

from typing import Any

import pytest

from crossroads.protocol.errors import GatewayError
from crossroads.providers.gemini.schema import to_gemini_schema

ROOT = "tools[0].function.parameters"


def convert(schema: dict[str, Any]) -> dict[str, Any]:
    return to_gemini_schema(schema, path=ROOT)


def refused(schema: dict[str, Any]) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        convert(schema)
    assert info.value.status == 400
    return info.value


def test_types_are_upper_case_and_properties_keep_their_order() -> None:
    schema = {
        "type": "object",
        "title": "Booking",
        "description": "A booking.",
        "properties": {
            "when": {"type": "string", "format": "date-time"},
            "guests": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 8},
            "price": {"type": "number", "format": "double"},
            "vip": {"type": "boolean"},
            "notes": {
                "type": "array",
                "items": {"type": "string", "minLength": 1, "maxLength": 80, "pattern": "^\\w"},
                "minItems": 0,
                "maxItems": 3,
            },
            "extra": {"type": "object", "minProperties": 1, "maxProperties": 2, "properties": {}},
        },
        "required": ["when", "guests"],
    }
    assert convert(schema) == {
        "type": "OBJECT",
        "title": "Booking",
        "description": "A booking.",
        "properties": {
            "when": {"type": "STRING", "format": "date-time"},
            "guests": {"type": "INTEGER", "format": "int32", "minimum": 1, "maximum": 8},
            "price": {"type": "NUMBER", "format": "double"},
            "vip": {"type": "BOOLEAN"},
            "notes": {
                "type": "ARRAY",
                "items": {"type": "STRING", "minLength": 1, "maxLength": 80, "pattern": "^\\w"},
                "minItems": 0,
                "maxItems": 3,
            },
            "extra": {"type": "OBJECT", "minProperties": 1, "maxProperties": 2},
        },
        "propertyOrdering": ["when", "guests", "price", "vip", "notes", "extra"],
        "required": ["when", "guests"],
    }


def test_property_ordering_follows_the_given_order_not_sorted() -> None:
    out = convert({"type": "object", "properties": {"z": {"type": "string"}, "a": {}}})
    assert out["propertyOrdering"] == ["z", "a"]
    assert list(out["properties"]) == ["z", "a"]


def test_a_missing_type_is_inferred_from_properties_items_and_string_enums() -> None:
    assert convert({"properties": {"a": {"enum": ["x", "y"]}}}) == {
        "type": "OBJECT",
        "properties": {"a": {"type": "STRING", "enum": ["x", "y"]}},
        "propertyOrdering": ["a"],
    }
    assert convert({"items": {"type": "integer"}}) == {
        "type": "ARRAY",
        "items": {"type": "INTEGER"},
    }
    assert convert({"description": "anything"}) == {"description": "anything"}


def test_unsupported_formats_are_dropped_and_supported_ones_kept() -> None:
    schema = {
        "type": "object",
        "properties": {
            "email": {"type": "string", "format": "email"},
            "uuid": {"type": "string", "format": "uuid"},
            "stamp": {"type": "string", "format": "date-time"},
            "big": {"type": "integer", "format": "int64"},
            "odd": {"type": "integer", "format": "uint8"},
            "ratio": {"type": "number", "format": "float"},
            "money": {"type": "number", "format": "decimal"},
        },
    }
    assert convert(schema)["properties"] == {
        "email": {"type": "STRING"},
        "uuid": {"type": "STRING"},
        "stamp": {"type": "STRING", "format": "date-time"},
        "big": {"type": "INTEGER", "format": "int64"},
        "odd": {"type": "INTEGER"},
        "ratio": {"type": "NUMBER", "format": "float"},
        "money": {"type": "NUMBER"},
    }


def test_annotation_only_keywords_are_dropped_and_default_and_example_kept() -> None:
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "urn:booking",
        "$comment": "internal",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "name": {
                "type": "string",
                "default": "guest",
                "example": "Ada",
                "examples": ["Ada", "Alan"],
                "readOnly": True,
                "writeOnly": False,
                "deprecated": True,
                "x-internal": 1,
                "uniqueItems": False,
            }
        },
    }
    assert convert(schema) == {
        "type": "OBJECT",
        "properties": {"name": {"type": "STRING", "default": "guest", "example": "Ada"}},
        "propertyOrdering": ["name"],
    }


def test_local_refs_are_inlined_from_defs_and_definitions() -> None:
    schema = {
        "type": "object",
        "properties": {
            "home": {"$ref": "#/$defs/Address"},
            "work": {"$ref": "#/definitions/Address", "description": "Office."},
        },
        "$defs": {"Address": {"type": "object", "properties": {"city": {"type": "string"}}}},
        "definitions": {
            "Address": {
                "type": "object",
                "description": "Somewhere.",
                "properties": {"city": {"type": "string"}},
            }
        },
    }
    address = {
        "type": "OBJECT",
        "properties": {"city": {"type": "STRING"}},
        "propertyOrdering": ["city"],
    }
    assert convert(schema) == {
        "type": "OBJECT",
        "properties": {"home": address, "work": {**address, "description": "Office."}},
        "propertyOrdering": ["home", "work"],
    }


def test_a_ref_used_twice_is_not_mistaken_for_recursion() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/N"}, "b": {"$ref": "#/$defs/N"}},
        "$defs": {"N": {"type": "integer"}},
    }
    assert convert(schema)["properties"] == {"a": {"type": "INTEGER"}, "b": {"type": "INTEGER"}}


def test_recursive_refs_are_refused_at_the_ref() -> None:
    schema = {
        "type": "object",
        "properties": {"root": {"$ref": "#/$defs/Node"}},
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}},
            }
        },
    }
    error = refused(schema)
    assert error.param == f"{ROOT}.$defs.Node.properties.children.items.$ref"
    assert "recursive" in error.message
    assert "unroll it to a fixed depth" in error.message


def test_remote_and_dangling_refs_are_refused() -> None:
    remote = refused({"properties": {"a": {"$ref": "https://example.com/a.json"}}})
    assert remote.param == f"{ROOT}.properties.a.$ref"
    assert "inline the referenced schema" in remote.message
    dangling = refused({"properties": {"a": {"$ref": "#/$defs/Missing"}}})
    assert dangling.param == f"{ROOT}.properties.a.$ref"


def test_a_type_list_with_null_becomes_nullable() -> None:
    assert convert({"type": ["string", "null"], "maxLength": 4}) == {
        "type": "STRING",
        "maxLength": 4,
        "nullable": True,
    }


def test_a_type_list_with_several_types_becomes_any_of() -> None:
    assert convert({"type": ["integer", "string", "null"], "description": "An id."}) == {
        "description": "An id.",
        "anyOf": [{"type": "INTEGER"}, {"type": "STRING"}],
        "nullable": True,
    }


def test_only_null_is_refused() -> None:
    assert refused({"properties": {"a": {"type": "null"}}}).param == f"{ROOT}.properties.a.type"
    assert refused({"type": ["null"]}).param == f"{ROOT}.type"


def test_const_becomes_a_one_value_enum() -> None:
    assert convert({"const": "fixed"}) == {"type": "STRING", "enum": ["fixed"]}
    error = refused({"properties": {"v": {"const": 3}}})
    assert error.param == f"{ROOT}.properties.v.const"


def test_enums_must_be_strings() -> None:
    error = refused({"properties": {"n": {"type": "integer", "enum": [1, 2, 3]}}})
    assert error.param == f"{ROOT}.properties.n.enum"
    assert "strings only" in error.message
    assert "use string values" in error.message
    assert refused({"enum": ["a", 1]}).param == f"{ROOT}.enum"
    assert refused({"type": "integer", "enum": ["1", "2"]}).param == f"{ROOT}.enum"


def test_null_in_a_string_enum_makes_it_nullable() -> None:
    assert convert({"enum": ["a", "b", None]}) == {
        "type": "STRING",
        "enum": ["a", "b"],
        "nullable": True,
    }


def test_one_of_becomes_any_of_and_branches_are_converted() -> None:
    schema = {
        "oneOf": [
            {"type": "object", "properties": {"cat": {"type": "string"}}},
            {"type": "object", "properties": {"dog": {"type": "integer"}}},
        ],
        "description": "A pet.",
    }
    assert convert(schema) == {
        "description": "A pet.",
        "anyOf": [
            {
                "type": "OBJECT",
                "properties": {"cat": {"type": "STRING"}},
                "propertyOrdering": ["cat"],
            },
            {
                "type": "OBJECT",
                "properties": {"dog": {"type": "INTEGER"}},
                "propertyOrdering": ["dog"],
            },
        ],
    }


def test_optional_as_pydantic_writes_it_collapses_to_nullable() -> None:
    schema = {
        "properties": {
            "best": {
                "anyOf": [{"$ref": "#/$defs/Tag"}, {"type": "null"}],
                "default": None,
                "description": "The best tag.",
            }
        },
        "$defs": {"Tag": {"type": "string", "description": "A tag."}},
    }
    assert convert(schema)["properties"]["best"] == {
        "type": "STRING",
        "description": "The best tag.",
        "default": None,
        "nullable": True,
    }


def test_any_of_with_several_branches_and_null_stays_any_of() -> None:
    assert convert({"anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "null"}]}) == {
        "anyOf": [{"type": "INTEGER"}, {"type": "STRING"}],
        "nullable": True,
    }


def test_all_of_with_one_member_is_merged() -> None:
    schema = {
        "properties": {"size": {"allOf": [{"$ref": "#/$defs/Size"}], "description": "Size."}},
        "$defs": {"Size": {"type": "string", "enum": ["S", "M"]}},
    }
    assert convert(schema)["properties"]["size"] == {
        "type": "STRING",
        "enum": ["S", "M"],
        "description": "Size.",
    }
    assert convert({"allOf": [{"type": "integer"}]}) == {"type": "INTEGER"}


def test_all_of_with_several_members_is_refused() -> None:
    error = refused({"properties": {"x": {"allOf": [{"type": "string"}, {"minLength": 1}]}}})
    assert error.param == f"{ROOT}.properties.x.allOf"
    assert "merge the schemas into one" in error.message


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("not", {"type": "string"}),
        ("if", {"minItems": 1}),
        ("then", {"maxItems": 2}),
        ("else", {"maxItems": 3}),
        ("patternProperties", {"^x": {}}),
        ("propertyNames", {"pattern": "^x"}),
        ("prefixItems", [{"type": "string"}]),
        ("dependentRequired", {"a": ["b"]}),
        ("dependentSchemas", {"a": {}}),
        ("dependencies", {"a": ["b"]}),
        ("contains", {"type": "string"}),
        ("minContains", 1),
        ("maxContains", 2),
        ("unevaluatedProperties", False),
        ("unevaluatedItems", False),
        ("multipleOf", 2),
        ("uniqueItems", True),
        ("additionalProperties", True),
        ("additionalProperties", {"type": "string"}),
        ("items", [{"type": "string"}, {"type": "integer"}]),
    ],
)
def test_inexpressible_keywords_are_refused_with_their_full_path(keyword: str, value: Any) -> None:
    schema = {
        "type": "object",
        "properties": {"tags": {"type": "array", "items": {"type": "string"}, keyword: value}},
    }
    error = refused(schema)
    assert error.param == f"{ROOT}.properties.tags.{keyword}"
    assert keyword in error.message
    assert "cannot be expressed in Gemini's schema subset;" in error.message
    assert error.code is None


def test_refusals_inside_defs_and_branches_name_the_nested_path() -> None:
    schema = {
        "properties": {"a": {"anyOf": [{"type": "string"}, {"$ref": "#/$defs/B"}]}},
        "$defs": {"B": {"type": "object", "additionalProperties": {"type": "integer"}}},
    }
    assert refused(schema).param == f"{ROOT}.$defs.B.additionalProperties"
    branch = {"properties": {"a": {"oneOf": [{"type": "string"}, {"not": {}}]}}}
    assert refused(branch).param == f"{ROOT}.properties.a.oneOf[1].not"


def test_exclusive_bounds_on_integers_become_inclusive() -> None:
    assert convert({"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 10}) == {
        "type": "INTEGER",
        "minimum": 1,
        "maximum": 9,
    }
    # OpenAPI 3.0's boolean form qualifies `minimum` / `maximum`.
    assert convert({"type": "integer", "minimum": 5, "exclusiveMinimum": True}) == {
        "type": "INTEGER",
        "minimum": 6,
    }
    assert convert({"type": "integer", "maximum": 5, "exclusiveMaximum": False}) == {
        "type": "INTEGER",
        "maximum": 5,
    }


def test_exclusive_bounds_on_numbers_are_refused() -> None:
    error = refused({"properties": {"p": {"type": "number", "exclusiveMinimum": 0}}})
    assert error.param == f"{ROOT}.properties.p.exclusiveMinimum"
    assert "use the inclusive `minimum` instead" in error.message


def test_an_array_needs_items() -> None:
    error = refused({"properties": {"tags": {"type": "array", "maxItems": 3}}})
    assert error.param == f"{ROOT}.properties.tags.items"
    assert "add `items`" in error.message
    assert refused({"type": ["array", "null"]}).param == f"{ROOT}.items"


def test_required_names_must_be_defined_properties() -> None:
    error = refused({"type": "object", "properties": {"a": {}}, "required": ["a", "b"]})
    assert error.param == f"{ROOT}.required[1]"
    assert "'b'" in error.message


def test_unknown_types_and_non_object_schemas_are_refused() -> None:
    assert refused({"properties": {"a": {"type": "float"}}}).param == f"{ROOT}.properties.a.type"
    assert refused({"properties": {"a": 3}}).param == f"{ROOT}.properties.a"


def test_the_input_is_not_modified() -> None:
    schema = {
        "type": ["object", "null"],
        "properties": {"a": {"$ref": "#/$defs/A"}},
        "$defs": {"A": {"type": "string"}},
    }
    snapshot = repr(schema)
    convert(schema)
    assert repr(schema) == snapshot


def test_the_schema_cache_remembers_conversions_and_stays_bounded() -> None:
    from crossroads.providers.gemini.schema import SchemaCache

    cache = SchemaCache(size=2)
    first = cache.convert({"type": "string"}, path="a")
    assert cache.convert({"type": "string"}, path="a") is first
    assert first == to_gemini_schema({"type": "string"}, path="a")
    cache.convert({"type": "integer"}, path="a")
    cache.convert({"type": "boolean"}, path="a")
    assert cache.convert({"type": "string"}, path="a") is not first  # evicted, oldest first
    for _ in range(2):  # a rejected schema is rejected every time, never remembered
        with pytest.raises(GatewayError) as caught:
            cache.convert({"type": "object", "additionalProperties": {}}, path="p")
        assert caught.value.param == "p.additionalProperties"
