"""From verified claims to what policy reasons about: checks, groups and scopes. Pure functions.

Claim paths are dotted (``kubernetes.io.namespace``); a key that itself contains dots, like
``kubernetes.io``, is found by trying the longest key first. Patterns are exact values or
``fnmatch`` globs, case-sensitive; a list of patterns means any of them; a list-valued claim
matches when any element does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from ztgate.config.model import ClaimPattern, IssuerConfig
from ztgate.core.errors import AuthenticationFailed
from ztgate.core.identity import claim_at, strings_of

_SEPARATORS = re.compile(r"[\s,]+")


def matches(value: Any, pattern: ClaimPattern) -> bool:
    patterns = [pattern] if isinstance(pattern, str) else pattern
    return any(fnmatchcase(v, p) for v in strings_of(value) for p in patterns)


def _all_match(claims: Mapping[str, Any], rule: Mapping[str, ClaimPattern]) -> bool:
    return all(matches(claim_at(claims, path), pattern) for path, pattern in rule.items())


def split_list(value: Any) -> frozenset[str]:
    """A list claim, or a space- or comma-separated string, as a set of strings."""
    if isinstance(value, str):
        return frozenset(part for part in _SEPARATORS.split(value) if part)
    if isinstance(value, list):
        return frozenset(item for item in value if isinstance(item, str) and item)
    return frozenset()


def scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    """OAuth scopes from ``scope`` (RFC 8693/9068) or ``scp`` (Okta, Entra ID)."""
    return split_list(claims.get("scope")) | split_list(claims.get("scp"))


@dataclass(frozen=True, slots=True)
class IssuerRules:
    """One issuer's demands on claims beyond the registered ones, compiled at load."""

    config: IssuerConfig

    def check(self, claims: Mapping[str, Any]) -> None:
        """Refuse tokens that lack required claims or match no allow rule (401, as for ``aud``)."""
        for path in self.config.required_claims:
            if claim_at(claims, path) in (None, "", [], {}):
                raise AuthenticationFailed(f"token lacks the required claim {path!r}")
        if self.config.preset == "kubernetes":
            _check_kubernetes(claims, pod_bound=self.config.require_pod_binding)
        elif self.config.preset == "github-actions":
            for path in ("repository", "repository_owner"):
                if not isinstance(claims.get(path), str):
                    raise AuthenticationFailed(f"token lacks the GitHub Actions claim {path!r}")
        if self.config.allow and not any(_all_match(claims, r) for r in self.config.allow):
            raise AuthenticationFailed(
                f"token claims are not allowed by the rules for issuer {self.config.name!r}"
            )

    def groups(self, claims: Mapping[str, Any]) -> frozenset[str]:
        found: set[str] = set()
        if self.config.groups_claim:
            found |= split_list(claim_at(claims, self.config.groups_claim))
        for rule in self.config.group_rules:
            if _all_match(claims, rule.when):
                found.update(rule.add)
        return frozenset(found)


def _check_kubernetes(claims: Mapping[str, Any], *, pod_bound: bool) -> None:
    """Service-account tokens: the ``kubernetes.io`` claim must agree with ``sub``."""
    namespace = claim_at(claims, "kubernetes.io.namespace")
    account = claim_at(claims, "kubernetes.io.serviceaccount.name")
    if not isinstance(namespace, str) or not isinstance(account, str):
        raise AuthenticationFailed("token is not a Kubernetes service-account token")
    if claims.get("sub") != f"system:serviceaccount:{namespace}:{account}":
        raise AuthenticationFailed("token subject does not match its service account")
    if pod_bound and not isinstance(claim_at(claims, "kubernetes.io.pod.name"), str):
        raise AuthenticationFailed("token is not bound to a pod; use a projected token")
