"""The fake Gemini upstream's request checks: the GenerateContentRequest as the real API parses it.

A gateway that translates OpenAI requests into Gemini's dialect fails silently when the
fake is lenient, so this module is as strict as the real endpoint: it knows every field of
the v1beta request (camelCase, as the REST docs spell them) and rejects the rest the way the
real parser does, then applies the semantic rules the real API enforces after parsing.

The one design decision: two passes with two message styles, as the real API has. The parse
pass (unknown names, wrongly typed values) answers `Invalid JSON payload received. Unknown
name "x" at 'generation_config': Cannot find field.`, with snake_case paths and map entries
addressed by position (`properties[0].value`); the semantic pass answers
`* GenerateContentRequest.generation_config.temperature: ...`, map entries addressed by key.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import orjson

__all__ = ["request_error"]

_PACKAGE = "type.googleapis.com/google.ai.generativelanguage.v1beta"
_FUNCTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,63}")
_BAD_FUNCTION_NAME = (
    "Invalid function name. Must start with a letter or an underscore. Must be alphameric"
    " (a-z, A-Z, 0-9), underscores (_), dots (.), colons (:), or dashes (-), with a maximum"
    " length of 64."
)
_UNCALLED = (
    "Please ensure that function response turn comes immediately after a function call turn."
)
_UNANSWERED = (
    "Please ensure that the number of function response parts is equal to the number of"
    " function call parts of the function call turn."
)
_MIME_TYPES = (
    "text/plain",
    "application/json",
    "application/xml",
    "application/yaml",
    "text/x.enum",
)
# What inline data may hold: media, text and PDF documents.
_INLINE_TYPES = ("image/", "audio/", "video/", "text/", "application/pdf")

# A field's kind: a scalar's proto type name, ("enum", name, values), ("message", name),
# ("repeated", kind), ("map", kind), "struct" (any JSON object) or "value" (any JSON value).
_Kind = Any
_STR, _BOOL, _INT, _FLOAT, _BYTES = (
    "TYPE_STRING",
    "TYPE_BOOL",
    "TYPE_INT32",
    "TYPE_FLOAT",
    "TYPE_BYTES",
)


def _enum(name: str, values: str) -> _Kind:
    return ("enum", name, frozenset(values.split()))


def _message(name: str) -> _Kind:
    return ("message", name)


def _repeated(kind: _Kind) -> _Kind:
    return ("repeated", kind)


_CATEGORIES = (
    "HARM_CATEGORY_UNSPECIFIED HARM_CATEGORY_DEROGATORY HARM_CATEGORY_TOXICITY"
    " HARM_CATEGORY_VIOLENCE HARM_CATEGORY_SEXUAL HARM_CATEGORY_MEDICAL HARM_CATEGORY_DANGEROUS"
    " HARM_CATEGORY_HARASSMENT HARM_CATEGORY_HATE_SPEECH HARM_CATEGORY_SEXUALLY_EXPLICIT"
    " HARM_CATEGORY_DANGEROUS_CONTENT HARM_CATEGORY_CIVIC_INTEGRITY"
)
_THRESHOLDS = (
    "HARM_BLOCK_THRESHOLD_UNSPECIFIED BLOCK_LOW_AND_ABOVE BLOCK_MEDIUM_AND_ABOVE BLOCK_ONLY_HIGH"
    " BLOCK_NONE OFF"
)
_OUTCOMES = "OUTCOME_UNSPECIFIED OUTCOME_OK OUTCOME_FAILED OUTCOME_DEADLINE_EXCEEDED"
_RESOLUTIONS = (
    "MEDIA_RESOLUTION_UNSPECIFIED MEDIA_RESOLUTION_LOW MEDIA_RESOLUTION_MEDIUM"
    " MEDIA_RESOLUTION_HIGH"
)
_OTHER_TOOLS = (
    "googleSearchRetrieval codeExecution googleSearch urlContext computerUse fileSearch googleMaps"
)

_MESSAGES: dict[str, dict[str, _Kind]] = {
    "GenerateContentRequest": {
        "model": _STR,
        "contents": _repeated(_message("Content")),
        "systemInstruction": _message("Content"),
        "tools": _repeated(_message("Tool")),
        "toolConfig": _message("ToolConfig"),
        "safetySettings": _repeated(_message("SafetySetting")),
        "generationConfig": _message("GenerationConfig"),
        "cachedContent": _STR,
    },
    "Content": {"parts": _repeated(_message("Part")), "role": _STR},
    "Part": {
        # The `data` oneof first (see _DATA), then the fields beside it.
        "text": _STR,
        "inlineData": _message("Blob"),
        "functionCall": _message("FunctionCall"),
        "functionResponse": _message("FunctionResponse"),
        "fileData": _message("FileData"),
        "executableCode": _message("ExecutableCode"),
        "codeExecutionResult": _message("CodeExecutionResult"),
        "thought": _BOOL,
        "thoughtSignature": _BYTES,
        "videoMetadata": _message("VideoMetadata"),
        "partMetadata": "struct",
    },
    "Blob": {"mimeType": _STR, "data": _BYTES},
    "FileData": {"mimeType": _STR, "fileUri": _STR},
    "FunctionCall": {"id": _STR, "name": _STR, "args": "struct"},
    "FunctionResponse": {
        "id": _STR,
        "name": _STR,
        "response": "struct",
        "willContinue": _BOOL,
        "scheduling": _enum("Scheduling", "SCHEDULING_UNSPECIFIED SILENT WHEN_IDLE INTERRUPT"),
    },
    "ExecutableCode": {"language": _enum("Language", "LANGUAGE_UNSPECIFIED PYTHON"), "code": _STR},
    "CodeExecutionResult": {"outcome": _enum("Outcome", _OUTCOMES), "output": _STR},
    "VideoMetadata": {"startOffset": _STR, "endOffset": _STR, "fps": _FLOAT},
    "Tool": {
        "functionDeclarations": _repeated(_message("FunctionDeclaration")),
        **dict.fromkeys(_OTHER_TOOLS.split(), "struct"),
    },
    "FunctionDeclaration": {
        "name": _STR,
        "description": _STR,
        "behavior": _enum("Behavior", "UNSPECIFIED BLOCKING NON_BLOCKING"),
        "parameters": _message("Schema"),
        "parametersJsonSchema": "value",
        "response": _message("Schema"),
        "responseJsonSchema": "value",
    },
    "ToolConfig": {
        "functionCallingConfig": _message("FunctionCallingConfig"),
        "retrievalConfig": "struct",
    },
    "FunctionCallingConfig": {
        "mode": _enum("Mode", "MODE_UNSPECIFIED AUTO ANY NONE VALIDATED"),
        "allowedFunctionNames": _repeated(_STR),
    },
    "SafetySetting": {
        "category": _enum("HarmCategory", _CATEGORIES),
        "threshold": _enum("HarmBlockThreshold", _THRESHOLDS),
    },
    "GenerationConfig": {
        "candidateCount": _INT,
        "stopSequences": _repeated(_STR),
        "maxOutputTokens": _INT,
        "temperature": _FLOAT,
        "topP": _FLOAT,
        "topK": _INT,
        "seed": _INT,
        "responseMimeType": _STR,
        "responseSchema": _message("Schema"),
        "responseJsonSchema": "value",
        "_responseJsonSchema": "value",
        "presencePenalty": _FLOAT,
        "frequencyPenalty": _FLOAT,
        "responseLogprobs": _BOOL,
        "logprobs": _INT,
        "enableEnhancedCivicAnswers": _BOOL,
        "responseModalities": _repeated(_enum("Modality", "MODALITY_UNSPECIFIED TEXT IMAGE AUDIO")),
        "speechConfig": "struct",
        "thinkingConfig": _message("ThinkingConfig"),
        "imageConfig": "struct",
        "mediaResolution": _enum("MediaResolution", _RESOLUTIONS),
    },
    "ThinkingConfig": {
        "includeThoughts": _BOOL,
        "thinkingBudget": _INT,
        "thinkingLevel": _enum(
            "ThinkingLevel", "THINKING_LEVEL_UNSPECIFIED MINIMAL LOW MEDIUM HIGH"
        ),
    },
    # The OpenAPI 3.0 subset; JSON-Schema-only keywords ($ref, $defs, additionalProperties,
    # const, oneOf, allOf, ...) are unknown names here (they belong in the *JsonSchema fields).
    "Schema": {
        "type": _enum("Type", "TYPE_UNSPECIFIED STRING NUMBER INTEGER BOOLEAN ARRAY OBJECT NULL"),
        "format": _STR,
        "title": _STR,
        "description": _STR,
        "nullable": _BOOL,
        "enum": _repeated(_STR),
        "maxItems": _INT,
        "minItems": _INT,
        "properties": ("map", _message("Schema")),
        "required": _repeated(_STR),
        "minProperties": _INT,
        "maxProperties": _INT,
        "minLength": _INT,
        "maxLength": _INT,
        "pattern": _STR,
        "example": "value",
        "anyOf": _repeated(_message("Schema")),
        "propertyOrdering": _repeated(_STR),
        "default": "value",
        "items": _message("Schema"),
        "minimum": _FLOAT,
        "maximum": _FLOAT,
    },
}
_DATA = list(_MESSAGES["Part"])[:7]


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _shown(value: Any) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= 80 else text[:77] + "..."


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _scalar_ok(kind: str, value: Any) -> bool:
    if kind == _STR:
        return isinstance(value, str)
    if kind == _BOOL:
        return isinstance(value, bool)
    if kind == _FLOAT:
        return _number(value)
    if kind == _INT:  # int64 fields travel as strings in proto JSON; both forms parse
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, str) and re.fullmatch(r"-?\d+", value) is not None
        )
    try:  # _BYTES: standard or URL-safe base64
        base64.b64decode(value.replace("-", "+").replace("_", "/"), validate=True)
    except (AttributeError, binascii.Error, ValueError):
        return False
    return True


def _type_name(kind: _Kind) -> str:
    """How the real parser names a field's type in its `Invalid value` message."""
    if kind == "struct":
        return "type.googleapis.com/google.protobuf.Struct"
    if isinstance(kind, str):
        return kind
    if kind[0] in ("repeated", "map"):
        return _type_name(kind[1])
    return f"{_PACKAGE}.{kind[1]}"


def _parse(value: Any, kind: _Kind, at: str, errors: list[str]) -> None:
    """Collect the parse errors of `value` read as `kind` at path `at` (snake_case)."""
    if value is None or kind == "value":
        return
    where = f" at '{at}'" if at else ""
    tag = kind if isinstance(kind, str) else kind[0]
    if tag == "repeated" and isinstance(value, list):
        for i, item in enumerate(value):
            _parse(item, kind[1], f"{at}[{i}]", errors)
    elif tag == "map" and isinstance(value, dict):
        for i, item in enumerate(value.values()):
            _parse(item, kind[1], f"{at}[{i}].value", errors)
    elif tag == "enum" and isinstance(value, str) and value.upper() in kind[2]:
        pass
    elif tag in ("struct", "message", "map") and isinstance(value, dict):
        if tag == "message":
            _parse_message(value, kind[1], at, errors)
    elif tag not in (_STR, _BOOL, _INT, _FLOAT, _BYTES) or not _scalar_ok(tag, value):
        errors.append(f"Invalid value{where} ({_type_name(kind)}), {_shown(value)}")


def _parse_message(value: dict[str, Any], message: str, at: str, errors: list[str]) -> None:
    where = f" at '{at}'" if at else ""
    fields = _MESSAGES[message]
    data: str | None = None
    for name, item in value.items():
        if name not in fields:
            unknown = f'Unknown name "{name}"{where}: Cannot find field.'
            errors.append(f"Invalid JSON payload received. {unknown}")
            continue
        if message == "Part" and name in _DATA and item is not None:
            if data is not None:
                errors.append(
                    f"Invalid value{where} (oneof), oneof field 'data' is already set."
                    f" Cannot set '{name}'"
                )
            data = name
        _parse(item, fields[name], f"{at}.{_snake(name)}" if at else _snake(name), errors)


def _schema_type(schema: dict[str, Any]) -> str:
    """A Schema's type in upper case ("" when unset); the REST API accepts either case."""
    kind = schema.get("type")
    return kind.upper() if isinstance(kind, str) else ""


class _Checks:
    """The semantic pass; runs only on a body that parsed, so shapes are known."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def fail(self, path: str, message: str) -> None:
        self.errors.append(f"* GenerateContentRequest.{path}: {message}\n")

    def schema(self, schema: dict[str, Any] | None, path: str) -> None:
        if schema is None:
            return
        kind, properties = _schema_type(schema), schema.get("properties")
        if properties is not None and kind != "OBJECT":
            self.fail(f"{path}.properties", "only allowed for OBJECT type")
        if kind == "ARRAY" and schema.get("items") is None:
            self.fail(f"{path}.items", "missing field.")
        if kind == "STRING" and schema.get("format") not in (None, "", "enum", "date-time"):
            self.fail(f"{path}.format", "only 'enum' and 'date-time' are supported for STRING type")
        if schema.get("enum") is not None and kind != "STRING":
            self.fail(f"{path}.enum", "only allowed for STRING type")
        for i, name in enumerate(schema.get("required") or []):
            if name not in (properties or {}):
                self.fail(f"{path}.required[{i}]", f'property "{name}" is not defined')
        for name, child in (properties or {}).items():
            self.schema(child, f"{path}.properties[{name}]")
        self.schema(schema.get("items"), f"{path}.items")
        for i, child in enumerate(schema.get("anyOf") or []):
            self.schema(child, f"{path}.any_of[{i}]")

    def contents(self, contents: list[dict[str, Any]]) -> str | None:
        """Check the turns; returns the real API's bare message for a bad role or turn order."""
        calls: list[Any] | None = None  # the function names of the open function-call turn
        answered = 0  # function responses given to it so far
        for i, content in enumerate(contents):
            if content.get("role") not in (None, "", "user", "model"):
                return "Please use a valid role: user, model."
            parts = content.get("parts") or []
            if not parts:
                self.fail(f"contents[{i}].parts", "contents.parts must not be empty.")
            for j, part in enumerate(parts):
                if not any(part.get(name) is not None for name in _DATA):
                    path = f"contents[{i}].parts[{j}].data"
                    self.fail(path, "required oneof field 'data' must have one initialized field")
                mime = (part.get("inlineData") or {}).get("mimeType", "text/plain")
                if not str(mime).startswith(_INLINE_TYPES):
                    return f"Unsupported MIME type: {mime}"
            names = [p["functionCall"].get("name") for p in parts if p.get("functionCall")]
            responses = [
                (j, p["functionResponse"]) for j, p in enumerate(parts) if p.get("functionResponse")
            ]
            if not responses:
                if calls is not None and answered and answered != len(calls):
                    return _UNANSWERED
                calls, answered = (names or None), 0
                continue
            if calls is None:
                return _UNCALLED
            for j, response in responses:
                if response.get("name") not in calls:
                    path = f"contents[{i}].parts[{j}].function_response.name"
                    self.fail(path, f'no preceding function call is named "{response.get("name")}"')
            answered += len(responses)
        if calls is not None and answered and answered != len(calls):
            return _UNANSWERED
        return None

    def tools(self, body: dict[str, Any]) -> None:
        declared: list[str] = []
        for i, tool in enumerate(body.get("tools") or []):
            for j, function in enumerate(tool.get("functionDeclarations") or []):
                path = f"tools[{i}].function_declarations[{j}]"
                name = function.get("name") or ""
                declared.append(name)
                if not _FUNCTION_NAME.fullmatch(name):
                    self.fail(f"{path}.name", _BAD_FUNCTION_NAME)
                if (
                    function.get("parameters") is not None
                    and function.get("parametersJsonSchema") is not None
                ):
                    self.fail(path, "parameters and parameters_json_schema must not both be set")
                self.schema(function.get("parameters"), f"{path}.parameters")
                self.schema(function.get("response"), f"{path}.response")
        config = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
        allowed = config.get("allowedFunctionNames") or []
        path = "tool_config.function_calling_config"
        if allowed and str(config.get("mode") or "AUTO").upper() not in ("ANY", "VALIDATED"):
            self.fail(
                f"{path}.allowed_function_names", "only allowed when mode is ANY or VALIDATED"
            )
        for i, name in enumerate(allowed):
            if name not in declared:
                self.fail(
                    f"{path}.allowed_function_names[{i}]", f'function "{name}" is not declared'
                )

    def generation(self, config: dict[str, Any]) -> None:
        path = "generation_config"

        def outside(name: str, low: float, high: float) -> bool:
            value = config.get(name)
            return value is not None and not low <= float(value) <= high

        if outside("candidateCount", 1, 8):
            self.fail(f"{path}.candidate_count", "candidate_count must be in the range [1, 8]")
        if outside("temperature", 0, 2):
            self.fail(f"{path}.temperature", "temperature must be in the range [0.0, 2.0]")
        if outside("topP", 0, 1):
            self.fail(f"{path}.top_p", "top_p must be in the range [0.0, 1.0]")
        if outside("logprobs", 0, 20):
            self.fail(f"{path}.logprobs", "logprobs must be in the range [0, 20]")
        if config.get("logprobs") is not None and config.get("responseLogprobs") is not True:
            self.fail(f"{path}.logprobs", "logprobs is only valid when response_logprobs is true")
        if len(config.get("stopSequences") or []) > 5:
            self.fail(f"{path}.stop_sequences", "at most 5 stop sequences are allowed")
        mime = config.get("responseMimeType") or "text/plain"
        if mime not in _MIME_TYPES:
            allowed = ", ".join(f"`{m}`" for m in _MIME_TYPES[:-1])
            self.fail(
                f"{path}.response_mime_type", f"allowed mimetypes are {allowed} and `text/x.enum`."
            )
        schema = config.get("responseSchema")
        json_schema = config.get("responseJsonSchema", config.get("_responseJsonSchema"))
        if schema is not None and json_schema is not None:
            self.fail(
                f"{path}.response_schema",
                "response_schema and response_json_schema are mutually exclusive",
            )
        if (schema is not None or json_schema is not None) and mime not in (
            "application/json",
            "text/x.enum",
        ):
            self.fail(
                f"{path}.response_mime_type",
                "response_mime_type must be application/json or text/x.enum when a response"
                " schema is set",
            )
        self.schema(schema, f"{path}.response_schema")


def request_error(body: Any) -> str | None:
    """The message of the 400 INVALID_ARGUMENT the real API gives `body`, or None if valid."""
    if not isinstance(body, dict):
        return "Invalid JSON payload received. Expected a JSON object as the request body."
    errors: list[str] = []
    _parse(body, _message("GenerateContentRequest"), "", errors)
    if errors:
        return "\n".join(errors)
    checks = _Checks()
    contents = body.get("contents") or []
    if not contents:
        checks.fail("contents", "contents is not specified")
    if (bare := checks.contents(contents)) is not None:
        return bare
    system = body.get("systemInstruction")
    if system is not None and not system.get("parts"):
        checks.fail("system_instruction.parts", "contents.parts must not be empty.")
    checks.tools(body)
    checks.generation(body.get("generationConfig") or {})
    return "".join(checks.errors) or None
