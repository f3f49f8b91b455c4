"""Cutting a document into overlapping chunks of about `size` tokens.

Tokens are counted as words and punctuation marks (a regular expression), not by a model's
tokenizer: the count only sets chunk boundaries, it must be the same for every embedder,
and it costs nothing. Chunks start on a token and keep the document's own spacing, so a
citation quotes the source exactly. Default 800 tokens with 400 overlap (OpenAI's
vector-store defaults).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["DEFAULT_OVERLAP", "DEFAULT_SIZE", "ChunkingStrategy", "chunk_text", "count_tokens"]

DEFAULT_SIZE = 800
DEFAULT_OVERLAP = 400

_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)


@dataclass(frozen=True, slots=True)
class ChunkingStrategy:
    size: int = DEFAULT_SIZE
    overlap: int = DEFAULT_OVERLAP

    def __post_init__(self) -> None:
        if not 1 <= self.size <= 4096:
            raise ValueError("max_chunk_size_tokens must be from 1 to 4096")
        if not 0 <= self.overlap <= self.size // 2:
            raise ValueError("chunk_overlap_tokens must be from 0 to half of max_chunk_size_tokens")


def count_tokens(text: str) -> int:
    return sum(1 for _ in _TOKEN.finditer(text))


def chunk_text(text: str, strategy: ChunkingStrategy | None = None) -> list[str]:
    """`text` in chunks of at most `size` tokens, each starting `size - overlap` tokens
    after the one before; the empty list for a text without tokens."""
    strategy = strategy or ChunkingStrategy()
    spans = [m.span() for m in _TOKEN.finditer(text)]
    if not spans:
        return []
    step = max(1, strategy.size - strategy.overlap)
    chunks: list[str] = []
    start = 0
    while True:
        end = min(start + strategy.size, len(spans))
        chunks.append(text[spans[start][0] : spans[end - 1][1]])
        if end == len(spans):
            return chunks
        start += step
