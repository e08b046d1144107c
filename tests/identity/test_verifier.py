"""The verifier with real keys and real signatures; only the key document's transport is local."""

from __future__ import annotations

from typing import Any

import pytest

from tests.identity.keyring import AUDIENCE, ISSUER, SigningKey, claims, jwks
from ztgate.config.model import IdentityConfig, IssuerConfig
from ztgate.core.errors import AuthenticationFailed, ServiceUnavailable
from ztgate.identity.keys import IssuerKeys, KeyFetchError
from ztgate.identity.verifier import TokenVerifier


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class KeyDocument:
    """Serves a JWKS document the way an IdP would, and can fail like one."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.fetches = 0
        self.down = False

    async def __call__(self) -> object:
        self.fetches += 1
        if self.down:
            raise KeyFetchError("GET https://idp.example.com/jwks failed: ClientConnectorError")
        return self.document


def make_verifier(
    document: KeyDocument, clock: Clock | None = None, **issuer: Any
) -> TokenVerifier:
    config = IssuerConfig(name="idp", issuer=ISSUER, audiences=[AUDIENCE], **issuer)
    keys = IssuerKeys(config, document, clock=clock or Clock())
    return TokenVerifier(IdentityConfig(issuers=[config]), {"idp": keys})


@pytest.fixture(scope="module")
def rs256() -> SigningKey:
    return SigningKey.generate("RS256")


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
async def test_valid_tokens_of_each_default_algorithm_pass(alg: str) -> None:
    key = SigningKey.generate(alg)
    verifier = make_verifier(KeyDocument(jwks(key)))
    await verifier.issuer_keys["idp"].refresh()
    identity = await verifier.verify(key.sign(claims()))
    assert identity.principal == "idp/repo:acme/app:ref:refs/heads/main"
    assert identity.claims["aud"] == AUDIENCE


async def test_identity_is_cached_until_the_key_is_withdrawn(rs256: SigningKey) -> None:
    document = KeyDocument(jwks(rs256))
    verifier = make_verifier(document)
    await verifier.issuer_keys["idp"].refresh()
    token = rs256.sign(claims())
    first = await verifier.verify(token)
    assert await verifier.verify(token) is first
    other = SigningKey.generate("RS256")
    document.document = jwks(other)
    await verifier.issuer_keys["idp"].refresh()
    with pytest.raises(AuthenticationFailed, match="signing key not recognised"):
        await verifier.verify(token)


async def test_unknown_kid_refetches_at_most_once_per_interval(rs256: SigningKey) -> None:
    clock = Clock()
    document = KeyDocument(jwks(rs256))
    verifier = make_verifier(document, clock, key_refetch_min_interval="30s")
    await verifier.issuer_keys["idp"].refresh()
    stranger = SigningKey.generate("RS256")
    clock.now += 31
    for _ in range(5):
        with pytest.raises(AuthenticationFailed, match="signing key not recognised"):
            await verifier.verify(stranger.sign(claims()))
    assert document.fetches == 2
    # The IdP rotates to the new key: picked up after the interval, without a restart.
    document.document = jwks(rs256, stranger)
    clock.now += 31
    assert (await verifier.verify(stranger.sign(claims()))).subject


async def test_outage_keeps_last_good_keys_until_staleness(rs256: SigningKey) -> None:
    clock = Clock()
    document = KeyDocument(jwks(rs256))
    verifier = make_verifier(document, clock, key_max_staleness="1h")
    keys = verifier.issuer_keys["idp"]
    await keys.refresh()
    document.down = True
    clock.now += 1800
    await keys.refresh()
    assert keys.last_error is not None
    assert await verifier.verify(rs256.sign(claims(sub="a")))
    clock.now += 3600
    with pytest.raises(ServiceUnavailable) as info:
        await verifier.verify(rs256.sign(claims(sub="b")))
    assert info.value.retry_after is not None


async def test_never_loaded_keys_answer_503_not_401(rs256: SigningKey) -> None:
    document = KeyDocument(jwks(rs256))
    document.down = True
    verifier = make_verifier(document)
    await verifier.issuer_keys["idp"].refresh()
    assert not verifier.ready
    with pytest.raises(ServiceUnavailable, match="not available yet"):
        await verifier.verify(rs256.sign(claims()))
