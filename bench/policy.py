"""Policy evaluation cost: one decision against a realistic 500-rule policy.

Every request ztgate serves is decided on the hot path, so a decision must cost microseconds,
not a scan of the whole policy. This measures ``Policy.decide`` (rules indexed by endpoint and
group, globs precompiled) per decision, p50 and p99, for a few representative requests built
the way the gateway builds them (``from_context`` over a parsed request), and in the same run
the same policy decided by brute force (every rule tried, no index) as the baseline. Both give
the same decisions (checked). Target: p50 under 20 us per decision.

Run: ``.venv/bin/python bench/policy.py`` (``--iterations``, ``--check`` to exit 1 on a miss).
"""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ztgate.core.context import RequestContext
from ztgate.core.decision import Decision, PolicyRequest
from ztgate.core.identity import Identity
from ztgate.policy.document import PolicyDocument
from ztgate.policy.engine import CompiledRule, Policy
from ztgate.policy.request import from_context
from ztgate.wire.routes import match_route

TARGET_P50_US = 20.0
RULES = 500
TEAMS = 120  # groups with their own rules: most of the policy, and what the index skips
ORG_DENIES = 4
NAMED_WORKLOADS = 3  # each: one principal-glob rule and one claims rule
MODEL_GLOBS = ("claude-haiku-*", "claude-sonnet-*", "claude-opus-4-*", "claude-*-4-5*")
TOOL_GRANTS = ("code_execution_*", "web_search_*", "lookup_*", "search_tickets", "text_editor_*")
SKILLS_BETA, CODE_BETA = "skills-2025-10-02", "code-execution-2025-08-25"


def build_document(seed: int = 7) -> dict[str, Any]:
    """A 500-rule policy: the issue's ci/data/platform rules, four or so rules per team group
    (allow with model globs and tool grants, deny with tool triggers, batches, review), and a
    dozen organisation-wide rules (denies with tool triggers, principal globs, claims, token
    scope) that every request has to consider."""
    rng = random.Random(seed)
    rules: list[dict[str, Any]] = [
        {
            "id": "ci-summaries",
            "when": {
                "groups": ["ci"],
                "endpoints": ["messages", "count_tokens"],
                "models": ["claude-haiku-*"],
            },
            "effect": "allow",
            "limits": {"max_tokens": 2048, "requests_per_minute": 60, "tokens_per_day": 2_000_000},
        },
        {
            "id": "no-shell-for-ci",
            "when": {"groups": ["ci"], "tools": ["bash_*", "Bash", "computer_*"]},
            "effect": "deny",
            "message": "CI identities may not use shell or computer tools",
        },
        {
            "id": "data-team-xlsx",
            "when": {
                "groups": ["data"],
                "skills": ["xlsx"],
                "tools": ["code_execution_*"],
                "betas": [SKILLS_BETA, CODE_BETA],
            },
            "effect": "allow",
            "limits": {"requests_per_minute": 120, "per": "group"},
        },
        {
            "id": "data-batches",
            "when": {"groups": ["data"], "endpoints": ["batches"], "models": ["claude-haiku-*"]},
            "effect": "allow",
            "limits": {"max_tokens": 1024},
        },
        {
            "id": "platform-skills-admin",
            "when": {"groups": ["platform"], "endpoints": ["skills-admin"]},
            "effect": "allow",
        },
        {
            "id": "skills-within-token-scope",
            "when": {"skills_outside_token_scope": True},
            "effect": "deny",
            "message": "this token is not scoped for the requested skill",
        },
        {
            "id": "no-computer-use",
            "when": {"tools": ["computer_*"]},
            "effect": "deny",
            "message": "computer use is not allowed",
        },
    ]
    for i in range(ORG_DENIES):  # organisation-wide denies: tools, MCP hosts, betas, findings
        rules.append(
            {
                "id": f"org-deny-{i}",
                "when": rng.choice(
                    [
                        {"tools": [f"internal_tool_{i}", f"legacy_{i}_*"]},
                        {"mcp_servers": [f"https://*.blocked-{i}.example/*"]},
                        {"betas": [f"experimental-{i}-*"]},
                        {"findings": [f"secret_kind_{i}"]},
                    ]
                ),
                "effect": "deny",
                "message": f"blocked by organisation rule {i}",
            }
        )
    for i in range(NAMED_WORKLOADS):  # workloads known by name or claims, not by group
        rules.append(
            {
                "id": f"repo-{i}",
                "when": {
                    "principals": [f"github/org-{i}/*"],
                    "models": ["claude-sonnet-*"],
                    "tools": [rng.choice(TOOL_GRANTS)],
                },
                "effect": "allow",
                "limits": {"requests_per_minute": rng.choice([10, 30, 60])},
            }
        )
        rules.append(
            {
                "id": f"claims-{i}",
                "when": {"claims": {"repository": f"org-{i}/*", "ref": "refs/heads/main"}},
                "effect": "allow",
                "limits": {"tokens_per_day": rng.choice([100_000, 1_000_000])},
            }
        )
    rules.append(
        {
            "id": "big-thinking-review",
            "when": {"thinking_budget_above": 32_000},
            "effect": "review",
        }
    )
    team = 0
    while len(rules) < RULES:
        group = f"team-{team % TEAMS:03d}"
        kind = team // TEAMS
        number = len(rules)
        if kind == 0:
            rule: dict[str, Any] = {
                "when": {
                    "groups": [group],
                    "endpoints": ["messages", "count_tokens"],
                    "models": rng.sample(MODEL_GLOBS, 2),
                    "tools": rng.sample(TOOL_GRANTS, 2),
                },
                "effect": "allow",
                "limits": {
                    "max_tokens": rng.choice([1024, 4096, 8192]),
                    "requests_per_minute": rng.choice([30, 60, 300]),
                },
            }
        elif kind == 1:
            rule = {
                "when": {"groups": [group], "tools": ["bash_*", "Bash", "web_fetch_*"]},
                "effect": "deny",
                "message": f"{group} may not use shell or fetch tools",
            }
        elif kind == 2:
            rule = {
                "when": {"groups": [group], "endpoints": ["batches"], "models": ["claude-haiku-*"]},
                "effect": "allow",
                "limits": {"requests_per_day": 10_000, "per": "group"},
            }
        else:
            rule = {
                "when": {"groups": [group], "models": ["claude-opus-*"], "max_tokens_above": 8000},
                "effect": "review",
            }
        rules.append({"id": f"{group}-{number}", **rule})
        team += 1
    return {"default": "deny", "rules": rules}


def _context(
    body: dict[str, Any] | None,
    *,
    groups: frozenset[str],
    scopes: frozenset[str] = frozenset(),
    path: str = "/v1/messages",
    betas: str = "",
) -> RequestContext:
    ctx = RequestContext(
        request_id="req_bench",
        method="POST",
        path=path,
        query_string=b"",
        headers=[(b"anthropic-beta", betas.encode())] if betas else [],
        client="127.0.0.1",
        scheme="http",
    )
    ctx.route = match_route("POST", path)
    ctx.identity = Identity(
        issuer_name="demo",
        issuer="https://idp.bench.invalid",
        subject="workload-1",
        claims={"sub": "workload-1", "repository": "org-3/api", "ref": "refs/heads/dev"},
        expires_at=0.0,
        groups=groups,
        scopes=scopes,
    )
    ctx.payload = body
    ctx.bytes_in = 2048
    return ctx


HELLO = [{"role": "user", "content": "Summarise ticket 42"}]


def scenarios() -> dict[str, list[PolicyRequest]]:
    """The requests, converted once as the gateway's decide stage converts them."""
    haiku = {"model": "claude-haiku-4-5", "max_tokens": 1024, "messages": HELLO}
    agent = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 4096,
        "messages": HELLO,
        "container": {"skills": [{"type": "anthropic", "skill_id": "xlsx", "version": "latest"}]},
        "tools": [{"type": "code_execution_20250825", "name": "code_execution"}],
    }
    bash = {**haiku, "tools": [{"type": "bash_20250124", "name": "bash"}]}
    batch = {"requests": [{"custom_id": f"r{i}", "params": haiku} for i in range(10)]}
    ci, data = frozenset({"ci", "team-007"}), frozenset({"data", "team-042", "team-043"})
    return {
        "CI haiku call": from_context(_context(haiku, groups=ci)),
        "data agent: xlsx skill + code execution": from_context(
            _context(
                agent,
                groups=data,
                scopes=frozenset({"skill:xlsx"}),
                betas=f"{SKILLS_BETA},{CODE_BETA}",
            )
        ),
        "CI bash request (denied)": from_context(_context(bash, groups=ci)),
        "batch of 10 (data)": from_context(
            _context(batch, groups=data, path="/v1/messages/batches")
        ),
    }


class BruteForce(Policy):
    """The same compiled rules, every one tried on every request (its groups and endpoints
    first, which the index otherwise answers): the baseline."""

    def matching(self, req: PolicyRequest) -> list[CompiledRule]:
        found = []
        for compiled in self.rules:
            when = compiled.rule.when
            if when.endpoints is not None and req.endpoint not in when.endpoints:
                continue
            if when.groups is not None and req.groups.isdisjoint(when.groups):
                continue
            if compiled.matches(req):
                found.append(compiled)
        return found


@dataclass(frozen=True)
class Timing:
    p50_us: float
    p99_us: float


def measure(
    decide: Callable[[Sequence[PolicyRequest]], Decision],
    requests: list[PolicyRequest],
    iterations: int,
) -> Timing:
    """p50 and p99 of one call, timed call by call with the collector paused."""
    for _ in range(min(1000, iterations)):
        decide(requests)
    samples = [0] * iterations
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for i in range(iterations):
            began = clock()
            decide(requests)
            samples[i] = clock() - began
    finally:
        gc.enable()
    samples.sort()
    return Timing(samples[iterations // 2] / 1000, samples[iterations * 99 // 100] / 1000)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20_000, help="timed calls (20000)")
    parser.add_argument("--check", action="store_true", help="exit 1 when p50 misses the target")
    args = parser.parse_args()

    data = build_document()
    began = time.perf_counter()
    document = PolicyDocument.model_validate(data)
    indexed = Policy(document)
    compile_ms = (time.perf_counter() - began) * 1000
    brute = BruteForce(document)
    brute_iterations = max(1000, args.iterations // 10)
    assert len(indexed.rules) == RULES

    print(
        f"Policy: {RULES} rules ({TEAMS} team groups), validated and compiled in "
        f"{compile_ms:.0f} ms; {args.iterations} timed decisions per ztgate cell, "
        f"{brute_iterations} per brute-force cell.\n"
    )
    print(
        "| request | decision | rules tried (index / all) | ztgate p50 | ztgate p99 "
        "| brute force p50 | brute force p99 | p50 speed-up |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    misses = []
    for name, requests in scenarios().items():
        decision = indexed.decide(requests)
        assert decision == brute.decide(requests), f"index and brute force disagree on {name}"
        tried = sum(len(indexed.candidates(req)) for req in requests)
        fast = measure(indexed.decide, requests, args.iterations)
        slow = measure(brute.decide, requests, brute_iterations)
        label = decision.effect.value + (f" ({decision.rule_ids[0]})" if decision.rule_ids else "")
        print(
            f"| {name} | {label} | {tried} / {RULES * len(requests)} | {fast.p50_us:.1f} us | "
            f"{fast.p99_us:.1f} us | {slow.p50_us:.1f} us | {slow.p99_us:.1f} us | "
            f"{slow.p50_us / fast.p50_us:.0f}x |"
        )
        if len(requests) == 1 and fast.p50_us >= TARGET_P50_US:
            misses.append(name)
    verdict = "met" if not misses else f"missed by: {', '.join(misses)}"
    print(
        f"\nTarget p50 < {TARGET_P50_US:.0f} us per single-request decision: {verdict}. "
        "A batch is one decision over the batch and each request inside it."
    )
    name, requests = next(iter(scenarios().items()))
    matched = [c.rule for c in indexed.matching(requests[0])]
    floor = Policy(PolicyDocument(default=document.default, rules=matched))
    timing = measure(floor.decide, requests, args.iterations)
    print(
        f"Floor: the {name} against only the {len(matched)} rules that match it: "
        f"p50 {timing.p50_us:.1f} us, p99 {timing.p99_us:.1f} us (building the decision "
        "itself, with nothing to reject)."
    )
    return 1 if args.check and misses else 0


if __name__ == "__main__":
    sys.exit(main())
