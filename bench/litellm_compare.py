"""ztgate beside LiteLLM's proxy, the peer most teams try first, in the same run.

Both get the small ``POST /v1/messages`` of ``bench/gateway.py`` and forward it to the same
canned nginx upstream; wrk drives each at 32 connections, rounds interleaved, best kept. ztgate
runs as ``bench/gateway.py`` runs it (one worker, token verification, the bench policy with its
mask obligation, inspection, the audit on SQLite); LiteLLM runs one worker, no database, a
master key (it refuses to start without one), its Anthropic ``/v1/messages`` route. LiteLLM is
installed with pip into ``bench/.litellm`` the first time (it is not a ztgate dependency).

    bench/run.sh installs wrk and nginx; then
    .venv/bin/python bench/litellm_compare.py [--rounds 2] [--duration 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gateway as g

VENV = g.BENCH_DIR / ".litellm"
MASTER_KEY = "sk-bench-master-key-0123456789abcdef"
TARGET = 100.0  # ztgate's c32 throughput at least this many times LiteLLM's


def litellm() -> Path:
    """LiteLLM's proxy command, installed into its own virtualenv when missing."""
    command = VENV / "bin" / "litellm"
    if not command.exists():
        g.log(f"bench: installing LiteLLM's proxy into {VENV} (a few minutes, once)")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [str(VENV / "bin" / "pip"), "install", "--quiet", "litellm[proxy]"], check=True
        )
    return command


def litellm_config(upstream: int) -> str:
    return (
        "model_list:\n"
        "  - model_name: claude-haiku-5-5\n"
        "    litellm_params:\n"
        "      model: anthropic/claude-haiku-5-5\n"
        f"      api_base: http://127.0.0.1:{upstream}\n"
        f"      api_key: {g.UPSTREAM_KEY}\n"
    )


def wait_answering(port: int, proc: subprocess.Popen[bytes], log: Path, token: str) -> None:
    """Until one real request is answered (LiteLLM has no readiness endpoint of ztgate's kind)."""
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise g.BenchError(f"exited with {proc.returncode} during start-up:\n{g.tail(log)}")
        try:
            g.check_answer("LiteLLM", port, g.JSON, token)
            return
        except (OSError, g.BenchError) as exc:
            if time.monotonic() > deadline:
                raise g.BenchError(f"LiteLLM never answered ({exc}):\n{g.tail(log)}") from exc
        time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (5)")
    args = parser.parse_args()
    wrk, nginx = g.tool("wrk"), g.tool("nginx")
    command = litellm()
    started: list[subprocess.Popen[bytes]] = []
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="ztgate-litellm-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)
        try:
            jwks, token = g.make_identity(workdir)
            upstream, sse, z_port, l_port = g.free_ports(4)
            values = {
                "DIR": str(workdir),
                "WORKERS": "1",
                "JSON_PORT": str(upstream),
                "SSE_PORT": str(sse),
                "MESSAGE_BODY": g.nginx_string((g.UPSTREAM_DIR / "message.json").read_bytes()),
                "STREAM_BODY": g.nginx_string((g.UPSTREAM_DIR / "stream.sse").read_bytes()),
            }
            conf = g.render(g.UPSTREAM_DIR / "canned.conf.in", values)
            started.append(g.start_nginx(nginx, workdir, "canned", conf))
            started.append(
                g.start_ztgate(workdir, "ztgate", g.ztgate_config(z_port, upstream, jwks, False))
            )
            config = workdir / "litellm.yaml"
            config.write_text(litellm_config(upstream))
            env = {**os.environ, "LITELLM_MASTER_KEY": MASTER_KEY, "LITELLM_LOG": "ERROR"}
            log_path = workdir / "litellm.log"
            serve = [str(command), "--config", str(config), "--host", "127.0.0.1"]
            serve += ["--port", str(l_port), "--num_workers", "1"]
            with log_path.open("ab") as sink:
                started.append(
                    subprocess.Popen(
                        serve, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                        cwd=workdir, env=env, start_new_session=True,
                    )
                )  # fmt: skip
            g.wait_ready(z_port, started[1], workdir / "ztgate.log", "GET")
            wait_answering(l_port, started[2], log_path, MASTER_KEY)
            scripts = {
                "ztgate": g.write_wrk_script(workdir, g.JSON, token),
                "LiteLLM": _litellm_script(workdir),
            }
            ports = {"ztgate": z_port, "LiteLLM": l_port}
            for round_no in range(args.rounds):
                order = list(ports) if round_no % 2 == 0 else list(reversed(ports))
                for name in order:
                    g.run_wrk(wrk, ports[name], scripts[name], 32, 1)  # warm-up
                    result = g.run_wrk(wrk, ports[name], scripts[name], 32, args.duration)
                    g.log(f"[round {round_no + 1}] {name}: {result.rps:,.0f} req/s, "
                          f"p50 {result.p50_ms:.3f} ms, errors {result.failed}")  # fmt: skip
                    if result.failed:
                        raise g.BenchError(f"{name}: {result.errors}")
                    best[name] = max(best.get(name, 0.0), result.rps)
        finally:
            for proc in reversed(started):
                g.stop(proc)
    ratio = best["ztgate"] / best["LiteLLM"]
    print(f"Command: `.venv/bin/python bench/litellm_compare.py --rounds {args.rounds}`\n")
    print("| proxy | c32 req/s (best of rounds) |\n|---|---:|")
    for name, rps in best.items():
        print(f"| {name} | {rps:,.0f} |")
    verdict = "met" if ratio >= TARGET else "**missed**"
    print(f"\nztgate / LiteLLM = {ratio:.1f}x (target >= {TARGET:.0f}x: {verdict})")
    return 0


def _litellm_script(workdir: Path) -> Path:
    """The same request with LiteLLM's master key instead of a workload token."""
    return g.write_wrk_script(workdir, g.JSON, MASTER_KEY, name="litellm")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except g.BenchError as exc:
        g.log(f"bench: {exc}")
        sys.exit(1)
