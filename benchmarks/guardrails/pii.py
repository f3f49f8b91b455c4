"""PII check precision and recall per entity type, and false positives on technical text.

Data: the sentence templates that ship in the `presidio-evaluator` wheel (downloaded with
`pip download --no-deps`, read from the zip, never installed), filled with seeded values:
people, places and companies from the wheel's own lists, and generated e-mail addresses,
phone numbers in US and international shapes, Luhn-valid card numbers of the main brands
(plain, spaced, dashed), US SSNs, IPv4/IPv6 addresses and IBANs. A template slot we do not
score becomes an ordinary value from the same lists. Scored by span: a finding is right when
it overlaps a labelled span of its type. Then ordinary technical prose with no personal data
("S3", "C4", "EKS", versions, hashes, ports) is checked with the default entities and with
the named-entity ones, and every finding there is a false positive.

    python benchmarks/guardrails/pii.py --samples 2500
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from injection_data import wheel

from crossroads.guardrails.config import DEFAULT_PII_ENTITIES
from crossroads.guardrails.pii import PiiEngine, _looks_technical

RESULTS = Path(__file__).parents[1] / "results"
RAW = "presidio_evaluator/data_generator/raw_data/"
TARGETS = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IP_ADDRESS")
SLOT_ENTITY = {
    "email": "EMAIL_ADDRESS",
    "phone_number": "PHONE_NUMBER",
    "credit_card_number": "CREDIT_CARD",
    "ssn": "US_SSN",
    "ip_address": "IP_ADDRESS",
    "iban": "IBAN_CODE",
}
TECHNICAL = [
    "Create an S3 bucket in us-east-1 and attach the IAM role to the EKS node group.",
    "The C4 model has four levels: context, containers, components and code.",
    "Upgrade Kubernetes from 1.28.3 to 1.29.0 and rotate the TLS certificates.",
    "Commit 3f9a2c1e4b7d fixed the race in the scheduler; see PR 4821.",
    "Run the service on port 8080 behind Nginx with HTTP/2 enabled.",
    "Our p99 latency dropped from 230 ms to 41 ms after moving to Redis 7.2.",
    "Set max_connections = 1000 and shared_buffers = 4GB in PostgreSQL 16.",
    "Use AWS Lambda with 512 MB memory and a 15 s timeout for the webhook.",
    "The build takes 12 minutes on 2 cores; cache the Docker layers to cut it.",
    "Terraform plan shows 14 to add, 3 to change, 0 to destroy.",
    "Switch the GKE cluster to Autopilot and enable Workload Identity.",
    "ECS tasks pull from ECR; the CDK stack defines the VPC and the ALB.",
    "Python 3.11.7 with numpy 2.1 and pydantic 2.9 pinned in pyproject.toml.",
    "SHA-256 of the artifact is 9b74c9897bac770ffc029102a200c5de and it is signed.",
    "The model scored 0.873 AUROC on split 4 and 0.91 on split 7.",
    "Allocate 24 GiB of RAM and an NVMe SSD for the RocksDB compaction.",
    "GitHub Actions runs the matrix on Ubuntu 22.04 and Debian 12 images.",
    "Kafka retention is 168 hours; the consumer lag alarm fires at 10000.",
    "Mistral and Llama models run on vLLM 0.6 with tensor parallelism of 2.",
    "The JSON schema requires id, name and tags; YAML anchors are not allowed.",
    "Bump the Helm chart to 4.2.1 and set replicaCount to 3.",
    "OAuth tokens expire after 3600 s; refresh them with the JWT grant.",
    "Gemini and Claude both accept tool schemas, with small differences.",
    "Route53 health checks hit /healthz every 30 seconds on the NLB.",
    "Azure Functions on the consumption plan cold-start in about 2 s.",
    "Benchmark: 3548.7 requests per second at concurrency 8, ratio 1.014.",
    "Error E1102 appears when the GPU runs out of memory in batch 64.",
    "Ticket INC-20931 was closed after the DNS TTL was lowered to 60.",
    "RFC 9110 defines the semantics; RFC 9112 covers HTTP/1.1 messaging.",
    "The CPU governor was set to performance on all 64 cores of node 7.",
]


def luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    digits = [int(c) for c in prefix] + [rng.randrange(10) for _ in range(length - len(prefix) - 1)]
    total = 0
    for i, d in enumerate(reversed(digits)):
        d = d * 2 if i % 2 == 0 else d
        total += d - 9 if d > 9 else d
    return "".join(map(str, digits)) + str((10 - total % 10) % 10)


def card(rng: random.Random) -> str:
    prefix, length = rng.choice([("4", 16), ("51", 16), ("55", 16), ("37", 15), ("6011", 16)])
    number = luhn_complete(prefix, length, rng)
    style = rng.random()
    if style < 0.4:
        return number
    sep = " " if style < 0.7 else "-"
    if length == 15:
        return sep.join((number[:4], number[4:10], number[10:]))
    return sep.join(number[i : i + 4] for i in range(0, 16, 4))


def ssn(rng: random.Random) -> str:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    group, serial = rng.randrange(1, 100), rng.randrange(1, 10000)
    sep = rng.choice(["-", "-", " "])
    return f"{area:03d}{sep}{group:02d}{sep}{serial:04d}"


def phone(rng: random.Random) -> str:
    area, exchange, line = rng.randrange(201, 990), rng.randrange(200, 990), rng.randrange(10000)
    return rng.choice(
        [
            f"({area}) {exchange}-{line:04d}",
            f"{area}-{exchange}-{line:04d}",
            f"{area}.{exchange}.{line:04d}",
            f"+1 {area} {exchange} {line:04d}",
            f"+44 20 {rng.randrange(7000, 8999)} {rng.randrange(1000, 9999)}",
            f"+49 30 {rng.randrange(100000, 999999)}",
            f"1-{area}-{exchange}-{line:04d}",
        ]
    )


def ip(rng: random.Random) -> str:
    if rng.random() < 0.8:
        return ".".join(str(rng.randrange(1, 255)) for _ in range(4))
    return ":".join(f"{rng.randrange(65536):x}" for _ in range(8))


def iban(rng: random.Random) -> str:
    bban = f"{rng.randrange(10**8):08d}{rng.randrange(10**10):010d}"
    digits = "".join(str(int(c, 36)) for c in bban + "DE00")
    check = 98 - int(digits) % 97
    return f"DE{check:02d}{bban}"


def fill(
    slot: str, person: dict[str, str], companies: list[str], rng: random.Random
) -> tuple[str, str | None]:
    """A value for one template slot, and its entity type when the slot is scored."""
    generators = {
        "email": lambda: person["EmailAddress"],
        "phone_number": lambda: phone(rng),
        "credit_card_number": lambda: card(rng),
        "ssn": lambda: ssn(rng),
        "ip_address": lambda: ip(rng),
        "iban": lambda: iban(rng),
    }
    if slot in generators:
        return generators[slot](), SLOT_ENTITY[slot]
    plain = {
        "organization": rng.choice(companies),
        "company": rng.choice(companies),
        "city": person["City"],
        "country": person["CountryFull"],
        "address": f"{person['StreetAddress']}, {person['City']}",
        "street_name": person["StreetAddress"],
        "first_name": person["GivenName"],
        "last_name": person["Surname"],
        "age": person["Age"],
        "job": person["Occupation"],
        "postcode": person["ZipCode"],
        "zipcode": person["ZipCode"],
    }
    if slot in ("first_name", "last_name"):
        return plain[slot], "PERSON"
    if slot in plain:
        return plain[slot], None
    if "name" in slot or slot == "person":
        return f"{person['GivenName']} {person['Surname']}", "PERSON"
    return person["City"], None


def build(samples: int, seed: int) -> list[tuple[str, list[tuple[int, int, str]]]]:
    archive = wheel("presidio_evaluator")
    # The file writes line breaks inside a template as the two characters "\\n".
    templates = [
        line.strip().replace("\\n", "\n")
        for line in archive.read(RAW + "templates.txt").decode("utf-8", "replace").splitlines()
        if line.strip()
    ]
    people = list(
        csv.DictReader(
            io.StringIO(archive.read(RAW + "FakeNameGenerator.com_3000.csv").decode("utf-8-sig"))
        )
    )
    companies = [
        row[0]
        for row in csv.reader(
            io.StringIO(
                archive.read(RAW + "companies_and_organizations.csv").decode("utf-8", "replace")
            )
        )
        if row and row[0] and row[0] != "name"
    ]
    rng = random.Random(seed)
    scored = [t for t in templates if any("{{" + s + "}}" in t for s in SLOT_ENTITY)]
    out: list[tuple[str, list[tuple[int, int, str]]]] = []
    for _ in range(samples):
        template = rng.choice(scored) if rng.random() < 0.7 else rng.choice(templates)
        person = rng.choice(people)

        text, spans, cursor = "", [], 0
        for match in re.finditer(r"{{(\w+)}}", template):
            text += template[cursor : match.start()]
            filled, entity = fill(match.group(1), person, companies, rng)
            if entity is not None:
                spans.append((len(text), len(text) + len(filled), entity))
            text += filled
            cursor = match.end()
        text += template[cursor:]
        out.append((text, spans))
    return out


def person_recall(
    engine: PiiEngine, data: list[tuple[str, list[tuple[int, int, str]]]], limit: int
) -> dict[str, object]:
    """PERSON recall with the spaCy NER (on the first `limit` samples that name someone), and
    how many of all the names the technical-term filter would drop (a name holding a product
    name, a unit or a word with digits): what the filter costs in recall."""
    named = [(text, spans) for text, spans in data if any(e == "PERSON" for *_, e in spans)]
    gold = found = 0
    for text, spans in named[:limit]:
        hits = engine.analyze(text, ("PERSON",))
        for start, end, e in spans:
            if e == "PERSON":
                gold += 1
                found += any(d.start < end and start < d.end for d in hits)
    names = [text[a:b] for text, spans in data for a, b, e in spans if e == "PERSON"]
    dropped = [n for n in names if _looks_technical(n)]
    recall = found / gold if gold else float("nan")
    print(
        f"PERSON with NER: recall {recall:.3f} on {gold} names; the technical-term filter "
        f"would drop {len(dropped)} of {len(names)} names"
    )
    return {
        "samples": min(limit, len(named)),
        "gold": gold,
        "recall": round(recall, 4),
        "names_dropped_by_technical_filter": len(dropped),
        "names": len(names),
        "dropped_examples": dropped[:10],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--ner-samples", type=int, default=300)
    args = parser.parse_args()
    data = build(args.samples, args.seed)
    engine = PiiEngine()
    entities = DEFAULT_PII_ENTITIES
    counts = {e: {"tp": 0, "fp": 0, "fn": 0} for e in entities}
    timings: list[float] = []
    for text, spans in data:
        started = time.perf_counter()
        found = engine.analyze(text, entities)
        timings.append((time.perf_counter() - started) * 1000)
        for d in found:
            hit = any(e == d.kind and d.start < end and start < d.end for start, end, e in spans)
            counts[d.kind]["tp" if hit else "fp"] += 1
        for start, end, e in spans:
            if e in counts and not any(
                d.kind == e and d.start < end and start < d.end for d in found
            ):
                counts[e]["fn"] += 1
    result: dict[str, object] = {"samples": len(data), "seed": args.seed, "entities": {}}
    print(f"{len(data)} samples from presidio-evaluator templates (seed {args.seed})")
    print(f"{'entity':<16}{'gold':>7}{'precision':>11}{'recall':>8}")
    for e in entities:
        c = counts[e]
        gold = c["tp"] + c["fn"]
        precision = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else 1.0
        recall = c["tp"] / gold if gold else float("nan")
        result["entities"][e] = {
            **c,
            "gold": gold,
            "precision": round(precision, 4),
            "recall": round(recall, 4),
        }  # type: ignore[index]
        mark = (
            ""
            if e not in TARGETS
            else ("  (target ≥ 0.90)" if recall >= 0.9 else "  (BELOW target 0.90)")
        )
        print(f"{e:<16}{gold:>7}{precision:>11.3f}{recall:>8.3f}{mark}")
    technical: dict[str, object] = {}
    for label, ents in (
        ("default entities", entities),
        ("with PERSON/LOCATION/ORGANIZATION", (*entities, "PERSON", "LOCATION", "ORGANIZATION")),
    ):
        found = [(text, d) for text in TECHNICAL for d in engine.analyze(text, ents)]
        technical[label] = {
            "sentences": len(TECHNICAL),
            "false_positives": len(found),
            "examples": [f"{d.kind}: {text[d.start : d.end]!r}" for text, d in found[:10]],
        }
        print(
            f"technical text, {label}: {len(found)} false positives in {len(TECHNICAL)} sentences"
        )
        for text, d in found[:10]:
            print(f"    {d.kind}: {text[d.start : d.end]!r}")
    result["technical_text"] = technical
    result["person_with_ner"] = person_recall(engine, data, args.ner_samples)
    result["latency_ms_per_sample"] = {
        "p50": round(statistics.median(timings), 3),
        "p99": round(sorted(timings)[int(0.99 * (len(timings) - 1))], 3),
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "guardrails_pii.json"
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
