"""OpenAI chat-completions requests → Gemini `generateContent` requests, and answers back.

The `gemini` dialect speaks Google's own API, so every request and every answer crosses
this module: `map_request` builds the `GenerateContentRequest` body, `map_response` turns
a `GenerateContentResponse` into a `chat.completion`, and `StreamMapper` does the same per
streamed event with the same candidate helpers, so both paths report finish reasons, safety
ratings, logprobs and usage identically. Everything is plain dict work: this runs once per
request and once per event on the hot path. The request side's pieces live in messages.py
(conversation) and options.py (generation config, tools, structured output, thinking).

The one design decision: nothing is silently degraded. A request that Gemini cannot
express — a file that is not an inline PDF, an unknown tool-call id, a schema keyword
outside Gemini's subset — raises a 400 `bad_request` naming the body path to fix, before
anything is sent upstream.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from crossroads.protocol.errors import GatewayError
from crossroads.providers.base import UpstreamError
from crossroads.providers.gemini.errors import stream_error
from crossroads.providers.gemini.messages import map_contents
from crossroads.providers.gemini.options import map_options
from crossroads.providers.gemini.schema import SchemaCache

__all__ = ["GeminiRequest", "StreamMapper", "map_request", "map_response", "map_usage"]


@dataclass(frozen=True, slots=True)
class GeminiRequest:
    """A translated request, and what the answer's translation needs to know about it."""

    body: dict[str, Any]  # the GenerateContentRequest; the model goes in the URL
    model: str  # the upstream model id, e.g. "gemini-2.5-flash"
    include_reasoning: bool  # False under `reasoning.exclude`: thought parts are dropped
    json_mode: bool  # the answer is JSON or enum text (response_format / guided_*)


def map_request(body: Mapping[str, Any], schemas: SchemaCache | None = None) -> GeminiRequest:
    """The Gemini request for an OpenAI chat-completions `body`, or a 400 `GatewayError`.

    `schemas` remembers schema conversions across requests (the provider keeps one).
    """
    system, contents = map_contents(body.get("messages") or ())
    out: dict[str, Any] = {"contents": contents}
    if system:
        out["systemInstruction"] = {"parts": system}
    options = map_options(body, schemas if schemas is not None else SchemaCache(size=0))
    out.update(options.fields)
    return GeminiRequest(
        body=out,
        model=str(body.get("model") or ""),
        include_reasoning=options.include_reasoning,
        json_mode=options.json_mode,
    )


def map_response(response: Mapping[str, Any], request: GeminiRequest) -> dict[str, Any]:
    """A `chat.completion` for a non-streamed `GenerateContentResponse`."""
    candidates = response.get("candidates") or []
    if not candidates:
        _raise_if_blocked(response)
        raise UpstreamError("Gemini answered with no candidates", failure="malformed")
    choices = [
        _map_candidate(candidate, request)
        for candidate in sorted(candidates, key=lambda c: c.get("index", 0))
    ]
    usage = response.get("usageMetadata")
    return {
        "id": _completion_id(response),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.model,
        "choices": choices,
        "usage": map_usage(usage) if usage else None,
    }


def map_usage(usage_metadata: Mapping[str, Any]) -> dict[str, Any]:
    """OpenAI's `usage` from Gemini's `usageMetadata`; thinking counts as completion."""
    prompt = usage_metadata.get("promptTokenCount") or 0
    thoughts = usage_metadata.get("thoughtsTokenCount") or 0
    completion = (usage_metadata.get("candidatesTokenCount") or 0) + thoughts
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": usage_metadata.get("totalTokenCount") or prompt + completion,
        "prompt_tokens_details": {
            "cached_tokens": usage_metadata.get("cachedContentTokenCount") or 0
        },
        "completion_tokens_details": {"reasoning_tokens": thoughts},
    }


class StreamMapper:
    """One streamed answer: each `streamGenerateContent?alt=sse` event (a full
    `GenerateContentResponse` holding only the new parts) becomes zero or more
    `chat.completion.chunk` dicts, one choice each, candidate index = choice index."""

    __slots__ = (
        "_calls",
        "_created",
        "_expected",
        "_finished",
        "_id",
        "_ratings",
        "_request",
        "_usage",
    )

    def __init__(self, request: GeminiRequest) -> None:
        self._request = request
        self._id = ""
        self._created = int(time.time())
        # Candidates seen so far → how many function calls each has made (its tool index).
        self._calls: dict[int, int] = {}
        self._ratings: dict[int, list[Any]] = {}
        self._finished: set[int] = set()
        config = request.body.get("generationConfig") or {}
        self._expected: int = config.get("candidateCount") or 1
        self._usage: Mapping[str, Any] | None = None

    @property
    def finished(self) -> bool:
        """True once every candidate has reported a finish reason."""
        return len(self._finished) >= self._expected

    def feed(self, response: Mapping[str, Any]) -> list[dict[str, Any]]:
        if response.get("error"):
            raise stream_error(response)
        if not self._id:
            self._id = _completion_id(response)
        if usage := response.get("usageMetadata"):
            self._usage = usage
        candidates = response.get("candidates")
        if not candidates:
            _raise_if_blocked(response)
            return []
        chunks: list[dict[str, Any]] = []
        for candidate in candidates:
            self._candidate(candidate, chunks)
        return chunks

    def finish(self) -> list[dict[str, Any]]:
        """The closing usage chunk, when the upstream reported usage."""
        if self._usage is None:
            return []
        return [
            {
                "id": self._id,
                "object": "chat.completion.chunk",
                "created": self._created,
                "model": self._request.model,
                "choices": [],
                "usage": map_usage(self._usage),
            }
        ]

    def _candidate(self, candidate: Mapping[str, Any], chunks: list[dict[str, Any]]) -> None:
        index = candidate.get("index", 0)
        calls = self._calls.get(index)
        if calls is None:
            calls = 0
            chunks.append(self._chunk(index, {"role": "assistant", "content": ""}))
        first = len(chunks)
        for part in (candidate.get("content") or {}).get("parts") or ():
            delta: dict[str, Any]
            if "functionCall" in part:
                call = _map_tool_call(part["functionCall"], part.get("thoughtSignature"))
                delta = {"tool_calls": [{"index": calls, **call}]}
                calls += 1
            elif not (text := part.get("text")):
                continue
            elif not part.get("thought"):
                delta = {"content": text}
            elif self._request.include_reasoning:
                delta = {"reasoning_content": text}
            else:
                continue
            chunks.append(self._chunk(index, delta))
        self._calls[index] = calls
        if logprobs := candidate.get("logprobsResult"):
            if len(chunks) == first:
                chunks.append(self._chunk(index, {}))
            chunks[first]["choices"][0]["logprobs"] = _map_logprobs(logprobs)
        if ratings := candidate.get("safetyRatings"):
            self._ratings[index] = ratings
        if reason := candidate.get("finishReason"):
            chunk = self._chunk(index, {}, _finish_reason(reason, calls > 0))
            filters = _content_filter_results(self._ratings.get(index) or [], reason)
            if filters:
                chunk["choices"][0]["content_filter_results"] = filters
            chunks.append(chunk)
            self._finished.add(index)

    def _chunk(
        self, index: int, delta: dict[str, Any], finish: str | None = None
    ) -> dict[str, Any]:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._request.model,
            "choices": [
                {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
            ],
        }


# --- candidate helpers, shared by both paths -------------------------------------------------

_FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "LANGUAGE": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
}
# Azure OpenAI's `content_filter_results` keys for Gemini's harm categories.
_CATEGORIES = {
    "HARM_CATEGORY_HATE_SPEECH": "hate",
    "HARM_CATEGORY_HARASSMENT": "harassment",
    "HARM_CATEGORY_SEXUALLY_EXPLICIT": "sexual",
    "HARM_CATEGORY_DANGEROUS_CONTENT": "dangerous",
    "HARM_CATEGORY_CIVIC_INTEGRITY": "civic_integrity",
}
_SEVERITIES = {"NEGLIGIBLE": "safe", "LOW": "low", "MEDIUM": "medium", "HIGH": "high"}


def _finish_reason(reason: str | None, made_calls: bool) -> str:
    """OpenAI's finish reason. OTHER, MALFORMED_FUNCTION_CALL and reasons this table does
    not know end the answer without a better OpenAI word for it, so they become `stop`."""
    mapped = _FINISH_REASONS.get(reason or "STOP", "stop")
    return "tool_calls" if mapped == "stop" and made_calls else mapped


def _content_filter_results(ratings: list[Any], reason: str | None) -> dict[str, Any] | None:
    """`safetyRatings` in Azure OpenAI's shape, or None when none is of a known category."""
    out: dict[str, Any] = {}
    for rating in ratings:
        name = _CATEGORIES.get(rating.get("category", ""))
        if name is None:
            continue
        probability = rating.get("probability", "")
        filtered = rating.get("blocked") is True or (
            reason == "SAFETY" and probability in ("MEDIUM", "HIGH")
        )
        out[name] = {"filtered": filtered, "severity": _SEVERITIES.get(probability, "safe")}
    return out or None


def _map_logprobs(result: Mapping[str, Any]) -> dict[str, Any]:
    """`logprobsResult` as OpenAI's `{"content": [...]}`, one entry per chosen token."""
    tops = result.get("topCandidates") or ()
    content = []
    for step, chosen in enumerate(result.get("chosenCandidates") or ()):
        entry = _token_logprob(chosen)
        alternatives = tops[step].get("candidates") or () if step < len(tops) else ()
        entry["top_logprobs"] = [_token_logprob(top) for top in alternatives]
        content.append(entry)
    return {"content": content}


def _token_logprob(candidate: Mapping[str, Any]) -> dict[str, Any]:
    token = candidate.get("token") or ""
    return {
        "token": token,
        "logprob": candidate.get("logProbability") or 0.0,
        "bytes": list(token.encode()),
    }


def _map_tool_call(call: Mapping[str, Any], signature: str | None) -> dict[str, Any]:
    """An OpenAI tool call for a `functionCall` part. A thought signature rides along in
    `extra_content.google`, where Google's own OpenAI endpoint puts it, so a client that
    sends the assistant message back returns it (Gemini 3 refuses a history without it)."""
    out: dict[str, Any] = {
        "id": call.get("id") or f"call_{secrets.token_hex(12)}",
        "type": "function",
        "function": {
            "name": call.get("name") or "",
            "arguments": orjson.dumps(call.get("args") or {}).decode(),
        },
    }
    if signature:
        out["extra_content"] = {"google": {"thought_signature": signature}}
    return out


def _map_candidate(candidate: Mapping[str, Any], request: GeminiRequest) -> dict[str, Any]:
    texts: list[str] = []
    thoughts: list[str] = []
    calls: list[dict[str, Any]] = []
    for part in (candidate.get("content") or {}).get("parts") or ():
        if "functionCall" in part:
            calls.append(_map_tool_call(part["functionCall"], part.get("thoughtSignature")))
        elif "text" in part:
            if not part.get("thought"):
                texts.append(part["text"])
            elif request.include_reasoning:
                thoughts.append(part["text"])
    message: dict[str, Any] = {
        "role": "assistant",
        "content": "".join(texts) if texts or not calls else None,
        "refusal": None,
    }
    if thoughts:
        message["reasoning_content"] = "".join(thoughts)
    if calls:
        message["tool_calls"] = calls
    reason = candidate.get("finishReason")
    logprobs = candidate.get("logprobsResult")
    choice: dict[str, Any] = {
        "index": candidate.get("index", 0),
        "message": message,
        "logprobs": _map_logprobs(logprobs) if logprobs else None,
        "finish_reason": _finish_reason(reason, bool(calls)),
    }
    filters = _content_filter_results(candidate.get("safetyRatings") or [], reason)
    if filters:
        choice["content_filter_results"] = filters
    return choice


def _raise_if_blocked(response: Mapping[str, Any]) -> None:
    """A 400 when Gemini refused the prompt itself (`promptFeedback.blockReason`)."""
    feedback = response.get("promptFeedback") or {}
    if reason := feedback.get("blockReason"):
        detail = feedback.get("blockReasonMessage")
        raise GatewayError(
            400,
            f"The prompt was blocked by the upstream's content filter (reason: {reason})"
            + (f": {detail}" if detail else "")
            + ". Rephrase the messages or adjust `safety_settings`.",
            code="content_filter",
            param="messages",
        )


def _completion_id(response: Mapping[str, Any]) -> str:
    return f"chatcmpl-{response.get('responseId') or uuid.uuid4().hex}"
