"""Local text embeddings from weights that ship inside a package: no download, no network.

The default model is WordLlama's `l2_supercat` (256 dimensions, static token embeddings
pooled per text): loads in about half a second and embeds a short text in under 0.1 ms on
one core, which is what lets the semantic cache look up a request well inside the 1 ms
hot-path budget. WordLlama's own loader looks for its tokenizer in a folder it does not
ship under, then tries the network; the files are read here directly instead.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

__all__ = ["LOCAL_MODEL", "Embedder", "LocalEmbedder", "normalise_rows"]

LOCAL_MODEL = "wordllama-l2-supercat-256"


class Embedder(Protocol):
    """Texts in, unit-length float32 rows out (one per text)."""

    model: str
    dimensions: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    def count_tokens(self, texts: Sequence[str]) -> int: ...

    def warm(self) -> None:
        """Load the model now (start-up, in a thread), not on first use."""
        ...


def normalise_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (a zero row stays zero), as float32."""
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    scaled: np.ndarray = matrix / norms
    return scaled


class LocalEmbedder:
    """WordLlama from the installed `wordllama` package; loaded on first use, thread-safe."""

    model = LOCAL_MODEL
    dimensions = 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inference: Any = None

    def warm(self) -> None:
        self._model()

    def _model(self) -> Any:
        if self._inference is None:
            with self._lock:
                if self._inference is None:
                    self._inference = _load_wordllama()
        return self._inference

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        vectors = self._model().embed(list(texts), norm=False, return_np=True)
        return normalise_rows(vectors)

    def count_tokens(self, texts: Sequence[str]) -> int:
        tokenizer = self._model().tokenizer
        return sum(len(encoding.ids) for encoding in tokenizer.encode_batch(list(texts)))


def _load_wordllama() -> Any:
    import wordllama
    from safetensors import safe_open
    from tokenizers import Tokenizer
    from wordllama.inference import WordLlamaInference

    root = Path(wordllama.__file__).parent
    tokenizer = Tokenizer.from_file(str(root / "tokenizers" / "l2_supercat_tokenizer_config.json"))
    with safe_open(str(root / "weights" / "l2_supercat_256.safetensors"), framework="np") as f:
        weights = f.get_tensor("embedding.weight")
    return WordLlamaInference(weights, tokenizer)
