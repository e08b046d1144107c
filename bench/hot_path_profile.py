"""Where one ztgate worker spends its time under load: py-spy samples it while wrk drives it.

The same set-up as ``bench/gateway.py`` (canned nginx upstream, ES256 token, the bench policy,
audit on SQLite): wrk sends ``POST /v1/messages`` at 32 connections while py-spy records the
gateway process (its threads too: the SQLite writer runs on one of its own). Prints the
functions with the most samples on their own (self) and under them (inclusive), and keeps the
raw stacks (``bench/results/profile-*.txt``; ``py-spy record --format flamegraph`` on the same
process draws them).

    bench/run.sh installs wrk and nginx; then
    .venv/bin/python bench/hot_path_profile.py [--seconds 15] [--durability fsync|process]
        [--body json|json-4k-masked]
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import gateway as g

_LINE = re.compile(
    r":\d+\)$"
)  # functions, not lines: "send (ztgate/x.py:12)" -> "send (ztgate/x.py)"


def _top(stacks: Path, count: int) -> tuple[list[tuple[str, int]], list[tuple[str, int]], int]:
    """Self and inclusive sample counts per function from py-spy's collapsed stacks."""
    own: collections.Counter[str] = collections.Counter()
    under: collections.Counter[str] = collections.Counter()
    total = 0
    for line in stacks.read_text().splitlines():
        frames, _, samples = line.rpartition(" ")
        if not frames or not samples.isdigit():
            continue
        n = int(samples)
        total += n
        names = [_LINE.sub(")", frame) for frame in frames.split(";")]
        own[names[-1]] += n
        for name in set(names):
            under[name] += n
    return own.most_common(count), under.most_common(count), total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--durability", choices=["fsync", "process"], default="fsync")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--body", choices=[g.JSON, g.MASKED], default=g.JSON, help="the small or the 4 KB prompt"
    )
    parser.add_argument("--out", type=Path, default=g.BENCH_DIR / "results")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    wrk, nginx = g.tool("wrk"), g.tool("nginx")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ztgate-profile-") as tmp:
        workdir = Path(tmp)
        jwks, token = g.make_identity(workdir)
        upstream, port = g.free_ports(2)
        values = {
            "DIR": str(workdir),
            "WORKERS": "1",
            "JSON_PORT": str(upstream),
            "SSE_PORT": str(g.free_ports(1)[0]),
            "MESSAGE_BODY": g.nginx_string((g.UPSTREAM_DIR / "message.json").read_bytes()),
            "STREAM_BODY": g.nginx_string((g.UPSTREAM_DIR / "stream.sse").read_bytes()),
        }
        canned_conf = g.render(g.UPSTREAM_DIR / "canned.conf.in", values)
        canned = g.start_nginx(nginx, workdir, "canned", canned_conf)
        config = g.ztgate_config(port, upstream, jwks, False, True, args.durability)
        ztgate = g.start_ztgate(workdir, "ztgate", config)
        try:
            g.wait_ready(upstream, canned, workdir / "canned-error.log", "POST")
            g.wait_ready(port, ztgate, workdir / "ztgate.log", "GET")
            script = g.write_wrk_script(workdir, args.body, token)
            g.run_wrk(wrk, port, script, args.connections, 2)  # warm up
            stacks = args.out / f"profile-{args.durability}-{args.body}.txt"
            recorder = subprocess.Popen(
                [py_spy, "record", "--pid", str(ztgate.pid), "--duration", str(args.seconds),
                 "--rate", "200", "--threads", "--format", "raw", "--output", str(stacks)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            result: list[g.WrkResult] = []
            load = threading.Thread(
                target=lambda: result.append(
                    g.run_wrk(wrk, port, script, args.connections, args.seconds)
                )
            )
            load.start()
            load.join()
            recorder.wait(args.seconds + 30)
        finally:
            g.stop(ztgate)
            g.stop(canned)
    own, under, total = _top(stacks, args.top)
    rps = result[0].rps if result else 0.0
    print(
        f"### One worker, c{args.connections}, durability {args.durability}, {args.body}: "
        f"{rps:,.0f} req/s\n"
    )
    print(f"{total} samples at 200 Hz over {args.seconds} s (all threads). Stacks: {stacks}\n")
    print("| self % | function |\n|---:|---|")
    for name, n in own:
        print(f"| {100 * n / total:.1f} | `{name}` |")
    print("\n| inclusive % | function |\n|---:|---|")
    for name, n in under:
        print(f"| {100 * n / total:.1f} | `{name}` |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
