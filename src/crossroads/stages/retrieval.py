"""Retrieval as a request stage: search the caller's collections, put the passages in front.

Three spellings ask for it: Telnyx's `tools: [{"type": "retrieval", "retrieval":
{"bucket_ids": [...]}}]`, OpenAI's `tools: [{"type": "file_search", "vector_store_ids":
[...]}]` and APIpie's `rag_tune: "<collection id or name>"`. The query is the last user
message's text; the best chunks go to the upstream as one system message (first in the
list) and those tools are taken out of the body, so any provider can serve the request.
The answer carries `citations` (chunk id, score, source, file, store), in the log too.
Collections are looked up as the caller's own: another key's id is a 404.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from crossroads.pipeline.context import PreparedChat
from crossroads.pipeline.stages import Stage
from crossroads.protocol.errors import GatewayError
from crossroads.retrieval.library import Library
from crossroads.retrieval.owners import collection_owner
from crossroads.retrieval.search import Hit

__all__ = ["RetrievalKind", "RetrievalStage", "passages_message"]

DEFAULT_RESULTS = 5
_RETRIEVAL_TYPES = ("retrieval", "file_search")


@dataclass(frozen=True, slots=True)
class _Asked:
    store_ids: tuple[str, ...]
    params: tuple[str, ...]  # where each id came from, for a 404's `param`
    limit: int
    by_name: bool  # rag_tune: an id or a collection's name


class RetrievalKind:
    """Picks the retrieval stage for requests that ask for it (pipeline/stages.py)."""

    name = "retrieval"
    before = True
    after = False

    def __init__(self, library: Library) -> None:
        self.library = library

    def dormant(self) -> frozenset[str] | None:
        """Nothing configured turns retrieval on: only a request's retrieval or
        `file_search` tools, or its `rag_tune`."""
        return frozenset({"tools", "rag_tune"})

    def select(self, chat: PreparedChat) -> Stage | None:
        request = chat.request
        ids: list[str] = []
        params: list[str] = []
        limit = DEFAULT_RESULTS
        for i, tool in enumerate(request.tools or ()):
            if tool.type == "retrieval":
                spec = tool.retrieval
                ids += spec.bucket_ids
                params += [
                    f"tools[{i}].retrieval.bucket_ids[{k}]" for k in range(len(spec.bucket_ids))
                ]
                limit = spec.max_num_results or limit
            elif tool.type == "file_search":
                ids += tool.vector_store_ids
                params += [
                    f"tools[{i}].vector_store_ids[{k}]" for k in range(len(tool.vector_store_ids))
                ]
                limit = tool.max_num_results or limit
        by_name = False
        if request.rag_tune is not None:
            ids.append(request.rag_tune)
            params.append("rag_tune")
            by_name = True
        if not ids:
            return None
        return RetrievalStage(self.library, _Asked(tuple(ids), tuple(params), limit, by_name))


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return " ".join(
                p.get("text", "")
                for p in content
                if isinstance(p, dict) and p.get("type") == "text"
            )
    return ""


def passages_message(hits: list[Hit]) -> dict[str, Any]:
    lines = [
        "Answer using the following passages where they are relevant. "
        "Cite a passage by its number in brackets."
    ]
    for n, hit in enumerate(hits, 1):
        lines.append(f"[{n}] (source: {hit.source})\n{hit.text}")
    return {"role": "system", "content": "\n\n".join(lines)}


def citation(hit: Hit) -> dict[str, Any]:
    return {
        "chunk_id": hit.chunk_id,
        "score": hit.score,
        "source": hit.source,
        "file_id": hit.file_id,
        "vector_store_id": hit.store_id,
        "text": hit.text,
    }


class RetrievalStage(Stage):
    name = "retrieval"

    def __init__(self, library: Library, asked: _Asked) -> None:
        self.library = library
        self.asked = asked

    async def _owned(self, owner: str) -> list[str]:
        store = self.library.store
        found = {s.id for s in await store.get_stores(owner, self.asked.store_ids)}
        names: dict[str, str] = {}
        if self.asked.by_name:
            for listed in await store.list_stores(owner, limit=1000):  # newest first
                if listed.name:
                    names.setdefault(listed.name, listed.id)
        resolved: list[str] = []
        for ident, param in zip(self.asked.store_ids, self.asked.params, strict=True):
            if ident in found:
                resolved.append(ident)
            elif param == "rag_tune" and ident in names:
                resolved.append(names[ident])
            else:
                raise GatewayError(
                    404,
                    f"No collection with id '{ident}' for this key: create it with "
                    "POST /v1/vector_stores, or check the id.",
                    param=param,
                    code="collection_not_found",
                )
        return list(dict.fromkeys(resolved))

    async def before(self, chat: PreparedChat) -> dict[str, Any] | None:
        context = chat.context
        store_ids = await self._owned(collection_owner(context.key_id, context.virtual_key))
        messages = chat.body["messages"]
        query = _last_user_text(messages)
        hits = await self.library.search(store_ids, query, self.asked.limit) if query else []
        tools = [t for t in chat.body.get("tools") or () if t.get("type") not in _RETRIEVAL_TYPES]
        if len(tools) != len(chat.body.get("tools") or ()):
            chat.rewrite_field("tools", tools or None)
            if not tools:
                chat.rewrite_field("tool_choice", None)
                chat.rewrite_field("parallel_tool_calls", None)
        if hits:
            chat.rewrite_messages([passages_message(hits), *messages])
        chat.report("citations", [citation(h) for h in hits])
        return None
