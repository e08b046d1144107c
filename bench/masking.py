"""What masking costs: per streamed delta, on the request path, and in time to first token.

All in one run, each against a baseline measured in the same run (these machines are noisy):

1. **Per delta.** A long answer (Faker prose with a planted key, email and card every ~2 KB)
   streamed as ``text_delta`` events of about three words, through the response filter with
   the full catalogue (mask, and restore when the request had pseudonyms), against the same
   events through a filter that only parses and re-serialises them (the floor any rewriting
   filter pays). Reported as microseconds per delta.
2. **Request path.** The real gateway in process (simulator upstream, dev issuer) with a
   policy that masks, against the same gateway with a policy that does not; a 4 KB prompt
   holding an email and a key; sequential requests over one keep-alive connection, the two
   gateways interleaved round by round. Reported as p50 and p90 latency and their difference.
3. **Time to first token.** The same two gateways, streamed answers of ~2 KB: time from
   sending the request to the first ``content_block_delta`` byte.

    .venv/bin/python bench/masking.py [--deltas 20000] [--requests 2000] [--rounds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import string
import time
from collections.abc import Callable
from typing import Any

import orjson
from faker import Faker

from gateway_timing import Timings, pct, print_table, time_gateways
from ztgate.core.context import RequestContext
from ztgate.core.maskplan import MaskPlan
from ztgate.core.sse import SSEEvent, parse_event
from ztgate.detectors.catalogue import catalogue
from ztgate.devtools.stack import DEMO_POLICY, LocalStack
from ztgate.inspection.pseudonyms import PseudonymVault
from ztgate.inspection.response import ResponseProtector
from ztgate.inspection.scanner import Scanner

PLAN = MaskPlan({"email": "pseudonymize", "payment_card": "redact"}, {"secret": "redact"})


def _key(rng: random.Random) -> str:
    alphabet = string.ascii_letters + string.digits + "-_"
    return "sk-ant-api03-" + "".join(rng.choice(alphabet) for _ in range(93)) + "AA"


def _prose(rng: random.Random, fake: Faker, chars: int, every: int) -> str:
    parts: list[str] = []
    size = 0
    since = 0
    while size < chars:
        sentence = fake.sentence(nb_words=12) + " "
        if since >= every:
            sentence += f"Mail {fake.email()} the key {_key(rng)}, card 4111 1111 1111 1111. "
            since = 0
        parts.append(sentence)
        size += len(sentence)
        since += len(sentence)
    return "".join(parts)[:chars]


def _delta_events(text: str) -> list[SSEEvent]:
    words = text.split(" ")
    chunks = [" ".join(words[i : i + 3]) + " " for i in range(0, len(words), 3)]
    start = {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    events = [parse_event(b"event: content_block_start\ndata: " + orjson.dumps(start) + b"\n\n")]
    for chunk in chunks:
        data = {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": chunk},
        }
        events.append(
            parse_event(b"event: content_block_delta\ndata: " + orjson.dumps(data) + b"\n\n")
        )
    stop = {"type": "content_block_stop", "index": 0}
    events.append(parse_event(b"event: content_block_stop\ndata: " + orjson.dumps(stop) + b"\n\n"))
    return events


class _Reserialise:
    """The floor: parse each event's JSON and write it again, as any rewriting filter must."""

    def event(self, event: SSEEvent) -> bytes:
        if event.event != "content_block_delta":
            return event.raw
        return (
            b"event: content_block_delta\ndata: " + orjson.dumps(orjson.loads(event.data)) + b"\n\n"
        )


def _per_delta(deltas: int, rounds: int) -> list[tuple[str, float]]:
    rng = random.Random(7)
    fake = Faker()
    Faker.seed(7)
    text = _prose(rng, fake, deltas * 20, 2000)
    events = _delta_events(text)
    n = sum(1 for e in events if e.event == "content_block_delta")
    scanner = Scanner(catalogue())
    vault = PseudonymVault()
    vault.pseudonym("EMAIL", "ana@example.com")

    def ctx() -> RequestContext:
        c = RequestContext("bench", "POST", "/v1/messages", b"", [], None, "http")
        c.upstream_status = 200
        return c

    makers: list[tuple[str, Callable[[], Any]]] = [
        ("baseline: parse and re-serialise each delta", _Reserialise),
        (
            "ztgate: mask (128-char window)",
            lambda: ResponseProtector(
                ctx(), scanner, PLAN, vault=None, holdback=128, hash_key=b"k"
            ),
        ),
        (
            "ztgate: mask and restore pseudonyms",
            lambda: ResponseProtector(
                ctx(), scanner, PLAN, vault=vault, holdback=128, hash_key=b"k"
            ),
        ),
    ]
    results = []
    for name, make in makers:
        best = float("inf")
        for _ in range(rounds):
            filt = make()
            t0 = time.perf_counter()
            for e in events:
                filt.event(e)
            best = min(best, time.perf_counter() - t0)
        results.append((name, best / n * 1e6))
    return results


def _policy(mask: bool) -> dict[str, Any]:
    """The demo policy, its allow rule masking (cards redacted here, not blocked) or not."""
    policy = orjson.loads(orjson.dumps(DEMO_POLICY))
    for rule in policy["rules"]:
        rule.pop("mask", None)
        if mask and rule["effect"] == "allow":
            rule["mask"] = {
                "categories": ["secret"],
                "action": "redact",
                "detectors": {"email": "pseudonymize", "payment_card": "redact"},
            }
    return policy


async def _request_path(requests: int, rounds: int) -> dict[str, Timings]:
    fake = Faker()
    Faker.seed(11)
    rng = random.Random(11)
    prompt = _prose(rng, fake, 4096, 1500)
    reply = _prose(rng, fake, 2048, 900)
    stacks = {
        "masking off": await LocalStack.start(policy=_policy(False), logging={"level": "warning"}),
        "masking on": await LocalStack.start(policy=_policy(True), logging={"level": "warning"}),
    }
    return await time_gateways(stacks, prompt=prompt, reply=reply, requests=requests, rounds=rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deltas", type=int, default=20000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()

    per_delta = _per_delta(args.deltas, 3)
    print("### Streaming: cost per text_delta (full catalogue, best of 3)\n")
    print("| filter | µs per delta | vs baseline |")
    print("|---|---:|---:|")
    base = per_delta[0][1]
    for name, micros in per_delta:
        print(f"| {name} | {micros:.1f} | {micros / base:.1f}x |")

    results = asyncio.run(_request_path(args.requests, args.rounds))
    print("\n### Request path: masking on vs off (4 KB prompt with an email and a key)\n")
    print_table(results)
    off, on = results["masking off"], results["masking on"]
    print(
        f"\nmasking on - off: p50 {pct(on.latency, 50) - pct(off.latency, 50):+.3f} ms, "
        f"stream TTFT p50 {pct(on.ttft, 50) - pct(off.ttft, 50):+.3f} ms"
    )


if __name__ == "__main__":
    main()
