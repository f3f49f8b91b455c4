"""A fake Google Gemini API upstream (REST v1beta) that is a real HTTP server on a local port.

The gateway's Gemini provider translates OpenAI requests into `generateContent` and back; its
tests need an upstream that speaks Gemini's wire format (camelCase JSON, `data:` events framed
with CRLF and no `[DONE]`, Google's error envelope) and is as strict as the real API, so that a
translation bug fails loudly instead of passing against a lenient fake. Request checking lives
in `crossroads.testing.fake_gemini_schema`; this module routes, answers and streams.

Endpoints under `base_url` = `http://HOST:PORT/v1beta`: `POST /models/{model}:generateContent`,
`POST /models/{model}:streamGenerateContent?alt=sse`, `GET /models`; `GET /_fake/requests`
lists what was received (`DELETE` clears). A stream request without `alt=sse` (which the real
API answers with one JSON array) gets a 400, so a gateway that forgets it fails loudly. With
`api_key` set, the `x-goog-api-key` header (or the `key` query parameter) must match: a wrong
key gets 400 INVALID_ARGUMENT "API key not valid", a missing one 403 PERMISSION_DENIED, as
from Google.

A request's behaviour comes from its `x-fake-behaviour` header, else the model id in the URL
(directives: see `crossroads.testing.fake_base`; `cache_write` is ignored; `retry_after=` is
a google.rpc.RetryInfo `retryDelay` in the error's details, as Google sends no header).
`tool` calls the first allowed function (`allowedFunctionNames`, else the first declaration)
unless `functionCallingConfig.mode` is NONE, and under `signed` (Gemini 3) signs the first
call and refuses a current turn whose calls lost their signatures (see
fake_gemini_signatures); `think` (or `thinkingConfig.includeThoughts`, with the text "Let me
think.") adds a `thought: true` part before the answer; `blocked` ends each
candidate with finishReason SAFETY and no content; `prompt_blocked` answers only
`promptFeedback.blockReason` SAFETY, without candidates.

Token counting is deterministic, so tests can compute expected cost (words are
whitespace-separated; JSON is counted in its compact form):

* promptTokenCount = words of the systemInstruction text parts + for every content, words of
  its text parts, of each functionCall's `args` and each functionResponse's `response`, + 3;
  `cached=<n>` reports cachedContentTokenCount n, a part of promptTokenCount (not added to it);
* candidatesTokenCount = words of each candidate's answer, summed over candidates (a
  functionCall counts the words of its compact `args`, so `{}` is 1);
* thoughtsTokenCount = words of the thought text, summed over candidates;
* totalTokenCount = the sum of those three. Zero counts are omitted, as proto3 JSON omits them.

generationConfig: `stopSequences` cut the answer before the first stop (finishReason STOP),
`maxOutputTokens` cuts it to that many words (MAX_TOKENS); `candidateCount` n gives n equal
candidates; `responseMimeType` "application/json" answers a compact JSON document with the
schema's required properties filled by type (unless `reply=` is given), "text/x.enum" the
schema's first enum value; `responseLogprobs` adds a logprobsResult (one chosen candidate of
log-probability -0.1 per answer word, `logprobs` top candidates per step).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from crossroads.testing.fake_base import (
    DEFAULT_REPLY,
    Behaviour,
    BehaviourError,
    FakeUpstream,
    RecordedRequest,
    count_words,
    cut_reply,
    json_response,
    parse_behaviour,
    split_reply,
)
from crossroads.testing.fake_gemini_schema import request_error
from crossroads.testing.fake_gemini_signatures import signature_error, thought_signature

__all__ = ["DEFAULT_REPLY", "DEFAULT_THOUGHT", "FakeGemini", "RecordedRequest", "parse_behaviour"]

DEFAULT_THOUGHT = "Let me think."
_END = b"\r\n\r\n"  # Google frames each SSE event with CRLF line ends
_MALFORMED = b'{"candidates": [{"content": {"parts": [{"text": '
_ROUTE = re.compile(r"/v1beta/models/(.+):(generateContent|streamGenerateContent)")
_LOGPROB = -0.1
_MODELS = ("fixed", "echo", "tool")
_CATEGORIES = (
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
)
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_MESSAGES = {
    400: "Request contains an invalid argument.",
    403: "The caller does not have permission",
    404: "Requested entity was not found.",
    429: "Resource has been exhausted (e.g. check quota).",
    500: "An internal error has occurred. Please retry or report in"
    " https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "Deadline expired before operation could complete.",
}
_UNREGISTERED = (
    "Method doesn't allow unregistered callers (callers without established identity)."
    " Please use API Key or other form of API consumer identity to call this API."
)
_KEY_INVALID = {
    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
    "reason": "API_KEY_INVALID",
    "domain": "googleapis.com",
    "metadata": {"service": "generativelanguage.googleapis.com"},
}
_Json = dict[str, Any]


def _error(status: int, message: str, *, details: list[_Json] | None = None) -> web.Response:
    """An error in Google's envelope."""
    error: _Json = {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN")}
    if details:
        error["details"] = details
    return json_response({"error": error}, status)


def _compact(value: Any) -> str:
    return orjson.dumps(value).decode()


def _sse(value: Any) -> bytes:
    return b"data: " + orjson.dumps(value) + _END


def _part_words(part: _Json) -> int:
    if isinstance(part.get("text"), str):
        return count_words(part["text"])
    for kind, data in (("functionCall", "args"), ("functionResponse", "response")):
        if isinstance(part.get(kind), dict):
            return count_words(_compact(part[kind].get(data) or {}))
    return 0


def _prompt_tokens(body: _Json) -> int:
    system = body.get("systemInstruction") or {}
    words = sum(_part_words(p) for p in system.get("parts") or [])
    return words + sum(3 + sum(map(_part_words, c.get("parts") or [])) for c in body["contents"])


def _placeholder(schema: Any) -> Any:
    """A minimal value conforming to a Schema (or a JSON Schema): required properties only."""
    if not isinstance(schema, dict):
        return {}
    for union in ("anyOf", "oneOf"):
        if schema.get(union):
            return _placeholder(schema[union][0])
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if str(k).lower() != "null"), "null")
    kind = str(kind).upper() if kind is not None else "OBJECT" if "properties" in schema else ""
    if kind == "OBJECT":
        properties, required = schema.get("properties") or {}, schema.get("required") or []
        order = [*(schema.get("propertyOrdering") or []), *properties]
        names = [n for n in dict.fromkeys(order) if n in required and n in properties]
        return {name: _placeholder(properties[name]) for name in names}
    if kind == "ARRAY":
        return [_placeholder(schema.get("items"))] * int(schema.get("minItems") or 0)
    if kind in ("INTEGER", "NUMBER"):
        low = schema.get("minimum") or 0
        return int(low) if kind == "INTEGER" else low
    return {"STRING": "text", "BOOLEAN": False}.get(kind)


@dataclass(slots=True)
class _Answer:
    """What every candidate says; candidates differ only in their index."""

    text: str = ""
    calls: list[_Json] = field(default_factory=list)
    finish: str = "STOP"
    thought: str | None = None
    signed: bool = False  # Gemini 3: the first call carries a thoughtSignature

    def parts(self, text: str | None = None) -> list[_Json]:
        if self.calls:
            parts: list[_Json] = [{"functionCall": call} for call in self.calls]
            if self.signed:
                parts[0]["thoughtSignature"] = thought_signature(self.calls[0]["name"])
            return parts
        return [{"text": self.text if text is None else text}]

    def words(self) -> int:
        if self.calls:
            return sum(count_words(_compact(call["args"])) for call in self.calls)
        return count_words(self.text)


def _answer(body: _Json, behaviour: Behaviour) -> _Answer:
    """The answer `behaviour` gives `body`; a ValueError names why it cannot answer."""
    config = body.get("generationConfig") or {}
    thinking = config.get("thinkingConfig") or {}
    thought = behaviour.think or (DEFAULT_THOUGHT if thinking.get("includeThoughts") else None)
    calling = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
    if behaviour.mode == "tool" and str(calling.get("mode") or "AUTO").upper() != "NONE":
        declared = [
            function.get("name")
            for tool in body.get("tools") or []
            for function in tool.get("functionDeclarations") or []
        ]
        names = calling.get("allowedFunctionNames") or declared
        if not names:
            raise ValueError("The fake behaviour 'tool' needs a function declaration in 'tools'.")
        try:
            args = orjson.loads(behaviour.args)
        except orjson.JSONDecodeError:
            args = None
        if not isinstance(args, dict):
            raise ValueError("The fake behaviour 'args' must be a JSON object.")
        calls = [{"name": names[0], "args": args} for _ in range(behaviour.tools)]
        return _Answer(calls=calls, thought=thought, signed=behaviour.signed)
    text = behaviour.reply
    mime = config.get("responseMimeType")
    schema = config.get("responseSchema", config.get("responseJsonSchema"))
    schema = config.get("_responseJsonSchema") if schema is None else schema
    if behaviour.mode == "echo":
        users = [c for c in body["contents"] if c.get("role") in (None, "", "user")]
        parts = (users[-1].get("parts") or []) if users else []
        text = " ".join(p["text"] for p in parts if isinstance(p.get("text"), str))
    elif mime == "application/json" and behaviour.reply == DEFAULT_REPLY:
        text = _compact(_placeholder(schema))
    elif mime == "text/x.enum" and isinstance(schema, dict) and schema.get("enum"):
        text = str(schema["enum"][0])
    limit = config.get("maxOutputTokens")
    stops = config.get("stopSequences") or []
    text, reason = cut_reply(text, stops, None if limit is None else int(limit))
    return _Answer(text, finish="MAX_TOKENS" if reason == "length" else "STOP", thought=thought)


def _ratings(blocked: bool = False) -> list[_Json]:
    ratings: list[_Json] = []
    for category in _CATEGORIES:
        if blocked and category == "HARM_CATEGORY_DANGEROUS_CONTENT":
            ratings.append({"category": category, "probability": "HIGH", "blocked": True})
        else:
            ratings.append({"category": category, "probability": "NEGLIGIBLE"})
    return ratings


def _logprobs(text: str, top: int) -> _Json:
    chosen = [{"token": piece, "logProbability": _LOGPROB} for piece in split_reply(text, None)]
    result: _Json = {}
    if top:
        result["topCandidates"] = [
            {
                "candidates": [
                    c,
                    *({"token": f"alt{k}", "logProbability": _LOGPROB - k} for k in range(1, top)),
                ]
            }
            for c in chosen
        ]
    result["chosenCandidates"] = chosen
    result["logProbabilitySum"] = round(_LOGPROB * len(chosen), 6)
    return result


def _candidate(index: int, parts: list[_Json] | None, **extra: Any) -> _Json:
    """One candidate; `extra` holds finishReason, safetyRatings and logprobsResult when set."""
    candidate: _Json = {} if parts is None else {"content": {"parts": parts, "role": "model"}}
    if extra.get("finishReason"):
        candidate["finishReason"] = extra["finishReason"]
    candidate["index"] = index
    if extra.get("safetyRatings"):
        candidate["safetyRatings"] = extra["safetyRatings"]
    if extra.get("logprobsResult"):
        candidate["avgLogprobs"] = _LOGPROB
        candidate["logprobsResult"] = extra["logprobsResult"]
    return candidate


def _usage(prompt: int, answer: int, thoughts: int, cached: int) -> _Json:
    usage: _Json = {"promptTokenCount": prompt}
    if answer:
        usage["candidatesTokenCount"] = answer
    usage["totalTokenCount"] = prompt + answer + thoughts
    if cached:
        usage["cachedContentTokenCount"] = cached
    usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": prompt}]
    if cached:
        usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": cached}]
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


class FakeGemini(FakeUpstream):
    """The fake Gemini upstream; `base_url` ends in `/v1beta`."""

    base_path = "/v1beta"

    async def answer(self, request: web.Request, record: RecordedRequest) -> web.StreamResponse:
        if self.api_key is not None:
            key = record["headers"].get("x-goog-api-key", record["query"].get("key"))
            if key is None:
                return _error(403, _UNREGISTERED)
            if key != self.api_key:
                message = "API key not valid. Please pass a valid API key."
                return _error(400, message, details=[_KEY_INVALID])
        if request.method == "GET" and request.path == "/v1beta/models":
            return json_response({"models": [self._model(name) for name in _MODELS]})
        route = _ROUTE.fullmatch(request.path)
        if request.method != "POST" or route is None:
            return _error(404, f"The requested URL {request.path} was not found on this server.")
        model, method = route.groups()
        stream = method == "streamGenerateContent"
        if stream and record["query"].get("alt") != "sse":
            message = "The fake Gemini upstream streams only Server-Sent Events: add ?alt=sse."
            return _error(400, message)
        return await self._generate(request, record, model, stream)

    @staticmethod
    def _model(name: str) -> _Json:
        return {
            "name": f"models/{name}",
            "version": "001",
            "displayName": f"Fake {name}",
            "description": f"The fake upstream's '{name}' behaviour.",
            "inputTokenLimit": 1048576,
            "outputTokenLimit": 65536,
            "supportedGenerationMethods": ["generateContent", "streamGenerateContent"],
            "temperature": 1.0,
            "topP": 0.95,
            "topK": 64,
            "maxTemperature": 2.0,
            "thinking": True,
        }

    async def _generate(
        self, request: web.Request, record: RecordedRequest, model: str, stream: bool
    ) -> web.StreamResponse:
        body = record["body"]
        problem = request_error(body)
        if problem is not None:
            return _error(400, problem)
        try:
            behaviour = self.behaviour_for(record["headers"].get("x-fake-behaviour") or model)
        except BehaviourError as exc:
            return _error(400, f"Unknown or invalid fake behaviour directive '{exc.args[0]}'.")
        if behaviour.signed and (problem := signature_error(body["contents"])) is not None:
            return _error(400, problem)
        early = await self.early_answer(
            request,
            behaviour,
            stream=stream,
            error=lambda: _directed_error(behaviour),
            malformed=_MALFORMED,
        )
        if early is not None:
            return early
        try:
            answer = _answer(body, behaviour)
        except ValueError as exc:
            return _error(400, str(exc))
        config = body.get("generationConfig") or {}
        n = int(config.get("candidateCount") or 1)
        top = int(config.get("logprobs") or 0) if config.get("responseLogprobs") is True else None
        blocked = behaviour.blocked or behaviour.prompt_blocked
        thoughts = 0 if blocked or answer.thought is None else count_words(answer.thought) * n
        usage = _usage(
            _prompt_tokens(body), 0 if blocked else answer.words() * n, thoughts, behaviour.cached
        )
        head: _Json = {"modelVersion": model, "responseId": secrets.token_urlsafe(16)}
        if behaviour.prompt_blocked:
            feedback = {"blockReason": "SAFETY", "safetyRatings": _ratings(blocked=True)}
            whole: _Json = {"promptFeedback": feedback}
        elif behaviour.blocked:
            ratings = _ratings(blocked=True)
            whole = {
                "candidates": [
                    _candidate(i, None, finishReason="SAFETY", safetyRatings=ratings)
                    for i in range(n)
                ]
            }
        elif stream:
            return await _stream(request, behaviour, answer, n, top, usage, head)
        else:
            parts = answer.parts()
            if answer.thought is not None:
                parts.insert(0, {"text": answer.thought, "thought": True})
            logprobs = None if top is None or answer.calls else _logprobs(answer.text, top)
            extra = {"finishReason": answer.finish, "safetyRatings": _ratings()}
            whole = {
                "candidates": [
                    _candidate(i, parts, logprobsResult=logprobs, **extra) for i in range(n)
                ]
            }
        if not behaviour.no_usage:
            whole["usageMetadata"] = usage
        whole.update(head)
        if stream:  # a blocked answer streams as its one final event
            return await FakeUpstream.write_events(request, [_sse(whole)], behaviour)
        return json_response(whole)


def _directed_error(behaviour: Behaviour) -> web.Response:
    status = behaviour.error or 500
    message = _MESSAGES.get(status, f"fake upstream error {status}")
    if behaviour.retry_after is None:
        return _error(status, message)
    # Google says when to retry only in the body (a google.rpc.RetryInfo), never in a header.
    retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo"}
    retry["retryDelay"] = f"{behaviour.retry_after}s"
    return _error(status, message, details=[retry])


async def _stream(
    request: web.Request,
    behaviour: Behaviour,
    answer: _Answer,
    n: int,
    top: int | None,
    usage: _Json,
    head: _Json,
) -> web.StreamResponse:
    """One event per thought, text piece or batch of calls; the last one also finishes."""
    pieces: list[tuple[list[_Json], str | None]] = []  # parts, and the text to score
    if answer.thought is not None:
        pieces.append(([{"text": answer.thought, "thought": True}], None))
    if answer.calls:
        pieces.append((answer.parts(), None))
    else:
        pieces += [(answer.parts(p), p) for p in split_reply(answer.text, behaviour.chunks)]
    if not pieces:
        pieces.append((answer.parts(""), ""))
    events = []
    for k, (parts, text) in enumerate(pieces):
        last = k == len(pieces) - 1
        extra: _Json = {"finishReason": answer.finish, "safetyRatings": _ratings()} if last else {}
        if top is not None and text is not None:
            extra["logprobsResult"] = _logprobs(text, top)
        event: _Json = {"candidates": [_candidate(i, parts, **extra) for i in range(n)]}
        if last and not behaviour.no_usage:
            event["usageMetadata"] = usage
        events.append(_sse({**event, **head}))
    if behaviour.malformed:
        events = [*events[:1], b"data: " + _MALFORMED + _END]
    elif behaviour.stream_error is not None:
        error = {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}
        events = [*events[: behaviour.stream_error], _sse({"error": error})]
    else:
        events = events[: behaviour.drop_after]
    return await FakeUpstream.write_events(request, events, behaviour)


def main(argv: list[str] | None = None) -> None:
    FakeGemini.command_line(
        argv,
        description="Serve a fake Google Gemini API (v1beta generateContent) upstream.",
        default_port=9102,
        key_help="require 'x-goog-api-key: KEY' (or '?key=KEY')",
    )


if __name__ == "__main__":
    main()
