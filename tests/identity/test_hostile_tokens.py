"""Every attack in the reference, each a named case: all refused with 401 and an honest message.

Tokens are signed for real (RSA, EC, EdDSA); the issuer's key document is served locally.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.identity.keyring import AUDIENCE, ISSUER, SigningKey, claims, jwks
from tests.identity.test_verifier import KeyDocument, make_verifier
from ztgate.config.model import IdentityConfig, IssuerConfig
from ztgate.core.errors import AuthenticationFailed
from ztgate.identity.keys import IssuerKeys
from ztgate.identity.verifier import TokenVerifier

KEY = SigningKey.generate("RS256")
EC_KEY = SigningKey.generate("ES256")
STRANGER = SigningKey.generate("RS256")
RS256_HEADER = base64.urlsafe_b64encode(b'{"alg":"RS256"}').rstrip(b"=").decode()


def now() -> int:
    """Read when each token is made: the suite runs long enough for an import-time clock to
    drift past the clock skew and turn a future ``nbf`` into a past one."""
    return int(time.time())


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], payload: Any, signature: bytes = b"sig") -> str:
    return ".".join(
        (b64(json.dumps(header).encode()), b64(json.dumps(payload).encode()), b64(signature))
    )


def hs256_with_public_key(payload: dict[str, Any]) -> str:
    """RS/HS key confusion: HMAC 'signed' with the issuer's public key as the secret."""
    secret = KEY.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": KEY.kid}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def splice(
    token: str, *, payload: dict[str, Any] | None = None, sig_from: str | None = None
) -> str:
    header, body, signature = token.split(".")
    if payload is not None:
        body = b64(json.dumps(payload).encode())
    if sig_from is not None:
        signature = sig_from.split(".")[2]
    return f"{header}.{body}.{signature}"


def noncanonical(token: str) -> str:
    """Same bytes, other spelling: flip unused low bits of the signature's last character."""
    header, body, signature = token.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(signature[-1])
    return f"{header}.{body}.{signature[:-1]}{alphabet[last ^ 1]}"


HOSTILE: dict[str, tuple[Callable[[], str], str]] = {
    # algorithm attacks
    "alg none, empty signature": (lambda: forge({"alg": "none"}, claims(), b""), "malformed"),
    "alg none with a signature": (
        lambda: forge({"alg": "none", "kid": KEY.kid}, claims()),
        "algorithm not accepted",
    ),
    "alg NONE upper case": (lambda: forge({"alg": "NONE"}, claims()), "algorithm not accepted"),
    "HS256 key confusion": (lambda: hs256_with_public_key(claims()), "algorithm not accepted"),
    "HS512 header": (
        lambda: forge({"alg": "HS512", "kid": KEY.kid}, claims()),
        "algorithm not accepted",
    ),
    "RS512 off the allow-list": (
        lambda: forge({"alg": "RS512", "kid": KEY.kid}, claims()),
        "algorithm not accepted",
    ),
    "PS256 off the allow-list": (
        lambda: forge({"alg": "PS256", "kid": KEY.kid}, claims()),
        "algorithm not accepted",
    ),
    "alg not a string": (lambda: forge({"alg": 256, "kid": KEY.kid}, claims()), "malformed"),
    "alg missing": (lambda: forge({"kid": KEY.kid}, claims()), "malformed"),
    "ES256 claimed for an RSA kid": (
        lambda: forge({"alg": "ES256", "kid": KEY.kid}, claims()),
        "signing key not recognised",
    ),
    # keys or key URLs carried in the token
    "embedded jwk": (lambda: STRANGER.sign(claims(), {"jwk": STRANGER.public_jwk()}), "own key"),
    "jku header": (lambda: KEY.sign(claims(), {"jku": "https://evil.example/jwks"}), "own key"),
    "x5u header": (lambda: KEY.sign(claims(), {"x5u": "https://evil.example/c.pem"}), "own key"),
    "x5c header": (lambda: KEY.sign(claims(), {"x5c": ["MIIBIjAN"]}), "own key"),
    # header extensions
    "crit with exp": (lambda: KEY.sign(claims(), {"crit": ["exp"], "exp": 1}), "critical"),
    "crit with unknown extension": (
        lambda: KEY.sign(claims(), {"crit": ["x-new"], "x-new": 1}),
        "critical",
    ),
    "b64 false (unencoded payload)": (lambda: KEY.sign(claims(), {"b64": False}), "malformed"),
    "zip header": (lambda: KEY.sign(claims(), {"zip": "DEF"}), "malformed"),
    # signatures
    "signed by an unknown key under a known kid": (
        lambda: STRANGER.sign(claims(), {"kid": KEY.kid}),
        "signature is invalid",
    ),
    "signed by an unknown key, unknown kid": (
        lambda: STRANGER.sign(claims()),
        "signing key not recognised",
    ),
    "tampered payload": (
        lambda: splice(KEY.sign(claims()), payload=claims(sub="admin")),
        "signature is invalid",
    ),
    "signature from another token": (
        lambda: splice(KEY.sign(claims(sub="a")), sig_from=KEY.sign(claims(sub="b"))),
        "signature is invalid",
    ),
    "empty signature": (lambda: KEY.sign(claims()).rsplit(".", 1)[0] + ".", "malformed"),
    "truncated signature": (lambda: KEY.sign(claims())[:-10], "signature is invalid"),
    "non-canonical base64 signature": (lambda: noncanonical(KEY.sign(claims())), "malformed"),
    # registered claims
    "expired": (
        lambda: KEY.sign(claims(exp=now() - 500, iat=now() - 900, nbf=now() - 900)),
        "expired",
    ),
    "issued in the future": (
        lambda: KEY.sign(claims(iat=now() + 3600, nbf=now() + 3600, exp=now() + 3900)),
        "issued in the future",
    ),
    "nbf in the future": (lambda: KEY.sign(claims(nbf=now() + 600)), "not yet valid"),
    "missing exp": (lambda: KEY.sign(claims(exp=None)), "no expiry"),
    "missing iat": (lambda: KEY.sign(claims(iat=None)), "no issue time"),
    "exp as a string": (lambda: KEY.sign(claims(exp=str(now() + 60))), "not a number"),
    "exp as a boolean": (lambda: KEY.sign(claims(exp=True)), "not a number"),
    "lifetime of two hours": (lambda: KEY.sign(claims(exp=now() + 7200)), "lifetime exceeds"),
    "lifetime of a year": (lambda: KEY.sign(claims(exp=now() + 365 * 86400)), "lifetime exceeds"),
    "wrong audience": (lambda: KEY.sign(claims(aud="someone-else")), "audience not accepted"),
    "audience list without ours": (
        lambda: KEY.sign(claims(aud=["a", "b"])),
        "audience not accepted",
    ),
    "audience as a number": (lambda: KEY.sign(claims(aud=7)), "audience not accepted"),
    "missing audience": (lambda: KEY.sign(claims(aud=None)), "audience not accepted"),
    "wrong issuer": (lambda: KEY.sign(claims(iss="https://evil.example")), "issuer is not trusted"),
    "issuer with trailing slash": (
        lambda: KEY.sign(claims(iss=ISSUER + "/")),
        "issuer is not trusted",
    ),
    "missing issuer": (lambda: KEY.sign(claims(iss=None)), "issuer is not trusted"),
    "issuer as a list": (lambda: KEY.sign(claims(iss=[ISSUER])), "issuer is not trusted"),
    "missing subject": (lambda: KEY.sign(claims(sub=None)), "no subject"),
    "empty subject": (lambda: KEY.sign(claims(sub="")), "no subject"),
    # crafted kid
    "path traversal kid": (
        lambda: KEY.sign(claims(), {"kid": "../../../../etc/passwd"}),
        "signing key not recognised",
    ),
    "SQL injection kid": (lambda: KEY.sign(claims(), {"kid": "x' UNION SELECT 'key"}), "malformed"),
    "kid with a newline": (lambda: KEY.sign(claims(), {"kid": "a\nb"}), "malformed"),
    "kid not a string": (lambda: forge({"alg": "RS256", "kid": 12}, claims()), "malformed"),
    "kid of 10,000 characters": (lambda: KEY.sign(claims(), {"kid": "k" * 10000}), "malformed"),
    # size and encoding
    "oversized token": (lambda: KEY.sign(claims(pad="x" * 20000)), "too large"),
    "two segments": (lambda: "eyJhbGciOiJSUzI1NiJ9.e30", "malformed"),
    "four segments": (lambda: KEY.sign(claims()) + ".e30", "malformed"),
    "JWE (five segments)": (lambda: "a.b.c.d.e", "encrypted"),
    "invalid base64 character": (lambda: "eyJhbGciOiJSUzI1NiJ9.e30*.c2ln", "malformed"),
    "base64 padding": (lambda: "eyJhbGciOiJSUzI1NiJ9.e30=.c2ln", "malformed"),
    "standard base64 alphabet": (lambda: "eyJhbGciOiJSUzI1NiJ9.e30+.c2ln", "malformed"),
    "impossible base64 length": (lambda: "eyJhbGciOiJSUzI1NiJ9.e30AB.c2lnA", "malformed"),
    "header not JSON": (lambda: f"{b64(b'not json')}.e30.c2ln", "malformed"),
    "header a JSON list": (lambda: f"{b64(b'[1]')}.e30.c2ln", "malformed"),
    "payload a JSON string": (lambda: forge({"alg": "RS256"}, "x"), "malformed"),
    "payload invalid UTF-8": (
        lambda: ".".join((RS256_HEADER, b64(b"\xff\xfe"), "c2ln")),
        "malformed",
    ),
    "non-ASCII token": (lambda: "eyJhbGciOiJSUzI1NiJ9.é30.c2ln", "malformed"),
}


@pytest.fixture
async def verifier() -> TokenVerifier:
    verifier = make_verifier(KeyDocument(jwks(KEY, EC_KEY)), key_refetch_min_interval="1h")
    await verifier.issuer_keys["idp"].refresh()
    return verifier


def test_the_corpus_is_large_enough() -> None:
    assert len(HOSTILE) >= 40


@pytest.mark.parametrize("name", sorted(HOSTILE))
async def test_hostile_token_is_refused(verifier: TokenVerifier, name: str) -> None:
    make, message = HOSTILE[name]
    token = make()
    with pytest.raises(AuthenticationFailed) as info:
        await verifier.verify(token)
    assert info.value.status == 401
    assert message in info.value.message
    assert token not in info.value.message


async def test_a_token_for_one_issuer_presented_with_another_issuers_claims() -> None:
    """Signed by issuer A's key but claiming to be from issuer B: B's keys do not verify it."""
    a_key, b_key = SigningKey.generate("ES256"), SigningKey.generate("ES256")
    issuers = {
        name: IssuerConfig(name=name, issuer=f"https://{name}.example", audiences=[AUDIENCE])
        for name in ("a", "b")
    }
    keys = {
        "a": IssuerKeys(issuers["a"], KeyDocument(jwks(a_key))),
        "b": IssuerKeys(issuers["b"], KeyDocument(jwks(b_key))),
    }
    verifier = TokenVerifier(IdentityConfig(issuers=list(issuers.values())), keys)
    for issuer_keys in keys.values():
        await issuer_keys.refresh()
    assert (await verifier.verify(a_key.sign(claims(iss="https://a.example")))).issuer_name == "a"
    forged = a_key.sign(claims(iss="https://b.example"), {"kid": b_key.kid})
    with pytest.raises(AuthenticationFailed, match="signature is invalid"):
        await verifier.verify(forged)


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=600))
async def test_arbitrary_bytes_never_crash_or_pass(verifier: TokenVerifier, data: bytes) -> None:
    token = data.decode("latin-1")
    with pytest.raises(AuthenticationFailed):
        await verifier.verify(token)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
async def test_any_single_character_change_is_refused(verifier: TokenVerifier, data: Any) -> None:
    token = KEY.sign(claims(sub="fuzz"))
    position = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(st.characters(codec="ascii").filter(lambda c: c != token[position]))
    mutated = token[:position] + replacement + token[position + 1 :]
    with pytest.raises(AuthenticationFailed):
        await verifier.verify(mutated)
