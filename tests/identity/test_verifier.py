"""The verifier with real keys and real signatures; only the key document's transport is local."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from tests.identity.keyring import AUDIENCE, ISSUER, SigningKey, claims, jwks
from ztgate.config.model import IdentityConfig, IssuerConfig
from ztgate.errors import AuthenticationFailed, ServiceUnavailable
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


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forge(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"sig") -> str:
    return ".".join(
        (_b64(json.dumps(header).encode()), _b64(json.dumps(payload).encode()), _b64(signature))
    )


def _hs256_with_public_key(key: SigningKey, payload: dict[str, Any]) -> str:
    """RS/HS key confusion: 'sign' with HMAC, using the issuer's public key as the secret."""
    secret = key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": key.kid}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def hostile_tokens(key: SigningKey) -> dict[str, tuple[str, str]]:
    """Named hostile tokens, each with the message an honest caller would need."""
    other = SigningKey.generate("RS256")
    return {
        "alg none": (_forge({"alg": "none"}, claims(), b""), "malformed"),
        "alg none with signature": (
            _forge({"alg": "none", "kid": key.kid}, claims()),
            "algorithm not accepted",
        ),
        "HS256 key confusion": (_hs256_with_public_key(key, claims()), "algorithm not accepted"),
        "algorithm off the list": (
            _forge({"alg": "RS512", "kid": key.kid}, claims()),
            "algorithm not accepted",
        ),
        "embedded jwk": (key.sign(claims(), {"jwk": other.public_jwk()}), "own key"),
        "jku header": (key.sign(claims(), {"jku": "https://evil.example/jwks"}), "own key"),
        "x5u header": (key.sign(claims(), {"x5u": "https://evil.example/cert"}), "own key"),
        "x5c header": (key.sign(claims(), {"x5c": ["MIIB"]}), "own key"),
        "crit header": (key.sign(claims(), {"crit": ["exp"], "exp": 1}), "critical"),
        "signed by unknown key": (other.sign(claims(), {"kid": key.kid}), "signature is invalid"),
        "tampered payload": (
            ".".join(
                [
                    key.sign(claims()).split(".")[0],
                    _b64(json.dumps(claims(sub="admin")).encode()),
                    key.sign(claims()).split(".")[2],
                ]
            ),
            "signature is invalid",
        ),
        "expired": (key.sign(claims(exp=1000, iat=400, nbf=400)), "expired"),
        "not yet valid": (
            key.sign(claims(nbf=10**10, exp=10**10 + 60, iat=10**10 - 60)),
            "issued in the future",
        ),
        "nbf in the future": (key.sign(claims(nbf=10**10)), "not yet valid"),
        "missing exp": (key.sign(claims(exp=None)), "no expiry"),
        "missing iat": (key.sign(claims(iat=None)), "no issue time"),
        "lifetime too long": (key.sign(claims(exp=claims()["iat"] + 7200)), "lifetime exceeds"),
        "wrong audience": (key.sign(claims(aud="someone-else")), "audience not accepted"),
        "missing audience": (key.sign(claims(aud=None)), "audience not accepted"),
        "wrong issuer": (key.sign(claims(iss="https://evil.example")), "issuer is not trusted"),
        "missing issuer": (key.sign(claims(iss=None)), "issuer is not trusted"),
        "list issuer": (key.sign(claims(iss=[ISSUER])), "issuer is not trusted"),
        "missing subject": (key.sign(claims(sub=None)), "no subject"),
        "string exp": (key.sign(claims(exp="9999999999")), "not a number"),
        "path traversal kid": (
            key.sign(claims(), {"kid": "../../etc/passwd"}),
            "signing key not recognised",
        ),
        "kid with control chars": (key.sign(claims(), {"kid": "a\nb"}), "malformed"),
        "oversized": (key.sign(claims(pad="x" * 20000)), "too large"),
        "two segments": ("eyJhbGciOiJSUzI1NiJ9.e30", "malformed"),
        "bad base64": ("eyJhbGciOiJSUzI1NiJ9.e30*.c2ln", "malformed"),
        "padding in base64": ("eyJhbGciOiJSUzI1NiJ9.e30=.c2ln", "malformed"),
        "header not json": (f"{_b64(b'not json')}.e30.c2ln", "malformed"),
        "header a list": (f"{_b64(b'[1]')}.e30.c2ln", "malformed"),
        "payload a string": (_forge({"alg": "RS256"}, "x"), "malformed"),  # type: ignore[arg-type]
        "JWE": ("a.b.c.d.e", "encrypted"),
        "empty signature": (key.sign(claims()).rsplit(".", 1)[0] + ".", "malformed"),
    }


async def test_hostile_tokens_are_all_refused(rs256: SigningKey) -> None:
    verifier = make_verifier(KeyDocument(jwks(rs256)), key_refetch_min_interval="1h")
    await verifier.issuer_keys["idp"].refresh()
    for name, (token, message) in hostile_tokens(rs256).items():
        with pytest.raises(AuthenticationFailed) as info:
            await verifier.verify(token)
        assert message in info.value.message, name
        assert token not in info.value.message
