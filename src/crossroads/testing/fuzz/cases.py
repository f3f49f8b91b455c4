"""One fuzz case: a request drawn from `(seed, index)` alone, so any case can be sent again.

`make_case` seeds a generator with the pair, picks an endpoint (chat completions most of
the time) and a mutation family, and returns the request as bytes plus which credential
the runner should send. Nothing depends on earlier cases, so `--replay I` rebuilds case I
exactly, whatever ran before it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from crossroads.testing.fuzz.api_requests import API_FAMILIES, api_request, encoded
from crossroads.testing.fuzz.chat_bodies import CHAT_FAMILIES, chat_request

__all__ = ["ALL_FAMILIES", "Case", "make_case"]

ALL_FAMILIES = (*CHAT_FAMILIES, *API_FAMILIES)
CHAT_SHARE = 0.75


@dataclass(frozen=True, slots=True)
class Case:
    index: int
    family: str  # the mutations applied, '+'-joined
    method: str
    target: bytes  # path and query, as sent
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes | None
    auth: str  # "virtual", "static", "master" or "none" (see `runner.credential`)

    @property
    def endpoint(self) -> str:
        """`METHOD /path` without the query or ids, for counting."""
        path = self.target.split(b"?")[0].decode("utf-8", "replace")
        if path.startswith("/admin/keys/"):
            path = "/admin/keys/{id}"
        elif path.startswith("/v1/logs/"):
            path = "/v1/logs/{id}"
        return f"{self.method} {path}"


def make_case(seed: int, index: int, families: tuple[str, ...] = ALL_FAMILIES) -> Case:
    """Case `index` of the run seeded `seed`, drawn from `families` only."""
    rng = random.Random(f"{seed}:{index}")
    chat = tuple(f for f in families if f in CHAT_FAMILIES)
    api = tuple(f for f in families if f in API_FAMILIES)
    if chat and (not api or rng.random() < CHAT_SHARE):
        family, body, headers = chat_request(rng, chat)
        auth = "virtual" if rng.random() < 0.7 else "static"
        return Case(
            index,
            family,
            "POST",
            b"/v1/chat/completions",
            tuple(headers),
            encoded(body, rng),
            auth,
        )
    family, method, target, body, auth = api_request(rng, api)
    return Case(index, family, method, target, (), encoded(body, rng), auth)
