"""Each guardrail engine's time on a 1 KB prompt, on one core (p50 and p99 of 500 runs).

The gateway's own share is measured through the server by `gateway_overhead.py`; this is
the check alone, as `GuardrailEngines.run` calls it.

    taskset -c 0 python benchmarks/guardrails/latency.py
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gateway_overhead import PROMPT

from crossroads.guardrails.config import GuardrailSet
from crossroads.guardrails.masking import MaskVault
from crossroads.guardrails.runner import GuardrailEngines

RESULTS = Path(__file__).parents[1] / "results"
RUNS = 500
CHECKS = {
    "pii (default entities), redact": {"check": "pii", "action": "redact"},
    "pii (default entities), mask": {"check": "pii", "action": "mask"},
    "pii + PERSON/LOCATION/ORGANIZATION (spaCy NER)": {
        "check": "pii",
        "action": "redact",
        "entities": ["EMAIL_ADDRESS", "PHONE_NUMBER", "PERSON", "LOCATION", "ORGANIZATION"],
    },
    "injection (rules + classifier)": {"check": "injection", "action": "block"},
    "policy (3 deny phrases, 1 regex, 1 topic)": {
        "check": "policy",
        "action": "block",
        "deny": ["drop table", "rm -rf", "internal only"],
        "regexes": [r"\bAKIA[0-9A-Z]{16}\b"],
        "topics": [{"name": "weapons", "keywords": ["rifle", "ammunition", "explosive"]}],
    },
}


def main() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {0})
    engines = GuardrailEngines()
    result: dict[str, object] = {"prompt_bytes": len(PROMPT.encode()), "runs": RUNS, "checks": {}}
    print(f"prompt: {len(PROMPT.encode())} bytes, {RUNS} runs each, one core")
    print(f"{'check':<50}{'p50 ms':>9}{'p99 ms':>9}")
    for name, raw in CHECKS.items():
        check = GuardrailSet.model_validate({"input": [raw]}).input[0]
        for _ in range(20):
            engines.run(check, PROMPT, on_error="block", vault=MaskVault())
        times = []
        for _ in range(RUNS):
            started = time.perf_counter()
            engines.run(check, PROMPT, on_error="block", vault=MaskVault())
            times.append((time.perf_counter() - started) * 1000)
        times.sort()
        p50, p99 = statistics.median(times), times[int(0.99 * (len(times) - 1))]
        result["checks"][name] = {"p50_ms": round(p50, 3), "p99_ms": round(p99, 3)}  # type: ignore[index]
        print(f"{name:<50}{p50:>9.3f}{p99:>9.3f}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "guardrails_latency.json"
    # The machine's load when the run ended: other work on a shared machine inflates every
    # absolute latency, so a figure is only read next to it (ratios from one run less so).
    result["load_average_1m"] = round(os.getloadavg()[0], 2)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
