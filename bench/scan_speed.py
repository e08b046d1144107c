"""Whole-text scan throughput of the detector catalogue, per core, against a Python ``re`` baseline.

Builds a mixed corpus (default 10 MB) from a fixed seed: Faker prose with synthetic PII and
secrets planted in it (one item per ~4 KB by default) and as many near misses (order numbers,
versions, dates, hashes, UUIDs, code). Then, in one run and on one core:

- ztgate's Scanner with the full catalogue (Hyperscan prefilter + bounded ``re`` confirmation);
- the same Scanner on its pure-``re`` fallback path (what runs without a Hyperscan wheel);
- the baseline: one ``re.finditer`` pass per detector over the whole text, plus validators;
- ztgate again over corpora of other densities: throughput depends on how many candidates
  need a Python-side confirmation, so one number without its density would mislead.

Prints Markdown tables (MB/s are 10^6 bytes of UTF-8 per second, best of ``--rounds``).

    .venv/bin/python bench/scan_speed.py [--mb 10] [--every 4000] [--sweep 0,16000,...]
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import re
import string
import time
from collections import Counter
from collections.abc import Callable

from faker import Faker

from ztgate.detectors.catalogue import catalogue
from ztgate.detectors.patterns import Detector, python_flags
from ztgate.inspection.scanner import Scanner

_B62 = string.ascii_letters + string.digits
_B64 = _B62 + "+/"


def _rand(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _luhn_complete(rng: random.Random, prefix: str, length: int) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


def _card(rng: random.Random) -> str:
    prefix, length = rng.choice([("4", 16), ("51", 16), ("2221", 16), ("37", 15), ("6011", 16)])
    digits = _luhn_complete(rng, prefix, length)
    if rng.random() < 0.5:
        return digits
    if length == 15:
        return f"{digits[:4]} {digits[4:10]} {digits[10:]}"
    return " ".join(digits[i : i + 4] for i in range(0, length, 4))


def _jwt(rng: random.Random) -> str:
    def part(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    claims = {"sub": _rand(rng, _B62, 12), "iat": rng.randrange(1_600_000_000, 1_800_000_000)}
    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.{_rand(rng, _B62 + '-_', 43)}"


def _pem(rng: random.Random) -> str:
    lines = [_rand(rng, _B64, 64) for _ in range(12)]
    return (
        "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(lines) + "\n-----END RSA PRIVATE KEY-----"
    )


def _sensitive(fake: Faker, rng: random.Random) -> Callable[[], str]:
    makers: list[Callable[[], str]] = [
        lambda: f"You can reach me at {fake.email()}.",
        lambda: f"Call {fake.phone_number()} after five.",
        lambda: f"Card {_card(rng)} on file.",
        lambda: f"Wire it to {fake.iban()} please.",
        lambda: f"SSN {fake.ssn()} was on the form.",
        lambda: f"The server at {fake.ipv4()} answered; so did {fake.ipv6()}.",
        lambda: f"Patient born on {fake.date_of_birth().strftime('%d/%m/%Y')} in {fake.city()}.",
        lambda: f"export AWS_ACCESS_KEY_ID=AKIA{_rand(rng, string.ascii_uppercase + '234567', 16)}",
        lambda: f"token ghp_{_rand(rng, _B62, 36)} leaked",
        lambda: f"ANTHROPIC_API_KEY=sk-ant-api03-{_rand(rng, _B62 + '-_', 93)}AA",
        lambda: f"Authorization: Bearer {_jwt(rng)}",
        lambda: f"db = postgres://app:{_rand(rng, _B62, 14)}@db.internal:5432/app",
        lambda: f'password = "{_rand(rng, _B62 + "#!%", 16)}"',
        lambda: (
            f"slack xoxb-{rng.randrange(10**11)}-{rng.randrange(10**12)}-{_rand(rng, _B62, 24)}"
        ),
        lambda: f"key:\n{_pem(rng)}\n",
    ]
    return lambda: rng.choice(makers)()


def _near_miss(fake: Faker, rng: random.Random) -> Callable[[], str]:
    makers: list[Callable[[], str]] = [
        lambda: f"Order {rng.randrange(10**9, 10**12)} shipped on {fake.date()}.",
        lambda: f"Upgrade to version {rng.randrange(9)}.{rng.randrange(30)}.{rng.randrange(99)}.",
        lambda: f"Commit {_rand(rng, '0123456789abcdef', 40)} fixed it.",
        lambda: f"Request id {fake.uuid4()} took {rng.randrange(999)} ms.",
        lambda: "for token in tokens: total_tokens += len(token)",
        lambda: (
            f"Meeting at {rng.randrange(24):02d}:{rng.randrange(60):02d}, room {rng.randrange(99)}."
        ),
    ]
    return lambda: rng.choice(makers)()


def build_corpus(megabytes: float, seed: int, every: int) -> tuple[str, Counter[str]]:
    """Faker prose with, on average, one planted PII/secret item and one near miss per
    ``every`` bytes (0: prose only)."""
    rng = random.Random(seed)
    fake = Faker(["en_US", "en_GB", "de_DE", "fr_FR"])
    Faker.seed(seed)
    pool = [fake.paragraph(nb_sentences=rng.randrange(2, 6)) for _ in range(1500)]
    pool += [fake.text(max_nb_chars=400) for _ in range(500)]
    sensitive, near_miss = _sensitive(fake, rng), _near_miss(fake, rng)
    target = int(megabytes * 1_000_000)
    parts: list[str] = []
    size = 0
    next_planted = rng.expovariate(1 / every) if every else float("inf")
    next_miss = rng.expovariate(1 / every) if every else float("inf")
    kinds: Counter[str] = Counter()
    while size < target:
        if size >= next_planted:
            piece = sensitive()
            kinds["sensitive"] += 1
            next_planted += rng.expovariate(1 / every)
        elif size >= next_miss:
            piece = near_miss()
            kinds["near_miss"] += 1
            next_miss += rng.expovariate(1 / every)
        else:
            piece = rng.choice(pool)
        parts.append(piece)
        size += len(piece.encode()) + 1
    return "\n".join(parts), kinds


def baseline(detectors: list[Detector]) -> Callable[[str], int]:
    """One ``finditer`` pass per detector over the whole text, validators applied."""
    compiled = [(re.compile(d.pattern, python_flags(d.flags)), d.validator) for d in detectors]

    def scan(text: str) -> int:
        found = 0
        for regex, validator in compiled:
            for match in regex.finditer(text):
                if validator is None or validator(match.group()):
                    found += 1
        return found

    return scan


def _best(fn: Callable[[str], object], text: str, rounds: int) -> tuple[float, object]:
    best = float("inf")
    result: object = None
    for _ in range(rounds):
        start = time.perf_counter()
        result = fn(text)
        best = min(best, time.perf_counter() - start)
    return best, result


def _row(name: str, seconds: float, megabytes: float, count: int, base: float) -> str:
    speedup = f"{base / seconds:.1f}x" if base else "-"
    return f"| {name} | {seconds:.3f} | {megabytes / seconds:.1f} | {count:,} | {speedup} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--mb", type=float, default=10.0, help="corpus size in MB (10)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds, best kept (3)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--every",
        type=int,
        default=4000,
        help="one planted item and one near miss per this many bytes on average (4000)",
    )
    parser.add_argument(
        "--sweep",
        default="0,16000,8000,4000,1000,250",
        help="--every values for the density table, comma-separated ('' to skip)",
    )
    parser.add_argument("--skip-fallback", action="store_true", help="skip the pure-re path")
    args = parser.parse_args()

    detectors = catalogue()
    scanner = Scanner(detectors)
    started = time.perf_counter()
    text, kinds = build_corpus(args.mb, args.seed, args.every)
    built = time.perf_counter() - started
    megabytes = len(text.encode()) / 1e6

    seconds, findings = _best(scanner.scan, text, args.rounds)
    assert isinstance(findings, list)
    rows = [(f"ztgate Scanner ({scanner.backend})", seconds, len(findings))]
    if not args.skip_fallback and scanner.backend == "hyperscan":
        fallback = Scanner(detectors, backend="re")
        seconds_re, findings_re = _best(fallback.scan, text, 1)
        assert findings_re == findings, "the two backends disagree"
        rows.append(("ztgate Scanner, pure-re fallback", seconds_re, len(findings)))
    seconds_base, found_base = _best(baseline(detectors), text, 1)
    assert isinstance(found_base, int)
    rows.append(("baseline: Python re, one finditer pass per detector", seconds_base, found_base))

    print(f"## Whole-text scan throughput, {len(detectors)} detectors, one core\n")
    print(
        f"Corpus: {megabytes:.1f} MB of Faker prose ({len(text):,} characters, seed {args.seed}, "
        f"built in {built:.1f} s) with {kinds['sensitive']:,} planted PII/secret items and "
        f"{kinds['near_miss']:,} near misses (one of each per ~{args.every:,} bytes).\n"
    )
    print("| engine | seconds | MB/s | findings | speed-up vs baseline |")
    print("|---|---:|---:|---:|---:|")
    for name, secs, count in rows:
        print(_row(name, secs, megabytes, count, seconds_base))
    met = megabytes / rows[0][1] >= 100
    print(f"\nTarget >= 100 MB/s per core on this corpus: {'met' if met else 'NOT met'}.\n")
    by_detector = Counter(f.detector for f in findings)
    print("Findings by detector: " + ", ".join(f"{k} {n}" for k, n in by_detector.most_common()))

    sweep = [int(x) for x in args.sweep.split(",") if x.strip()]
    if not sweep:
        return
    print(f"\n### ztgate ({scanner.backend}) by density of sensitive text, {args.mb:g} MB each\n")
    print("Every planted item or near miss costs a bounded `re` confirmation and a validator in")
    print("Python (roughly 10-60 us); text without candidates runs at Hyperscan speed.\n")
    print("| one item + one near miss per | candidates per MB | seconds | MB/s | findings |")
    print("|---|---:|---:|---:|---:|")
    for every in sweep:
        sample, sample_kinds = build_corpus(args.mb, args.seed, every)
        sample_mb = len(sample.encode()) / 1e6
        secs, sample_findings = _best(scanner.scan, sample, args.rounds)
        assert isinstance(sample_findings, list)
        per_mb = (sample_kinds["sensitive"] + sample_kinds["near_miss"]) / sample_mb
        label = f"{every:,} bytes" if every else "never (prose only)"
        print(
            f"| {label} | {per_mb:,.0f} | {secs:.3f} | {sample_mb / secs:.1f} | "
            f"{len(sample_findings):,} |"
        )


if __name__ == "__main__":
    main()
