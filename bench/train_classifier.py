"""Train the shipped guardrail classifier (``ztgate/inspection/models/linear_guardrails.json``)
from the public corpora of ``guardrail_corpora.py``, on their training split only, and print its
precision and recall on the held-out split.

What it learns: positives are the training split's jailbreak, prompt-injection, indirect
injection and prompt-extraction records; negatives are the training split of the hand-written
benign prompts and of the packages' own documents without injections. Smuggling and
exfiltration records are left out: they are the rules' job (decoding, URL checks), and as
negatives they would teach the model that an encoded instruction is benign.

How: the runtime's own feature function (``ztgate.inspection.classifier.text_features``) over
each whole text, a binary sparse matrix, scikit-learn's L2 logistic regression (liblinear,
balanced class weights, fixed seed). The operating point is chosen without looking at the
held-out split: out-of-fold scores from a 5-fold cross-validation over the training split's
groups give the lowest threshold at which at most ``--target-fp`` of the training benign texts
score above it; the bias is shifted so that this threshold becomes 0.5. The weights are then
pruned to the ``--max-weights`` largest in magnitude (the model file stays well under 1 MB) and
the held-out metrics are computed with the pure-Python runtime scorer on the pruned model, so
the figures are those of the file that ships.

Deterministic: the corpus, the split and the solver are; the model file differs between runs
only in its ``trained`` date.

    .venv/bin/pip install -e '.[bench]'     # scikit-learn, training only
    .venv/bin/python bench/train_classifier.py [--out PATH] [--target-fp 0.01] [--c 1.0]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

from guardrail_corpora import (
    CLASSIFIER_CATEGORIES,
    HELDOUT_PERCENT,
    SPLIT_SALT,
    CorpusUnavailable,
    Record,
    attack_corpus,
    benign_corpus,
    package_benign,
    sources,
)
from ztgate.inspection import classifier as runtime

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "src" / "ztgate" / "inspection" / runtime.MODEL_RESOURCE
SEED = 0


def _matrix(records: Sequence[Record]) -> Any:
    from scipy.sparse import csr_matrix

    rows, cols = [], []
    for i, record in enumerate(records):
        for feature in sorted(runtime.text_features(record.text)):
            rows.append(i)
            cols.append(feature)
    data = [1.0] * len(rows)
    return csr_matrix((data, (rows, cols)), shape=(len(records), runtime.BUCKETS))


def _fit(x: Any, y: Sequence[int], c: float) -> Any:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(
        C=c, class_weight="balanced", solver="liblinear", max_iter=1000, random_state=SEED
    )
    model.fit(x, y)
    return model


def _oof_margins(records: Sequence[Record], x: Any, y: Sequence[int], c: float) -> list[float]:
    """Out-of-fold decision values over the training split, folds by group."""
    from sklearn.model_selection import GroupKFold

    margins = [0.0] * len(records)
    groups = [r.group or r.text for r in records]
    for fit_idx, val_idx in GroupKFold(n_splits=5).split(x, y, groups):
        model = _fit(x[fit_idx], [y[i] for i in fit_idx], c)
        for i, value in zip(val_idx, model.decision_function(x[val_idx]), strict=True):
            margins[i] = float(value)
    return margins


def _threshold(margins: Sequence[float], y: Sequence[int], target_fp: float) -> float:
    """The lowest margin threshold at which at most target_fp of the negatives are above."""
    negatives = sorted((m for m, label in zip(margins, y, strict=True) if not label), reverse=True)
    allowed = math.floor(target_fp * len(negatives))
    # strictly above the (allowed+1)-th highest negative
    return negatives[allowed] + 1e-6 if allowed < len(negatives) else min(negatives)


def evaluate(model: runtime.LinearClassifier, records: Sequence[Record]) -> dict[str, Any]:
    """Recall per attack category and false-positive rate per benign kind, at 0.5, with the
    runtime scorer."""
    flagged: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    tp = fp = 0
    for record in records:
        hit = model.score(record.text) >= 0.5
        key = record.category if record.is_attack else f"benign:{record.technique}"
        flagged[key][0] += hit
        flagged[key][1] += 1
        if record.is_attack and record.category in CLASSIFIER_CATEGORIES:
            tp += hit
        elif not record.is_attack:
            fp += hit
    rates = {
        k: {"flagged": v[0], "total": v[1], "rate": round(v[0] / v[1], 4)}
        for k, v in sorted(flagged.items())
    }
    positives = sum(v[1] for k, v in flagged.items() if k in CLASSIFIER_CATEGORIES)
    negatives = sum(v[1] for k, v in flagged.items() if k.startswith("benign:"))
    return {
        "per_category": rates,
        "precision": round(tp / (tp + fp), 4) if tp + fp else None,
        "recall": round(tp / positives, 4) if positives else None,
        "false_positive_rate": round(fp / negatives, 4) if negatives else None,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--c",
        type=float,
        nargs="+",
        default=[0.3, 1.0, 3.0, 10.0],
        help="inverse L2 strengths to try; the best out-of-fold recall at the target FP wins",
    )
    parser.add_argument("--target-fp", type=float, default=0.01)
    parser.add_argument("--max-weights", type=int, default=30_000)
    args = parser.parse_args(argv)

    try:
        attacks = attack_corpus()
    except CorpusUnavailable as exc:
        print(f"cannot train: {exc}", file=sys.stderr)
        return 2
    benign = [*benign_corpus(), *package_benign()]
    usable = [r for r in attacks if r.category in CLASSIFIER_CATEGORIES] + benign
    train = [r for r in usable if r.split == "train"]
    heldout_all = [r for r in [*attacks, *benign] if r.split == "heldout"]
    y = [int(r.is_attack) for r in train]

    x = _matrix(train)
    trials = []
    for c in args.c:
        margins = _oof_margins(train, x, y, c)
        cut = _threshold(margins, y, args.target_fp)
        pos = [m for m, label in zip(margins, y, strict=True) if label]
        neg = [m for m, label in zip(margins, y, strict=True) if not label]
        recall = sum(m > cut for m in pos) / max(1, len(pos))
        fp_rate = sum(m > cut for m in neg) / max(1, len(neg))
        print(f"C={c}: out-of-fold recall {recall:.3f} at FP {fp_rate:.4f}")
        trials.append((recall, -c, c, cut, fp_rate))
    oof_recall, _, c_best, cut, oof_fp = max(trials)

    fitted = _fit(x, y, c_best)
    coef = fitted.coef_[0]
    nonzero = [(int(i), float(coef[i])) for i in coef.nonzero()[0]]
    kept = sorted(sorted(nonzero, key=lambda p: -abs(p[1]))[: args.max_weights])
    bias = float(fitted.intercept_[0]) - cut

    model = runtime.LinearClassifier({i: round(w, 5) for i, w in kept}, round(bias, 6), {})
    held = evaluate(model, heldout_all)
    train_counts = Counter(r.category for r in train)
    held_counts = Counter(r.category for r in heldout_all)
    provenance = {
        "trained": dt.datetime.now(dt.UTC).date().isoformat(),
        "trainer": "bench/train_classifier.py",
        "sources": {name: v for name, v in sources().items() if v},
        "benign": (
            "bench/corpora/benign_prompts.jsonl (hand-written) and the packages' documents "
            "without injections"
        ),
        "split": {
            "method": (
                "sha256 of each record's group; groups are attack templates or "
                "near-duplicate clusters"
            ),
            "salt": SPLIT_SALT,
            "heldout_percent": HELDOUT_PERCENT,
        },
        "train_counts": dict(sorted(train_counts.items())),
        "heldout_counts": dict(sorted(held_counts.items())),
        "learner": {
            "library": f"scikit-learn {version('scikit-learn')}",
            "model": "LogisticRegression(penalty=l2, solver=liblinear, class_weight=balanced)",
            "C": c_best,
            "C_tried": list(args.c),
            "features_seen": len(nonzero),
            "weights_kept": len(kept),
        },
        "calibration": {
            "target_false_positive_rate": args.target_fp,
            "method": (
                "5-fold GroupKFold out-of-fold margins on the training split (C chosen there "
                "too); bias shifted so that 0.5 is the threshold"
            ),
            "threshold_margin": round(cut, 6),
            "oof_recall": round(oof_recall, 4),
            "oof_false_positive_rate": round(oof_fp, 4),
        },
        "heldout": held,
    }
    document = {
        "format": runtime.FORMAT,
        "features": runtime.FEATURE_SPEC,
        "window": runtime.WINDOW_SPEC,
        "bias": round(bias, 6),
        "weights": {"ids": [i for i, _ in kept], "values": [round(w, 5) for _, w in kept]},
        "provenance": provenance,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, separators=(",", ":")) + "\n", encoding="utf-8")

    print(f"model: {args.out} ({args.out.stat().st_size / 1024:.0f} KB, {len(kept)} weights)")
    print(
        f"trained on {len(train)} texts: "
        + ", ".join(f"{k} {v}" for k, v in sorted(train_counts.items()))
    )
    print(
        f"out-of-fold on train at the chosen threshold: recall {oof_recall:.3f}, FP {oof_fp:.4f}\n"
    )
    print("held-out split, score >= 0.5:\n")
    print("| held-out set | flagged | total | rate |\n|---|---:|---:|---:|")
    for key, row in held["per_category"].items():
        print(f"| {key} | {row['flagged']} | {row['total']} | {row['rate']:.3f} |")
    print(
        f"\nclassifier categories: precision {held['precision']}, recall {held['recall']}; "
        f"false-positive rate on all held-out benign {held['false_positive_rate']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
