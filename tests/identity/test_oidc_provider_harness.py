"""The OpenID provider harness: a real oidc-provider issues verifiable RS256 JWT access tokens."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.identity.oidc_provider import OidcError, OidcProvider

TTL = 300


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    with OidcProvider(tmp_path_factory.mktemp("oidc"), ttl=TTL) as running:
        yield running


def public_keys(provider: OidcProvider) -> dict[str, dict[str, Any]]:
    jwks = provider.get_json(provider.discovery()["jwks_uri"])
    return {key["kid"]: key for key in jwks["keys"]}


def verify(provider: OidcProvider, token: str) -> dict[str, Any]:
    kid = jwt.get_unverified_header(token)["kid"]
    key = jwt.PyJWK(public_keys(provider)[kid])
    claims: dict[str, Any] = jwt.decode(
        token,
        key,
        algorithms=["RS256"],
        audience=provider.audience,
        issuer=provider.issuer,
        options={"require": ["iss", "aud", "sub", "iat", "exp", "jti"]},
    )
    return claims


def test_discovery_lists_issuer_jwks_and_token_endpoint(provider: OidcProvider) -> None:
    document = provider.discovery()
    assert document["issuer"] == provider.issuer
    assert document["token_endpoint"] == provider.token_endpoint
    assert document["jwks_uri"].startswith(provider.issuer + "/")
    assert "client_credentials" in document["grant_types_supported"]


def test_client_credentials_token_is_an_rs256_at_jwt(provider: OidcProvider) -> None:
    token = provider.token()
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "RS256", "typ": "at+jwt", "kid": provider.kid}

    claims = verify(provider, token)
    assert claims["iss"] == provider.issuer
    assert claims["aud"] == provider.audience
    assert claims["sub"] == claims["client_id"] == "ci-runner"
    # Without a requested scope the client gets all of its scopes, as one space-separated string.
    assert claims["scope"] == "skill:xlsx skill:pdf messages"
    assert claims["exp"] - claims["iat"] == TTL
    assert isinstance(claims["jti"], str)
    assert claims["jti"]


def test_scope_and_resource_can_be_narrowed(provider: OidcProvider) -> None:
    claims = verify(provider, provider.token("data-agent", "data-agent-secret", scope="skill:xlsx"))
    assert claims["sub"] == "data-agent"
    assert claims["scope"] == "skill:xlsx"

    other = provider.token(scope="messages", resource="https://elsewhere.example")
    assert jwt.decode(other, options={"verify_signature": False})["aud"] == (
        "https://elsewhere.example"
    )
    with pytest.raises(jwt.InvalidAudienceError):
        verify(provider, other)


def test_refusals(provider: OidcProvider) -> None:
    with pytest.raises(OidcError) as wrong_secret:
        provider.token(client_secret="not-the-secret")
    assert wrong_secret.value.error == "invalid_client"

    with pytest.raises(OidcError) as not_allowed:
        provider.token("data-agent", "data-agent-secret", scope="skill:pdf")
    assert not_allowed.value.error == "invalid_scope"


def test_restart_with_rotation_serves_only_the_new_key(tmp_path: Path) -> None:
    with OidcProvider(tmp_path) as provider:
        port, old_kid = provider.port, provider.kid
        old_token = provider.token()
        assert set(public_keys(provider)) == {old_kid}

        provider.stop()
        provider.start()
        assert provider.port == port
        assert provider.kid == old_kid
        verify(provider, old_token)

        provider.stop()
        provider.start(rotate=True)
        assert provider.port == port
        assert provider.kid != old_kid
        assert set(public_keys(provider)) == {provider.kid}
        assert jwt.get_unverified_header(provider.token())["kid"] == provider.kid
        with pytest.raises(KeyError):
            verify(provider, old_token)
