"""What the audit costs on the request path: the same gateway with and without it, one run.

- audit off: the record stage replaced by the bare access log (what ztgate did before the
  audit existed; ztgate itself has no such mode: no audit, no access);
- audit on: the request event committed before upstream and the outcome after, recordings off;
- audit and recordings, then sealed recordings (AES-GCM).

Every gateway runs in this process over the upstream simulator, SQLite (WAL, synchronous=FULL)
in a scratch folder, or ``--postgres URL``. Sequential requests (4 KB prompt), and streamed
2 KB answers: time to the first delta and to the end of the stream (streams must not slow).

    .venv/bin/python bench/audit_path.py [--requests 2000] [--rounds 4] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import os
import random
import string
from typing import Any

from gateway_timing import pct, print_table, time_gateways
from ztgate.audit.access_log import AccessLog
from ztgate.audit.signing import SigningKey
from ztgate.devtools.stack import LocalStack


def _text(rng: random.Random, chars: int) -> str:
    words = ["".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 9)))]
    while sum(len(w) + 1 for w in words) < chars:
        words.append("".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 9))))
    return " ".join(words)[:chars]


async def _start(recordings: dict[str, Any], postgres: str | None) -> LocalStack:
    sections: dict[str, Any] = {"logging": {"level": "warning"}}
    audit: dict[str, Any] = {"recordings": recordings}
    if postgres:
        sections["store"] = {"url": postgres}
        audit["signing_key"] = SigningKey.generate().private_pem().decode()
    sections["audit"] = audit
    return await LocalStack.start(**sections)


async def _run(requests: int, rounds: int, postgres: str | None) -> None:
    rng = random.Random(5)
    key = base64.b64encode(os.urandom(32)).decode()
    stacks = {
        "audit off (access log only)": await _start({"enabled": False}, postgres),
        "audit on, recordings off": await _start({"enabled": False}, postgres),
        "audit on, recordings": await _start({"enabled": True}, postgres),
        "audit on, sealed recordings": await _start(
            {"enabled": True, "encryption_key": key}, postgres
        ),
    }
    # The baseline: the same pipeline with the record stage as it was before the audit.
    pipeline = stacks["audit off (access log only)"].gateway._runtime.pipeline
    pipeline._stages = dataclasses.replace(pipeline._stages, recorder=AccessLog())
    results = await time_gateways(
        stacks,
        prompt=_text(rng, 4096),
        reply=_text(rng, 2048),
        requests=requests,
        rounds=rounds,
    )
    store = "PostgreSQL" if postgres else "SQLite"
    print(f"### The audit on the request path ({store}, sequential requests)\n")
    print_table(results)
    base = results["audit off (access log only)"]
    print()
    for name, timing in results.items():
        print(
            f"- {name}: p50 {pct(timing.latency, 50) - pct(base.latency, 50):+.3f} ms, "
            f"stream TTFT {pct(timing.ttft, 50) - pct(base.ttft, 50):+.3f} ms, "
            f"whole stream {pct(timing.stream, 50) - pct(base.stream, 50):+.3f} ms over audit off"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--postgres", help="a PostgreSQL URL (an empty database) instead of SQLite")
    args = parser.parse_args()
    asyncio.run(_run(args.requests, args.rounds, args.postgres))


if __name__ == "__main__":
    main()
