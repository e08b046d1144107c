"""Detection quality and speed, side by side: ztgate's Scanner and Presidio's pattern recognizers.

In one run, on one labelled corpus built at run time from a fixed seed (nothing downloaded but
the pip packages below):

- **PII**: presidio-evaluator's sentence templates and fake identities, our templates for the
  identifiers it lacks, and near misses (``quality_data/pii_samples.py``);
- **secrets**: format-valid random secrets in the places they turn up, and near misses after
  gitleaks' and detect-secrets' allow-lists (``quality_data/secret_samples.py``).

Engines: ztgate's ``Scanner(catalogue())``, and Presidio's ``AnalyzerEngine`` with the no-op
NLP engine (``nlp_engine_name: no_op``, Presidio's supported way to run without spaCy models)
and its pattern recognizers: the English defaults plus the UK NINO, German tax ID, Spanish
NIF/NIE, Italian fiscal code and Aadhaar recognizers, enabled for English so that every entity
both engines know is compared. Presidio's results are taken at its default score threshold (0:
everything ``analyze`` returns); its best threshold per entity, chosen on this very corpus, is
shown as well (an upper bound for it). Presidio's tldextract is kept offline (its bundled
public-suffix snapshot), as it must be on machines without internet access.

**Span matching**, identical for both engines: a predicted span is correct when it overlaps (at
least one character) a labelled span of the same entity; a labelled span is found when a
prediction of its entity overlaps it. Precision = correct predictions / predictions, recall =
found labelled spans / labelled spans, F1 their harmonic mean.

Speed: whole-text scans on one core, both engines on the same texts (MB = 10^6 UTF-8 bytes).

Install and run (``make bench-quality`` does both):

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/pip install --no-deps presidio-evaluator==0.3.2
    .venv/bin/python bench/quality.py [--per-entity 300] [--per-secret 60] [--speed-mb 10]
"""

from __future__ import annotations

import argparse
import logging
import os
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any, NamedTuple

from quality_data import Sample, pii_samples, secret_samples
from scan_speed import build_corpus
from ztgate.detectors.catalogue import catalogue
from ztgate.inspection.scanner import Scanner

ZTGATE_ENTITY = {
    "email": "EMAIL",
    "phone": "PHONE",
    "payment_card": "PAYMENT_CARD",
    "iban": "IBAN",
    "us_ssn": "US_SSN",
    "ipv4": "IP_ADDRESS",
    "ipv6": "IP_ADDRESS",
    "uk_nino": "UK_NINO",
    "de_tax_id": "DE_TAX_ID",
    "es_dni": "ES_DNI",
    "it_codice_fiscale": "IT_CODICE_FISCALE",
    "in_aadhaar": "IN_AADHAAR",
    "fr_nir": "FR_NIR",
    "date_of_birth": "DATE_OF_BIRTH",
    "private_key_partial": "private_key",  # one secret, two patterns
}
"""ztgate detector -> canonical entity (secrets keep their detector id)."""

PRESIDIO_ENTITY = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "CREDIT_CARD": "PAYMENT_CARD",
    "IBAN_CODE": "IBAN",
    "US_SSN": "US_SSN",
    "IP_ADDRESS": "IP_ADDRESS",
    "UK_NINO": "UK_NINO",
    "DE_TAX_ID": "DE_TAX_ID",
    "ES_NIF": "ES_DNI",
    "ES_NIE": "ES_DNI",
    "IT_FISCAL_CODE": "IT_CODICE_FISCALE",
    "IN_AADHAAR": "IN_AADHAAR",
}
"""Presidio entity -> canonical entity; the rest (URL, DATE_TIME, US_DRIVER_LICENSE, ...) have
no ztgate counterpart and are not scored."""


class Prediction(NamedTuple):
    start: int
    end: int
    entity: str
    score: float


Engine = Callable[[str], list[Prediction]]


def ztgate_engine() -> tuple[Engine, Scanner]:
    scanner = Scanner(catalogue())
    detectors = scanner.detectors

    def predict(text: str) -> list[Prediction]:
        return [
            Prediction(
                f.start,
                f.end,
                ZTGATE_ENTITY.get(f.detector, f.detector),
                detectors[f.detector].confidence,
            )
            for f in scanner.scan(text)
        ]

    return predict, scanner


def presidio_analyzer() -> Any:
    """Presidio's AnalyzerEngine with the no-op NLP engine and its pattern recognizers."""
    # tldextract (Presidio's email recognizer) would fetch the public suffix list at first use.
    os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
    try:
        from presidio_analyzer import AnalyzerEngine
        from presidio_analyzer.nlp_engine import NlpEngineProvider
        from presidio_analyzer.predefined_recognizers import (
            DeTaxIdRecognizer,
            EsNieRecognizer,
            EsNifRecognizer,
            InAadhaarRecognizer,
            ItFiscalCodeRecognizer,
            UkNinoRecognizer,
        )
    except ImportError:
        raise SystemExit(
            "presidio-analyzer is missing: .venv/bin/pip install -e '.[bench]'"
        ) from None
    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)
    nlp = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "no_op",
            "models": [{"lang_code": "en", "model_name": "no_op"}],
        }
    ).create_engine()
    analyzer = AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"])
    for recognizer in (
        UkNinoRecognizer,
        DeTaxIdRecognizer,
        EsNifRecognizer,
        EsNieRecognizer,
        ItFiscalCodeRecognizer,
        InAadhaarRecognizer,
    ):
        analyzer.registry.add_recognizer(recognizer(supported_language="en"))
    return analyzer


def presidio_engine(analyzer: Any) -> Engine:
    def predict(text: str) -> list[Prediction]:
        return [
            Prediction(r.start, r.end, PRESIDIO_ENTITY.get(r.entity_type, r.entity_type), r.score)
            for r in analyzer.analyze(text=text, language="en")
        ]

    return predict


# --- scoring ----------------------------------------------------------------------------------


@dataclass
class Tally:
    """Per entity: predictions (with score, correct?) and labelled spans (best score found)."""

    predictions: list[tuple[float, bool]]
    labelled: list[float | None]  # the best score of a prediction overlapping it, or None

    def at(self, threshold: float = 0.0) -> tuple[float, float, float, int]:
        kept = [ok for score, ok in self.predictions if score >= threshold]
        found = sum(1 for best in self.labelled if best is not None and best >= threshold)
        precision = sum(kept) / len(kept) if kept else 1.0
        recall = found / len(self.labelled) if self.labelled else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return precision, recall, f1, len(kept)

    def best(self) -> tuple[float, float]:
        """The best F1 over score thresholds, and the threshold."""
        candidates = sorted({score for score, _ in self.predictions} | {0.0})
        return max(((self.at(t)[2], t) for t in candidates), key=lambda x: (x[0], -x[1]))


def _overlaps(a_start: int, a_end: int, b_start: int, b_end: int) -> bool:
    return a_start < b_end and b_start < a_end


def tally(
    samples: Sequence[Sample], predictions: Sequence[list[Prediction]], entities: Iterable[str]
) -> dict[str, Tally]:
    wanted = set(entities)
    out = {e: Tally([], []) for e in wanted}
    for sample, preds in zip(samples, predictions, strict=True):
        gold = [s for s in sample.spans if s.entity in wanted]
        for p in preds:
            if p.entity in wanted:
                ok = any(
                    g.entity == p.entity and _overlaps(p.start, p.end, g.start, g.end) for g in gold
                )
                out[p.entity].predictions.append((p.score, ok))
        for g in gold:
            scores = [
                p.score
                for p in preds
                if p.entity == g.entity and _overlaps(p.start, p.end, g.start, g.end)
            ]
            out[g.entity].labelled.append(max(scores) if scores else None)
    return out


def run(engine: Engine, samples: Sequence[Sample]) -> tuple[list[list[Prediction]], float]:
    started = time.perf_counter()
    predictions = [engine(s.text) for s in samples]
    return predictions, time.perf_counter() - started


def _f(x: float) -> str:
    return f"{x:.3f}"


# --- reports ----------------------------------------------------------------------------------


def _table(header: Sequence[str], align: Sequence[str]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]


def pii_report(
    samples: Sequence[Sample],
    ztgate: Sequence[list[Prediction]],
    presidio: Sequence[list[Prediction]],
) -> tuple[list[str], list[str]]:
    """The per-entity table, and the shared entities where ztgate's F1 is below Presidio's."""
    shared, only = pii_samples.SHARED, pii_samples.ZTGATE_ONLY
    z = tally(samples, ztgate, shared + only)
    p = tally(samples, presidio, shared)
    lines = _table(
        [
            "entity",
            "labelled",
            "ztgate P",
            "ztgate R",
            "ztgate F1",
            "Presidio P",
            "Presidio R",
            "Presidio F1",
            "Presidio F1 at its best threshold",
            "ztgate >= Presidio",
        ],
        ["---", *["---:"] * 8, "---"],
    )
    missed: list[str] = []
    for entity in shared:
        zp, zr, zf, _ = z[entity].at()
        pp, pr, pf, _ = p[entity].at()
        best, threshold = p[entity].best()
        if zf < pf:
            missed.append(entity)
        lines.append(
            f"| {entity} | {len(z[entity].labelled):,} | {_f(zp)} | {_f(zr)} | **{_f(zf)}** | "
            f"{_f(pp)} | {_f(pr)} | **{_f(pf)}** | {_f(best)} (score >= {threshold:g}) | "
            f"{'yes' if zf >= pf else 'NO'} |"
        )
    zm, pm = _micro([z[e] for e in shared]), _micro([p[e] for e in shared])
    lines.append(
        f"| all shared (micro) | {sum(len(z[e].labelled) for e in shared):,} | "
        f"{_f(zm[0])} | {_f(zm[1])} | **{_f(zm[2])}** | "
        f"{_f(pm[0])} | {_f(pm[1])} | **{_f(pm[2])}** | | |"
    )
    for entity in only:
        zp, zr, zf, _ = z[entity].at()
        lines.append(
            f"| {entity} (ztgate only) | {len(z[entity].labelled):,} | {_f(zp)} | {_f(zr)} | "
            f"**{_f(zf)}** | - | - | - | - | |"
        )
    return lines, missed


def _micro(tallies: Sequence[Tally]) -> tuple[float, float, float]:
    merged = Tally(
        [x for t in tallies for x in t.predictions], [x for t in tallies for x in t.labelled]
    )
    precision, recall, f1, _ = merged.at()
    return precision, recall, f1


def evaluator_report(
    samples: Sequence[Sample],
    ztgate: Sequence[list[Prediction]],
    presidio: Sequence[list[Prediction]],
) -> list[str]:
    """The shared entities on presidio-evaluator's own templates only."""
    picked = [i for i, s in enumerate(samples) if s.kind.startswith("evaluator")]
    sub = [samples[i] for i in picked]
    z = tally(sub, [ztgate[i] for i in picked], pii_samples.SHARED)
    p = tally(sub, [presidio[i] for i in picked], pii_samples.SHARED)
    lines = _table(
        [
            "entity",
            "labelled",
            "ztgate P",
            "ztgate R",
            "ztgate F1",
            "Presidio P",
            "Presidio R",
            "Presidio F1",
        ],
        ["---", *["---:"] * 7],
    )
    for entity in pii_samples.SHARED:
        if z[entity].labelled:
            zp, zr, zf, _ = z[entity].at()
            pp, pr, pf, _ = p[entity].at()
            lines.append(
                f"| {entity} | {len(z[entity].labelled):,} | {_f(zp)} | {_f(zr)} | {_f(zf)} | "
                f"{_f(pp)} | {_f(pr)} | {_f(pf)} |"
            )
    return lines


def near_miss_report(
    samples: Sequence[Sample],
    ztgate: Sequence[list[Prediction]],
    presidio: Sequence[list[Prediction]],
    scored: set[str],
) -> list[str]:
    """Per near-miss kind (those with any finding), the samples with a finding."""
    rows: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0, 0])
    for s, zs, ps in zip(samples, ztgate, presidio, strict=True):
        if s.kind.startswith("near miss"):
            row = rows[s.kind.removeprefix("near miss: ")]
            row[0] += 1
            row[1] += any(p.entity in scored for p in zs)
            row[2] += any(p.entity in scored for p in ps)
            row[3] += any(p.entity not in scored for p in zs)
            row[4] += any(p.entity not in scored for p in ps)
    lines = _table(
        [
            "near miss",
            "samples",
            "ztgate, compared entities",
            "Presidio, compared entities",
            "ztgate, other detectors",
            "Presidio, other entities",
        ],
        ["---", *["---:"] * 5],
    )
    total = [0, 0, 0, 0, 0]
    for kind, row in sorted(rows.items()):
        total = [a + b for a, b in zip(total, row, strict=True)]
        if any(row[1:]):
            lines.append("| " + " | ".join([kind, *map(str, row)]) + " |")
    lines.append("| " + " | ".join([f"all {len(rows)} kinds", *map(str, total)]) + " |")
    return lines


def other_findings(predictions: Sequence[list[Prediction]], scored: set[str]) -> str:
    counts = Counter(p.entity for preds in predictions for p in preds if p.entity not in scored)
    return ", ".join(f"{k} {n:,}" for k, n in counts.most_common()) or "none"


def secret_entities() -> set[str]:
    """ztgate's secret detectors, as canonical entities."""
    return {ZTGATE_ENTITY.get(d.id, d.id) for d in catalogue() if d.category == "secret"}


@dataclass
class SecretSummary:
    known: int
    known_recall: float
    contextual: int
    contextual_recall: float
    findings: int
    precision: float
    near_misses: int
    near_miss_rate: float
    presidio_near_miss_rate: float


def secrets_report(
    samples: Sequence[Sample],
    ztgate: Sequence[list[Prediction]],
    presidio: Sequence[list[Prediction]],
) -> tuple[list[str], SecretSummary]:
    """Recall per detector; precision over ztgate's secret findings. Its PII findings on this
    corpus (an email in a git remote, an IP in a database URL) are listed, not scored."""
    detectors = secret_samples.KNOWN_FORMAT + secret_samples.CONTEXTUAL
    secret = secret_entities()
    strict = tally(samples, ztgate, detectors)
    found_any: dict[str, list[bool]] = defaultdict(list)
    presidio_any: dict[str, list[bool]] = defaultdict(list)
    findings = correct = near_misses = near_miss_hits = presidio_hits = 0
    for s, zs, ps in zip(samples, ztgate, presidio, strict=True):
        for g in s.spans:
            found_any[g.entity].append(any(_overlaps(p.start, p.end, g.start, g.end) for p in zs))
            presidio_any[g.entity].append(
                any(_overlaps(p.start, p.end, g.start, g.end) for p in ps)
            )
        for p in zs:
            if p.entity in secret:
                findings += 1
                correct += any(_overlaps(p.start, p.end, g.start, g.end) for g in s.spans)
        if not s.spans:
            near_misses += 1
            near_miss_hits += any(p.entity in secret for p in zs)
            presidio_hits += bool(ps)
    lines = _table(
        [
            "detector",
            "secrets",
            "recall (this detector)",
            "recall (any detector)",
            "findings",
            "precision",
            "Presidio: any entity overlapping",
        ],
        ["---", *["---:"] * 6],
    )
    for d in detectors:
        precision, recall, _f1, kept = strict[d].at()
        lines.append(
            f"| {d} | {len(strict[d].labelled):,} | {_f(recall)} | {_f(_rate(found_any[d]))} | "
            f"{kept:,} | {_f(precision)} | {_f(_rate(presidio_any[d]))} |"
        )
    known = [x for d in secret_samples.KNOWN_FORMAT for x in found_any[d]]
    contextual = [x for d in secret_samples.CONTEXTUAL for x in found_any[d]]
    summary = SecretSummary(
        known=len(known),
        known_recall=_rate(known),
        contextual=len(contextual),
        contextual_recall=_rate(contextual),
        findings=findings,
        precision=correct / findings if findings else 1.0,
        near_misses=near_misses,
        near_miss_rate=near_miss_hits / near_misses if near_misses else 0.0,
        presidio_near_miss_rate=presidio_hits / near_misses if near_misses else 0.0,
    )
    return lines, summary


def _rate(flags: Sequence[bool]) -> float:
    return sum(flags) / len(flags) if flags else 0.0


def secret_near_miss_report(
    samples: Sequence[Sample],
    ztgate: Sequence[list[Prediction]],
    presidio: Sequence[list[Prediction]],
) -> list[str]:
    rows: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    found: dict[str, Counter[str]] = defaultdict(Counter)
    for s, zs, ps in zip(samples, ztgate, presidio, strict=True):
        if not s.spans:
            kind = s.kind.removeprefix("near miss: ")
            rows[kind][0] += 1
            rows[kind][1] += bool(zs)
            rows[kind][2] += bool(ps)
            found[kind].update(p.entity for p in zs)
    lines = _table(
        ["near miss", "samples", "ztgate: with a finding (detectors)", "Presidio: with a finding"],
        ["---", "---:", "---:", "---:"],
    )
    for kind, (n, z, p) in sorted(rows.items()):
        if z or p:
            what = ", ".join(f"{k} {v}" for k, v in found[kind].most_common())
            lines.append(f"| {kind} | {n} | {z} ({what or '-'}) | {p} |")
    return lines


def near_miss_kinds(samples: Sequence[Sample]) -> int:
    return len({s.kind for s in samples if s.kind.startswith("near miss")})


# --- speed ------------------------------------------------------------------------------------


def _best_time(fn: Callable[[str], object], text: str, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        fn(text)
        best = min(best, time.perf_counter() - started)
    return best


def _cut(text: str, megabytes: float) -> str:
    """The text's first lines, up to ``megabytes`` of UTF-8 (whole lines)."""
    limit = int(megabytes * 1_000_000)
    out: list[str] = []
    size = 0
    for line in text.split("\n"):
        size += len(line.encode()) + 1
        if size > limit and out:
            break
        out.append(line)
    return "\n".join(out)


def speed_report(
    scanner: Scanner,
    analyzer: Any,
    corpora: Sequence[tuple[str, str]],
    presidio_mb: float,
    rounds: int,
) -> tuple[list[str], list[float], float]:
    """Both engines on the first ``presidio_mb`` of each text; ztgate on the whole text too.
    Returns the table, the ratio per text, and ztgate's MB/s on the first text, whole."""
    lines = _table(
        [
            "text",
            "MB",
            "ztgate s",
            "ztgate MB/s",
            "Presidio s",
            "Presidio MB/s",
            "ztgate / Presidio",
        ],
        ["---", *["---:"] * 6],
    )
    ratios: list[float] = []
    whole_speed = 0.0

    def analyze(text: str) -> object:
        return analyzer.analyze(text=text, language="en")

    for i, (name, text) in enumerate(corpora):
        sample = _cut(text, presidio_mb)
        mb = len(sample.encode()) / 1e6
        z = _best_time(scanner.scan, sample, rounds)
        p = _best_time(analyze, sample, 1)
        ratios.append(p / z)
        lines.append(
            f"| {name}, first {mb:.2f} MB | {mb:.2f} | {z:.4f} | {mb / z:.1f} | {p:.2f} | "
            f"{mb / p:.3f} | **{p / z:,.0f}x** |"
        )
        full_mb = len(text.encode()) / 1e6
        if full_mb > mb * 1.05:
            z_full = _best_time(scanner.scan, text, rounds)
            if i == 0:
                whole_speed = full_mb / z_full
            lines.append(
                f"| {name}, whole | {full_mb:.2f} | {z_full:.4f} | {full_mb / z_full:.1f} "
                "| - | - | - |"
            )
        elif i == 0:
            whole_speed = mb / z
    return lines, ratios, whole_speed


# --- main -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--per-entity",
        type=int,
        default=300,
        help="sentences per entity from the evaluator's templates and as many from ours (300)",
    )
    parser.add_argument(
        "--negatives", type=int, default=1500, help="evaluator sentences with none (1500)"
    )
    parser.add_argument(
        "--per-near-miss", type=int, default=50, help="PII near misses of each kind (50)"
    )
    parser.add_argument(
        "--per-secret", type=int, default=60, help="secrets and near misses of each kind (60)"
    )
    parser.add_argument(
        "--speed-mb", type=float, default=10.0, help="size of the prose speed corpus (10)"
    )
    parser.add_argument(
        "--presidio-mb", type=float, default=1.0, help="how much of each text Presidio scans (1)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds for ztgate (3)")
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args()

    started = time.perf_counter()
    pii = pii_samples.build(args.seed, args.per_entity, args.negatives, args.per_near_miss)
    secrets = secret_samples.build(args.seed, args.per_secret)
    built = time.perf_counter() - started
    ztgate, scanner = ztgate_engine()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the no-op engine's note that context words are off
        analyzer = presidio_analyzer()
    presidio = presidio_engine(analyzer)
    z_pii, z_pii_s = run(ztgate, pii)
    p_pii, p_pii_s = run(presidio, pii)
    z_sec, _ = run(ztgate, secrets)
    p_sec, _ = run(presidio, secrets)

    pii_mb = sum(len(s.text.encode()) + 1 for s in pii) / 1e6
    shared = pii_samples.SHARED
    labelled = sum(1 for s in pii for g in s.spans if g.entity in shared)
    print("## Detection quality: ztgate and Presidio side by side\n")
    print(
        f"Presidio {_version('presidio-analyzer')} (pattern recognizers, no-op NLP engine), "
        f"presidio-evaluator {_version('presidio-evaluator')}, seed {args.seed} (corpus built "
        f"in {built:.1f} s). PII: {len(pii):,} sentences ({pii_mb:.2f} MB) with {labelled:,} "
        f"labelled values of the {len(shared)} entities both engines cover: "
        f"{args.per_entity} sentences per entity from presidio-evaluator's templates where it "
        f"has the entity and {args.per_entity} from ours; {args.negatives:,} evaluator "
        f"sentences labelling none of them; {args.per_near_miss} near misses of each of "
        f"{near_miss_kinds(pii)} kinds. A prediction is correct when it overlaps a labelled "
        "span of the same entity (both engines alike).\n"
    )
    print("### PII, all sentences\n")
    lines, missed = pii_report(pii, z_pii, p_pii)
    print("\n".join(lines))
    print(
        "\nGoal, ztgate F1 >= Presidio F1 on every entity both cover: "
        + ("**met**." if not missed else "**NOT met** for " + ", ".join(missed) + ".")
    )
    print("\n### PII, presidio-evaluator's templates only\n")
    print("\n".join(evaluator_report(pii, z_pii, p_pii)))
    scored = set(shared) | set(pii_samples.ZTGATE_ONLY)
    unscored = {g.entity for s in pii for g in s.spans} - scored  # names, addresses, ...
    print("\n### PII near misses: samples with a finding\n")
    print("\n".join(near_miss_report(pii, z_pii, p_pii, scored)))
    print(
        f"\nFindings of entities outside the comparison on the PII corpus: ztgate: "
        f"{other_findings(z_pii, scored)}; Presidio: {other_findings(p_pii, scored)}."
    )

    lines, summary = secrets_report(secrets, z_sec, p_sec)
    print("\n### Secrets (ztgate only: Presidio has no secret recognizers)\n")
    print(
        f"{len(secrets):,} samples: {args.per_secret} of each secret kind in context (env files, "
        f"JSON/YAML, code, curl, logs, chat) and {summary.near_misses:,} near misses "
        f"({args.per_secret} of each of {near_miss_kinds(secrets)} kinds). Recall (any "
        "detector) counts a secret found when any finding overlaps it; precision is over "
        "ztgate's secret findings in all samples.\n"
    )
    print("\n".join(lines))
    known_ok = summary.known_recall >= 0.99
    precision_ok = summary.precision >= 0.95
    print(
        f"\nKnown-format secrets ({summary.known:,}): recall **{summary.known_recall:.4f}** "
        f"(goal >= 0.99: {'met' if known_ok else 'NOT met'}). Contextual secrets "
        f"({summary.contextual:,}): recall {summary.contextual_recall:.4f}. Precision of the "
        f"{summary.findings:,} secret findings: **{summary.precision:.4f}** (goal >= 0.95: "
        f"{'met' if precision_ok else 'NOT met'}). Near misses with a secret finding: ztgate "
        f"{summary.near_miss_rate:.1%}; with any finding, Presidio "
        f"{summary.presidio_near_miss_rate:.1%}."
    )
    print("\n### Secret near misses with a finding\n")
    print("\n".join(secret_near_miss_report(secrets, z_sec, p_sec)))

    prose, _ = build_corpus(args.speed_mb, args.seed, 4000)
    joined = "\n".join(s.text for s in (*pii, *secrets))
    values = sum(1 for s in (*pii, *secrets) for g in s.spans if g.entity not in unscored)
    corpora = [
        ("prose, 1 item + 1 near miss per ~4 KB (scan_speed.py corpus)", prose),
        ("the labelled sentences above, joined", joined),
    ]
    lines, ratios, whole_speed = speed_report(
        scanner, analyzer, corpora, args.presidio_mb, args.rounds
    )
    print("\n## Speed side by side: whole-text scans, one core\n")
    print(
        f"Same texts for both engines; ztgate best of {args.rounds} rounds, Presidio one round "
        f"on the first {args.presidio_mb:g} MB of each text. Sentence by sentence (one call "
        f"per sentence) in the quality run above: ztgate {pii_mb / z_pii_s:.2f} MB/s, Presidio "
        f"{pii_mb / p_pii_s:.3f} MB/s ({p_pii_s / z_pii_s:.0f}x).\n"
    )
    print("\n".join(lines))
    ratio_ok = ratios[0] >= 50
    print(
        f"\nGoals on the prose corpus: ztgate >= 50x Presidio: {'met' if ratio_ok else 'NOT met'} "
        f"({ratios[0]:,.0f}x); ztgate >= 100 MB/s: "
        f"{'met' if whole_speed >= 100 else 'NOT met'} ({whole_speed:.1f} MB/s). On the labelled "
        f"sentences (a labelled value every {len(joined.encode()) // max(values, 1)} bytes, "
        f"besides near misses): {ratios[1]:,.0f}x."
    )
    if args.check and (missed or not (known_ok and precision_ok and ratio_ok)):
        raise SystemExit(1)


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "(not installed)"


if __name__ == "__main__":
    main()
