"""`POST /v1/embeddings` with the official SDK: the local model and an upstream one."""

from __future__ import annotations

import base64

import numpy as np
import openai
import pytest
from openai import OpenAI

from crossroads.retrieval.embedder import LOCAL_MODEL
from crossroads.testing.fake_openai import FakeOpenAI
from tests.conftest import PRICE


def test_local_model_embeds_offline_with_usage(client: OpenAI) -> None:
    answer = client.embeddings.create(
        model=LOCAL_MODEL, input=["How many people live in Paris?", "Population of Paris"]
    )
    assert answer.model == LOCAL_MODEL and len(answer.data) == 2
    a, b = (np.array(d.embedding) for d in answer.data)
    assert a.shape == (256,) and np.isclose(np.linalg.norm(a), 1.0, atol=1e-4)
    assert float(a @ b) > 0.5
    assert answer.usage.prompt_tokens > 0
    assert answer.usage.model_extra == {"cost": 0.0}


def test_local_model_base64_and_dimensions(client: OpenAI) -> None:
    # The SDK asks for base64 by default and decodes it; ask explicitly to see the bytes.
    raw = client.embeddings.with_raw_response.create(
        model=LOCAL_MODEL, input="hello", encoding_format="base64", dimensions=64
    )
    encoded = raw.http_response.json()["data"][0]["embedding"]
    vector = np.frombuffer(base64.b64decode(encoded), dtype="<f4")
    assert vector.shape == (64,) and np.isclose(np.linalg.norm(vector), 1.0, atol=1e-4)


def test_upstream_embedding_model_is_routed_and_priced(
    client: OpenAI, fake_upstream: FakeOpenAI
) -> None:
    answer = client.embeddings.create(model="fixed", input=["one two three", "four"])
    assert [len(d.embedding) for d in answer.data] == [8, 8]
    assert answer.model == "fixed"
    sent = fake_upstream.requests[-1]
    assert sent["path"].endswith("/embeddings") and sent["body"]["model"] == "fixed"
    assert answer.usage.prompt_tokens == 4
    assert answer.usage.model_extra["cost"] == pytest.approx(4 * PRICE["input"] / 1e6)  # type: ignore[index]


def test_bad_embedding_requests(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-model", input="x")
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=LOCAL_MODEL, input=[1, 2, 3])
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=LOCAL_MODEL, input="x", dimensions=1000)
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=LOCAL_MODEL, input="")
