"""GitHub Actions, Kubernetes and generic OIDC tokens, signed by issuers that serve discovery and
JWKS over HTTP as the real ones do, mapped to principals, groups and scopes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from ztgate.config.model import IdentityConfig
from ztgate.core.errors import AuthenticationFailed
from ztgate.devtools.issuer import DevIssuer
from ztgate.identity.verifier import TokenVerifier
from ztgate.shared.memory import MemoryState


def github_claims(**overrides: Any) -> dict[str, Any]:
    owner_repo = overrides.pop("repository", "acme/app")
    ref = overrides.pop("ref", "refs/heads/main")
    base = {
        "repository": owner_repo,
        "repository_owner": owner_repo.split("/")[0],
        "repository_id": "42",
        "ref": ref,
        "ref_type": "branch",
        "environment": "prod",
        "actor": "octocat",
        "workflow": "ci",
        "event_name": "push",
        "job_workflow_ref": f"{owner_repo}/.github/workflows/ci.yml@{ref}",
        "run_id": "1",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def kubernetes_claims(
    namespace: str = "data", account: str = "agent", pod: bool = True
) -> dict[str, Any]:
    k8s: dict[str, Any] = {
        "namespace": namespace,
        "serviceaccount": {"name": account, "uid": "5f1c-sa"},
    }
    if pod:
        k8s["pod"] = {"name": f"{account}-7d9f", "uid": "9a2b-pod"}
    return {"kubernetes.io": k8s}


@pytest.fixture
async def issuers() -> AsyncIterator[dict[str, DevIssuer]]:
    started = {name: DevIssuer() for name in ("github", "k8s", "okta")}
    for issuer in started.values():
        await issuer.start()
    yield started
    for issuer in started.values():
        await issuer.stop()


@pytest.fixture
async def verifier(issuers: dict[str, DevIssuer]) -> AsyncIterator[TokenVerifier]:
    config = IdentityConfig.model_validate(
        {
            "issuers": [
                {
                    "name": "github",
                    "preset": "github-actions",
                    "issuer": issuers["github"].base_url,  # GHES-style: a non-default issuer URL
                    "algorithms": ["ES256"],
                    "audiences": ["ztgate"],
                    "allow": [
                        {"repository_owner": "acme", "ref": ["refs/heads/main", "refs/tags/v*"]},
                        {"repository": "acme-labs/*", "environment": "staging"},
                    ],
                    "group_rules": [
                        {"when": {"repository_owner": "acme"}, "add": ["ci"]},
                        {
                            "when": {"repository_owner": "acme", "environment": "prod"},
                            "add": ["ci-prod"],
                        },
                    ],
                },
                {
                    "name": "k8s",
                    "preset": "kubernetes",
                    "issuer": issuers["k8s"].base_url,
                    "audiences": ["ztgate"],
                    "allow": [{"kubernetes.io.namespace": ["data", "platform"]}],
                    "group_rules": [{"when": {"kubernetes.io.namespace": "data"}, "add": ["data"]}],
                },
                {
                    "name": "okta",
                    "issuer": issuers["okta"].base_url,
                    "audiences": ["api://ztgate"],
                    "groups_claim": "realm_access.roles",
                    "required_claims": ["email"],
                    "one_time_tokens": True,
                },
            ]
        }
    )
    async with aiohttp.ClientSession() as http:
        verifier = TokenVerifier.from_config(config, http, MemoryState())
        await verifier.start()  # discovery + JWKS over HTTP, as against the real IdPs
        yield verifier
        await verifier.close()


async def test_github_actions_token_maps_to_principal_and_groups(
    issuers: dict[str, DevIssuer], verifier: TokenVerifier
) -> None:
    token = issuers["github"].mint("repo:acme/app:ref:refs/heads/main", claims=github_claims())
    identity = await verifier.verify(token)
    assert identity.principal == "github/repo:acme/app:ref:refs/heads/main"
    assert identity.groups == {"ci", "ci-prod"}
    assert identity.claims["job_workflow_ref"].startswith("acme/app/.github/workflows/ci.yml")


async def test_github_environment_subject_form_and_second_allow_rule(
    issuers: dict[str, DevIssuer], verifier: TokenVerifier
) -> None:
    token = issuers["github"].mint(
        "repo:acme-labs/tool:environment:staging",
        claims=github_claims(repository="acme-labs/tool", environment="staging"),
    )
    identity = await verifier.verify(token)
    assert identity.principal == "github/repo:acme-labs/tool:environment:staging"
    assert identity.groups == frozenset()


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        (github_claims(repository="evil/app"), "wrong repository owner"),
        (github_claims(ref="refs/heads/feature"), "wrong branch"),
        (github_claims(ref="refs/pull/7/merge"), "pull request ref"),
        (github_claims(repository="acme-labs/tool", environment="prod"), "wrong environment"),
        (github_claims(repository_owner=None), "no repository_owner claim"),
    ],
)
async def test_github_allow_rules_refuse(
    issuers: dict[str, DevIssuer], verifier: TokenVerifier, claims: dict[str, Any], why: str
) -> None:
    token = issuers["github"].mint("repo:x:ref:y", claims=claims)
    with pytest.raises(AuthenticationFailed) as info:
        await verifier.verify(token)
    assert info.value.status == 401, why
    assert "acme" not in info.value.message  # the rules themselves are not disclosed


async def test_kubernetes_service_account_token(
    issuers: dict[str, DevIssuer], verifier: TokenVerifier
) -> None:
    token = issuers["k8s"].mint("system:serviceaccount:data:agent", claims=kubernetes_claims())
    identity = await verifier.verify(token)
    assert identity.principal == "k8s/system:serviceaccount:data:agent"
    assert identity.groups == {"data"}


@pytest.mark.parametrize(
    ("subject", "claims", "message"),
    [
        ("system:serviceaccount:web:agent", kubernetes_claims("web"), "not allowed"),
        ("system:serviceaccount:data:admin", kubernetes_claims("data", "agent"), "does not match"),
        ("system:serviceaccount:data:agent", kubernetes_claims(pod=False), "not bound to a pod"),
        ("system:serviceaccount:data:agent", {}, "not a Kubernetes service-account token"),
    ],
)
async def test_kubernetes_tokens_refused(
    issuers: dict[str, DevIssuer],
    verifier: TokenVerifier,
    subject: str,
    claims: dict[str, Any],
    message: str,
) -> None:
    with pytest.raises(AuthenticationFailed, match=message):
        await verifier.verify(issuers["k8s"].mint(subject, claims=claims))


async def test_generic_oidc_groups_scopes_and_required_claims(
    issuers: dict[str, DevIssuer], verifier: TokenVerifier
) -> None:
    claims = {
        "email": "svc@example.com",
        "realm_access": {"roles": ["data", "analysts"]},
        "scope": "skill:xlsx messages",
        "scp": ["skill:pdf"],
    }
    token = issuers["okta"].mint("00u1abcd", audience="api://ztgate", claims=claims)
    identity = await verifier.verify(token)
    assert identity.principal == "okta/00u1abcd"
    assert identity.groups == {"data", "analysts"}
    assert identity.scopes == {"skill:xlsx", "messages", "skill:pdf"}
    without_email = issuers["okta"].mint("00u2", audience="api://ztgate")
    with pytest.raises(AuthenticationFailed, match="required claim 'email'"):
        await verifier.verify(without_email)


async def test_one_time_tokens_cannot_be_replayed(
    issuers: dict[str, DevIssuer], verifier: TokenVerifier
) -> None:
    token = issuers["okta"].mint("00u3", audience="api://ztgate", claims={"email": "a@b.c"})
    await verifier.verify(token)
    with pytest.raises(AuthenticationFailed, match="already used"):
        await verifier.verify(token)


async def test_key_rotation_at_the_idp_is_picked_up(
    issuers: dict[str, DevIssuer], verifier: TokenVerifier
) -> None:
    github = issuers["github"]
    await verifier.verify(github.mint("repo:acme/app:ref:refs/heads/main", claims=github_claims()))
    github.rotate_key()
    keys = verifier.issuer_keys["github"]
    keys._last_attempt = time.monotonic() - 60  # as if the refetch interval had passed
    rotated = github.mint("repo:acme/app:ref:refs/heads/main", claims=github_claims(run_id="2"))
    assert (await verifier.verify(rotated)).subject == "repo:acme/app:ref:refs/heads/main"
