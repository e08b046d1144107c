"""A whole local deployment in one event loop: dev issuer, upstream simulator and gateway.

``ztgate demo`` runs it for people; the test suite runs it for the end-to-end tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
import yaml

from ztgate.config import GatewayConfig, validate_config
from ztgate.datapath.app import Gateway
from ztgate.datapath.server import in_process_server
from ztgate.devtools.issuer import DEMO_AUDIENCE, DevIssuer
from ztgate.devtools.simulator import UpstreamSimulator

SIMULATOR_KEY = "sk-ant-sim-upstream-key"


# The embedded demo policy: every verified caller may use any model, tool and skill, except
# computer use, which shows what a deny looks like, and Opus, which waits for someone in the
# "leads" group to approve it. Secrets are redacted, email addresses
# pseudonymized (restored in the answer) and payment cards refused, in both directions.
DEMO_POLICY: dict[str, Any] = {
    "default": "deny",
    "rules": [
        {
            "id": "verified-callers",
            "when": {"tools": ["*"], "skills": ["*"], "mcp_servers": ["*"]},
            "effect": "allow",
            "mask": {
                "categories": ["secret"],
                "action": "redact",
                "detectors": {
                    "email": "pseudonymize",
                    "payment_card": "block",
                    # links in an answer built to carry data out (docs/guardrails.md)
                    "exfiltration.image_placeholder": "redact",
                    "exfiltration.image_data_query": "redact",
                },
            },
        },
        {
            "id": "guardrails",
            "when": {
                "guardrails": {
                    "any": [
                        "prompt_injection",
                        "jailbreak",
                        "prompt_extraction",
                        "indirect_injection",
                        "smuggling",
                    ],
                    "score_at_least": 0.8,
                }
            },
            "effect": "deny",
            "message": "the guardrails stopped this request",
        },
        {
            "id": "no-computer-use",
            "when": {"tools": ["computer_*"]},
            "effect": "deny",
            "message": "computer use is not allowed here",
        },
        {
            # Scoped to a group: Claude Code asks for Opus by default, and the demo's own
            # users (and anyone trying Claude Code through it) should not wait for a lead.
            "id": "contractors-opus-needs-a-lead",
            "when": {"groups": ["contractors"], "models": ["claude-opus-*"]},
            "effect": "review",
            "message": "a contractor's Opus call needs a lead's approval",
            "review": {"approvers": ["leads"], "expires": "1h"},
        },
    ],
}


def demo_config(
    issuer_url: str, upstream_url: str, *, listen: str = "127.0.0.1:0", **sections: Any
) -> GatewayConfig:
    """The embedded defaults: one loopback issuer, the simulator upstream, the demo policy."""
    data: dict[str, Any] = {
        "listen": listen,
        "upstream": {"url": upstream_url, "api_key": SIMULATOR_KEY, "timeout": "30s"},
        "identity": {
            "issuers": [{"name": "demo", "issuer": issuer_url, "audiences": [DEMO_AUDIENCE]}]
        },
        "server": {"graceful_shutdown": "5s"},
        "policy": DEMO_POLICY,
    }
    for key, value in sections.items():
        merge = isinstance(value, dict) and key != "policy"
        data[key] = {**data.get(key, {}), **value} if merge else value
    return validate_config(data, source="embedded demo config")


@dataclass
class LocalStack:
    issuer: DevIssuer
    simulator: UpstreamSimulator
    config: GatewayConfig
    server: uvicorn.Server
    task: asyncio.Task[None]
    gateway_url: str

    scratch: str | None = None  # a folder of its own for the audit store, removed at stop

    @classmethod
    async def start(
        cls,
        *,
        listen: str = "127.0.0.1:0",
        simulator_tls: tuple[str, str] | None = None,
        **sections: Any,
    ) -> LocalStack:
        """Without a ``store`` section the audit store is a fresh SQLite file in a scratch
        folder, removed at stop."""
        scratch = None
        if "store" not in sections:
            scratch = tempfile.mkdtemp(prefix="ztgate-stack-")
            sections["store"] = {"url": f"sqlite:///{scratch}/audit.db"}
        issuer = DevIssuer()
        await issuer.start()
        simulator = UpstreamSimulator(api_key=SIMULATOR_KEY)
        await simulator.start(tls=simulator_tls)
        config = demo_config(issuer.base_url, simulator.base_url, listen=listen, **sections)
        server, sock = in_process_server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the gateway stopped during start-up")
            await asyncio.sleep(0.01)
        host, port = sock.getsockname()[:2]
        scheme = "https" if config.server.tls is not None else "http"
        return cls(issuer, simulator, config, server, task, f"{scheme}://{host}:{port}", scratch)

    @property
    def gateway(self) -> Gateway:
        app = self.server.config.app
        assert isinstance(app, Gateway)
        return app

    def write_config(self, path: Path) -> None:
        """This stack's configuration as a file, for the commands that read its audit store
        (``ztgate audit``, ``sessions``, ``replay``). The upstream key is left to the env;
        reviews (whose webhook and Slack secrets a file must not hold) are no business of
        those commands."""
        config = self.config.model_dump(mode="json", exclude_defaults=True)
        config["upstream"]["api_key"] = "${ZTGATE_DEMO_UPSTREAM_KEY:-unused}"
        config.pop("reviews", None)
        path.write_text(
            "# The settings of a local ztgate stack (`ztgate demo`, tests), for the commands\n"
            "# that read its audit store.\n" + yaml.safe_dump(config, sort_keys=False)
        )

    def token(self, subject: str = "demo/alice", **kwargs: Any) -> str:
        return self.issuer.mint(subject, **kwargs)

    async def stop(self) -> None:
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.simulator.stop()
        await self.issuer.stop()
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
