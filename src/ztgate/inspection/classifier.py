"""An offline classifier for the attacks rules miss: a logistic regression over hashed words and
word pairs, scored in pure Python so that the gateway needs no new dependency and no network.

Why this shape. The rules recognise phrasings they were written for; paraphrased jailbreaks and
injections share vocabulary ("from now on", "stay in character", "developer mode", "do not
refuse", "previous instructions") more than exact phrases. A linear model over word unigrams
and bigrams picks that vocabulary up from public red-team corpora, needs a dictionary lookup per
feature at run time, and can be trained reproducibly from packages (``bench/train_classifier.py``).

Features. The text is lower-cased and split into words (``\\w+``, Unicode-aware) and runs of
punctuation (``###``, ``<|``, ``](``: the delimiters injections fake); a token is cut to 24
characters. Each token and each pair of adjacent tokens is hashed with CRC-32 into 2^20
buckets; a feature is present or absent (counts would let a long benign text outvote a short
injection inside it).

Long texts. The text is cut into chunks of 2,048 characters and scored per window of two
adjacent chunks (4 KB, the size most training texts have), the score being the highest window's:
an injection planted in a long document is judged beside its neighbourhood, not diluted by the
whole. Only the first and last 16 KB are scored (at most 16 chunks, a few milliseconds): an
attacker can hide text in the middle of a huge tool result from this classifier; the rules still
scan all of it, and this is why the classifier adds to the rules rather than replacing them.

Scores. ``score`` is the logistic of the bias plus the weights of the features present. The
bias shipped in the model is shifted so that 0.5 is the operating point chosen on the training
split's cross-validation (the false-positive rate it targets is in the model's provenance), so
a caller can use the guardrails' default threshold of 0.5 as it is.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

FORMAT = "ztgate-linear/1"
BUCKETS = 1 << 20
MAX_TOKEN = 24
CHUNK_CHARS = 2048
CHUNKS_PER_WINDOW = 2
HEAD_CHARS = 16 * 1024
TAIL_CHARS = 16 * 1024
MODEL_RESOURCE = "models/linear_guardrails.json"

_TOKEN = re.compile(r"\w+|[^\w\s]+")
_MASK = BUCKETS - 1
_START = zlib.crc32(b"\x02 ")  # the state before the first token: bigram (start, first token)

FEATURE_SPEC: dict[str, Any] = {
    "hash": "crc32",
    "buckets": BUCKETS,
    "token_pattern": _TOKEN.pattern,
    "lowercase": True,
    "max_token_chars": MAX_TOKEN,
    "ngrams": [1, 2],
    "values": "binary",
}
"""What the features are; a model file records the spec it was trained with, and loading a
model trained with another spec fails instead of scoring garbage."""

WINDOW_SPEC: dict[str, int] = {
    "chunk_chars": CHUNK_CHARS,
    "chunks_per_window": CHUNKS_PER_WINDOW,
    "head_chars": HEAD_CHARS,
    "tail_chars": TAIL_CHARS,
}


class TextClassifier(Protocol):
    """Scores a text: the probability that it is an attack (prompt injection, jailbreak or
    system-prompt extraction), in [0, 1]."""

    name: str

    def score(self, text: str) -> float: ...


class ModelError(ValueError):
    """A model file that is not a model this code can use."""


def chunk_features(text: str) -> set[int]:
    """The hashed unigram and bigram features of one piece of text."""
    crc = zlib.crc32
    features: set[int] = set()
    add = features.add
    state = _START
    for token in _TOKEN.findall(text.lower()):
        raw = token[:MAX_TOKEN].encode()
        own = crc(raw)
        add(own & _MASK)
        add(crc(raw, state) & _MASK)  # crc32(previous + " " + token)
        state = crc(b" ", own)  # crc32(token + " "), carried to the next bigram
    return features


def scanned_parts(text: str) -> list[list[str]]:
    """The chunks that are scored, per contiguous part: the whole text when it is at most
    head + tail long, else the head and the tail apart (no window spans the gap)."""
    if len(text) <= HEAD_CHARS + TAIL_CHARS:
        parts = [text]
    else:
        parts = [text[:HEAD_CHARS], text[-TAIL_CHARS:]]
    return [
        [part[i : i + CHUNK_CHARS] for i in range(0, len(part), CHUNK_CHARS)] or [""]
        for part in parts
    ]


def text_features(text: str) -> set[int]:
    """Every feature of the scanned part of a text (what training sees for a whole text)."""
    features: set[int] = set()
    for part in scanned_parts(text):
        for chunk in part:
            features |= chunk_features(chunk)
    return features


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@dataclass(slots=True)
class LinearClassifier:
    """A logistic regression over hashed features (see the module docstring). Not frozen so
    that it matches :class:`TextClassifier` (whose ``name`` is a plain attribute); nothing
    changes it after loading."""

    weights: dict[int, float]
    bias: float
    provenance: dict[str, Any]
    name: str = "linear"

    @classmethod
    def load(cls, path: Path | None = None) -> LinearClassifier:
        """The model at ``path``, or the one shipped in the package when None."""
        if path is None:
            resource = resources.files("ztgate.inspection").joinpath(MODEL_RESOURCE)
            raw = resource.read_text(encoding="utf-8")
        else:
            raw = path.read_text(encoding="utf-8")
        return cls.from_json(json.loads(raw))

    @classmethod
    def from_json(cls, data: object) -> LinearClassifier:
        """A model from its JSON document; ModelError when it is not one this code computes
        the features of."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ModelError(f"not a {FORMAT} model")
        if data.get("features") != FEATURE_SPEC:
            raise ModelError("the model was trained with other features than this code computes")
        if data.get("window") != WINDOW_SPEC:
            raise ModelError("the model was calibrated with other windows than this code scores")
        weights, bias = data.get("weights"), data.get("bias")
        if not isinstance(weights, dict) or not isinstance(bias, int | float):
            raise ModelError("a model needs weights and a bias")
        ids, values = weights.get("ids"), weights.get("values")
        if (
            not isinstance(ids, list)
            or not isinstance(values, list)
            or len(ids) != len(values)
            or not all(isinstance(i, int) and 0 <= i < BUCKETS for i in ids)
            or not all(isinstance(v, int | float) for v in values)
        ):
            raise ModelError("weights must be parallel lists of bucket ids and numbers")
        provenance = data.get("provenance")
        return cls(
            weights={int(i): float(v) for i, v in zip(ids, values, strict=True)},
            bias=float(bias),
            provenance=provenance if isinstance(provenance, dict) else {},
        )

    def margin(self, features: Iterable[int]) -> float:
        """Bias plus the weights of the features present: the logit of their score."""
        get = self.weights.get
        return self.bias + math.fsum(get(f, 0.0) for f in features)

    def score(self, text: str) -> float:
        """The highest window's probability that the text is an attack (0.5 is the shipped
        operating point)."""
        get = self.weights.get
        best = -math.inf
        for part in scanned_parts(text):
            chunks = [chunk_features(c) for c in part]
            sums = [math.fsum(get(f, 0.0) for f in c) for c in chunks]
            if len(chunks) < CHUNKS_PER_WINDOW:
                best = max(best, sums[0])
                continue
            for i in range(len(chunks) - CHUNKS_PER_WINDOW + 1):
                first, second = chunks[i], chunks[i + 1]
                extra = math.fsum(get(f, 0.0) for f in second if f not in first)
                best = max(best, sums[i] + extra)
        return _sigmoid(self.bias + best)
