"""The local ONNX checker (`quality.method = "onnx"`): a real onnxruntime session over the
grounding features, from the configured path, agreeing with the packaged numpy model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from openai import OpenAI

from crossroads.config import parse_config
from crossroads.server.app import create_app
from crossroads.stages.grounding import FEATURES, Support, grounding_features, load_grounding_model
from crossroads.testing.server import ServedApp, serve_in_thread
from tests.conftest import API_KEY
from tests.quality_gateway import CONTEXT, QUESTION, WRONG, ask, fake

__all__ = ["fake"]

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def _logistic_onnx(path: Path) -> None:
    """The packaged grounding model as an ONNX graph: sigmoid((x - mean) / scale · w + b)."""
    from onnx import TensorProto, helper, numpy_helper

    model = load_grounding_model()
    weights = (model.coef[1:] / model.scale).astype(np.float32).reshape(-1, 1)
    bias = np.asarray(
        [model.coef[0] - float((model.mean / model.scale) @ model.coef[1:])], dtype=np.float32
    )
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["features", "w"], ["z0"]),
            helper.make_node("Add", ["z0", "b"], ["z"]),
            helper.make_node("Sigmoid", ["z"], ["risk"]),
        ],
        "grounding",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, len(FEATURES)])],
        [helper.make_tensor_value_info("risk", TensorProto.FLOAT, [1, 1])],
        [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(bias, "b")],
    )
    built = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    built.ir_version = 8
    onnx.save(built, str(path))


@pytest.fixture(scope="module")
def served(fake: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    folder = Path(tmp_path_factory.mktemp("onnx"))
    _logistic_onnx(folder / "checker.onnx")
    data = {
        "storage": {"database_url": f"sqlite+aiosqlite:///{folder / 'log.db'}"},
        "providers": {"fake": {"base_url": fake.base_url, "api_key": "sk-upstream"}},
        "keys": [{"name": "main", "key": API_KEY}],
        "models": {
            "wrong": {
                "deployments": [{"provider": "fake", "model": "reply=" + WRONG.replace(" ", "_")}]
            }
        },
        "quality": {"enabled": True, "method": "onnx", "onnx_path": str(folder / "checker.onnx")},
    }
    with serve_in_thread(create_app(parse_config(data))) as app:
        yield app


def test_the_onnx_checker_scores_like_the_packaged_model(served: ServedApp) -> None:
    with OpenAI(base_url=f"{served.url}/v1", api_key=API_KEY, max_retries=0) as client:
        answer = client.chat.completions.create(model="wrong", messages=ask())  # type: ignore[arg-type]
    quality = (answer.model_extra or {})["quality"]
    support = Support.of([f"Answer from this context only: {CONTEXT}", QUESTION], QUESTION)
    expected = load_grounding_model().risk(grounding_features(support, WRONG))
    assert quality["method"] == "onnx"
    assert quality["risk"] == pytest.approx(expected, abs=1e-3)
    assert quality["flagged"] is (expected > 0.7)
