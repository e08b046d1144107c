"""Pure JWT handling: parse without trusting, then check claims. No I/O, no keys fetched here.

Every check that attacks on real libraries exploited is made before a signature is looked at:
size, strict base64url, JSON objects, the algorithm allow-list, and header parameters that
would let the token choose its own key (``jwk``, ``jku``, ``x5u``, ``x5c``) or demand
extensions we do not implement (``crit``).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from ztgate.core.errors import AuthenticationFailed

_B64URL = re.compile(rb"[A-Za-z0-9_-]*")
_KID = re.compile(r"[\x21-\x7e]{1,256}")
_KEY_CARRYING_HEADERS = ("jwk", "jku", "x5u", "x5c")
# Parameters that change how the payload is read: unencoded (RFC 7797) or compressed (JWE only).
_PAYLOAD_ALTERING_HEADERS = ("b64", "zip")

MALFORMED = "token is malformed"


@dataclass(frozen=True, slots=True)
class UnverifiedToken:
    """A token split and decoded, nothing about it trusted yet."""

    header: Mapping[str, Any]
    claims: Mapping[str, Any]
    signing_input: bytes
    signature: bytes

    @property
    def alg(self) -> str:
        return str(self.header["alg"])

    @property
    def kid(self) -> str | None:
        kid = self.header.get("kid")
        return None if kid is None else str(kid)


def parse_token(token: str, *, max_bytes: int) -> UnverifiedToken:
    """Split and decode a compact JWS, refusing anything malformed before it is used."""
    if len(token) > max_bytes:
        raise AuthenticationFailed("token is too large")
    try:
        raw = token.encode("ascii")
    except UnicodeEncodeError:
        raise AuthenticationFailed(MALFORMED) from None
    parts = raw.split(b".")
    if len(parts) == 5:
        raise AuthenticationFailed("encrypted tokens (JWE) are not accepted")
    if len(parts) != 3 or not parts[0] or not parts[1] or not parts[2]:
        raise AuthenticationFailed(MALFORMED)
    header = _json_object(_b64decode(parts[0]))
    claims = _json_object(_b64decode(parts[1]))
    signature = _b64decode(parts[2])
    _check_header(header)
    return UnverifiedToken(header, claims, parts[0] + b"." + parts[1], signature)


def _b64decode(part: bytes) -> bytes:
    """Strict base64url: no padding, no stray bits, so one token has exactly one spelling."""
    if len(part) % 4 == 1 or not _B64URL.fullmatch(part):
        raise AuthenticationFailed(MALFORMED)
    try:
        data = base64.urlsafe_b64decode(part + b"=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise AuthenticationFailed(MALFORMED) from None
    if base64.urlsafe_b64encode(data).rstrip(b"=") != part:
        raise AuthenticationFailed(MALFORMED)
    return data


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise AuthenticationFailed(MALFORMED) from None
    if not isinstance(value, dict):
        raise AuthenticationFailed(MALFORMED)
    return value


def _check_header(header: Mapping[str, Any]) -> None:
    alg = header.get("alg")
    if not isinstance(alg, str) or not alg:
        raise AuthenticationFailed(MALFORMED)
    if any(name in header for name in _KEY_CARRYING_HEADERS):
        raise AuthenticationFailed("tokens that carry their own key or key URL are not accepted")
    if any(name in header for name in _PAYLOAD_ALTERING_HEADERS):
        raise AuthenticationFailed(MALFORMED)
    if "crit" in header:
        raise AuthenticationFailed(
            "token requires critical extensions this gateway does not support"
        )
    kid = header.get("kid")
    if kid is not None and not (isinstance(kid, str) and _KID.fullmatch(kid)):
        raise AuthenticationFailed(MALFORMED)


@dataclass(frozen=True, slots=True)
class ClaimRules:
    """What one issuer demands of a token's registered claims."""

    issuer: str
    audiences: frozenset[str]
    clock_skew: float
    max_lifetime: float


def check_claims(claims: Mapping[str, Any], rules: ClaimRules, now: float) -> float:
    """Check the registered claims; returns ``exp``. Messages help an honest caller only."""
    if claims.get("iss") != rules.issuer:
        raise AuthenticationFailed("token issuer is not trusted")
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise AuthenticationFailed("token has no subject")
    if not _audience_accepted(claims.get("aud"), rules.audiences):
        raise AuthenticationFailed("token audience not accepted")
    exp = _number(claims, "exp")
    iat = _number(claims, "iat")
    if exp is None:
        raise AuthenticationFailed("token has no expiry (exp)")
    if iat is None:
        raise AuthenticationFailed("token has no issue time (iat)")
    if now >= exp + rules.clock_skew:
        raise AuthenticationFailed("token expired")
    if iat > now + rules.clock_skew:
        raise AuthenticationFailed("token issued in the future")
    nbf = _number(claims, "nbf")
    if nbf is not None and nbf > now + rules.clock_skew:
        raise AuthenticationFailed("token not yet valid")
    if exp - iat > rules.max_lifetime:
        raise AuthenticationFailed(
            f"token lifetime exceeds the {int(rules.max_lifetime)} s this gateway accepts; "
            "use a short-lived token"
        )
    return exp


def _audience_accepted(aud: object, accepted: Collection[str]) -> bool:
    if isinstance(aud, str):
        return aud in accepted
    if isinstance(aud, list):
        return any(isinstance(a, str) and a in accepted for a in aud)
    return False


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AuthenticationFailed(f"token claim {name} is not a number")
    return float(value)
