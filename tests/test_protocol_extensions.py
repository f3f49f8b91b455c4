"""The extension names written out in `protocol/extensions.py` are the request model's.

They are written out so that reading the configuration does not build the wire models; this
keeps the two lists from drifting apart.
"""

from __future__ import annotations

from crossroads.protocol.chat import ChatCompletionRequest
from crossroads.protocol.extensions import (
    ENGINE_PARAMETERS,
    EXTENSION_FIELDS,
    UPSTREAM_EXTENSIONS,
)


def test_the_extension_names_are_the_request_fields_after_openais() -> None:
    fields = list(ChatCompletionRequest.model_fields)
    extensions = fields[fields.index("models") :]
    assert set(extensions) == EXTENSION_FIELDS | UPSTREAM_EXTENSIONS
    assert not EXTENSION_FIELDS & UPSTREAM_EXTENSIONS
    assert set(ENGINE_PARAMETERS) <= set(extensions)
    # OpenAI's own parameters come before the extensions and are none of them.
    assert not set(fields[: fields.index("models")]) & (EXTENSION_FIELDS | UPSTREAM_EXTENSIONS)
