"""What the guardrails cost: on the inspect stage, on the request path, and in time to first
token; each against a baseline measured in the same run (these machines are noisy).

1. **Inspect stage.** ``inspect_request`` on a 4 KB prompt (Faker prose with an email), in
   process: PII and secret detection as written (the built-in pack off, no decoding) against
   the rules-only guardrails (built-in pack, every disguise decoded) and against the rules
   plus the offline classifier. Interleaved round by round; p50 and p90 per call.
2. **Request path.** The real gateway in process (simulator upstream, dev issuer): the same
   4 KB prompt, sequential requests over one keep-alive connection, guardrails off and on
   interleaved. p50/p90 latency, and the streamed answer's time to first text event (TTFT).
3. **Holdback.** The characters a stream holds back with and without the pack: the pack's
   checks must fit inside the holdback the detectors already need.

    .venv/bin/python bench/guardrails_speed.py [--calls 3000] [--requests 1500] [--rounds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from typing import Any

import orjson
from faker import Faker

from gateway_timing import Timings, pct, print_table, time_gateways
from ztgate.config.model import InspectionConfig
from ztgate.core.context import Body, Endpoint, RequestContext
from ztgate.devtools.stack import DEMO_POLICY, LocalStack
from ztgate.inspection.inspector import ScanningInspector, inspector_from_config
from ztgate.inspection.streaming import stream_bounds
from ztgate.wire.fields import body_text
from ztgate.wire.routes import Route

OFF: dict[str, Any] = {"guardrails": {"builtin": False, "max_decode_depth": 0}}
ON: dict[str, Any] = {}
CLASSIFIED: dict[str, Any] = {"guardrails": {"classifier": {"enabled": True}}}


def _prompt(chars: int) -> str:
    fake = Faker()
    Faker.seed(7)
    random.seed(7)
    parts: list[str] = []
    while sum(map(len, parts)) < chars:
        parts.append(fake.paragraph(nb_sentences=5))
    text = "\n\n".join(parts)[: chars - 40]
    return text + f" Mail {fake.email()} today."


def _context(payload: dict[str, Any]) -> RequestContext:
    ctx = RequestContext("req_bench", "POST", "/v1/messages", b"", [], None, "http")
    ctx.route = Route(Endpoint.MESSAGES, "create", Body.JSON)
    ctx.payload = payload
    ctx.texts = body_text(payload)
    return ctx


def _inspector(settings: dict[str, Any]) -> ScanningInspector:
    inspector = inspector_from_config(InspectionConfig.model_validate(settings))
    assert isinstance(inspector, ScanningInspector)
    return inspector


def _stage(calls: int, rounds: int) -> dict[str, list[float]]:
    payload = {"model": "m", "messages": [{"role": "user", "content": _prompt(4096)}]}
    inspectors = {
        "PII and secrets only": _inspector(OFF),
        "rules-only guardrails": _inspector(ON),
        "rules + classifier": _inspector(CLASSIFIED),
    }
    timings: dict[str, list[float]] = {name: [] for name in inspectors}
    for inspector in inspectors.values():  # warm caches and compiled scanners
        for _ in range(50):
            inspector.inspect_request(_context(payload))
    per_round = calls // rounds
    for _ in range(rounds):
        for name, inspector in inspectors.items():
            for _ in range(per_round):
                ctx = _context(payload)
                started = time.perf_counter()
                inspector.inspect_request(ctx)
                timings[name].append(time.perf_counter() - started)
    return timings


def _policy(guardrails: bool) -> dict[str, Any]:
    """The demo policy; without its guardrail rule and masks when the pack is off."""
    policy: dict[str, Any] = orjson.loads(orjson.dumps(DEMO_POLICY))
    if not guardrails:
        policy["rules"] = [r for r in policy["rules"] if r["id"] != "guardrails"]
        for rule in policy["rules"]:
            detectors = rule.get("mask", {}).get("detectors", {})
            for name in [n for n in detectors if n.startswith("exfiltration.")]:
                del detectors[name]
    return policy


async def _request_path(requests: int, rounds: int) -> dict[str, Timings]:
    prompt = _prompt(4096)
    reply = _prompt(2048)
    quiet = {"level": "warning"}
    stacks = {
        "guardrails off": await LocalStack.start(
            policy=_policy(False), inspection=OFF, logging=quiet
        ),
        "guardrails on": await LocalStack.start(policy=_policy(True), inspection=ON, logging=quiet),
    }
    return await time_gateways(stacks, prompt=prompt, reply=reply, requests=requests, rounds=rounds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()

    stage = _stage(args.calls, args.rounds)
    base = pct(stage["PII and secrets only"], 50)
    print("### Inspect stage, 4 KB prompt (in process)\n")
    print("| inspection | p50 ms | p90 ms | p50 added |")
    print("|---|---:|---:|---:|")
    for name, values in stage.items():
        p50 = pct(values, 50)
        print(f"| {name} | {p50:.3f} | {pct(values, 90):.3f} | {p50 - base:+.3f} |")

    results = asyncio.run(_request_path(args.requests, args.rounds))
    print("\n### Request path: guardrails on vs off (4 KB prompt)\n")
    print_table(results)
    off, on = results["guardrails off"], results["guardrails on"]
    print(
        f"\nguardrails on - off: p50 {pct(on.latency, 50) - pct(off.latency, 50):+.3f} ms, "
        f"stream TTFT p50 {pct(on.ttft, 50) - pct(off.ttft, 50):+.3f} ms"
    )

    holdbacks = {
        name: stream_bounds(_inspector(settings).guardrails.deep().scanner, 128)
        for name, settings in (("off", OFF), ("on", ON))
    }
    print("\n### What a stream holds back (holdback 128)\n")
    for name, bounds in holdbacks.items():
        print(
            f"guardrails {name}: holdback {bounds.holdback}, context {bounds.context}, "
            f"long-run reach {bounds.run_reach}, anchors {len(bounds.anchors)}"
        )


if __name__ == "__main__":
    main()
