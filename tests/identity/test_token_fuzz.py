"""Fuzzing the token path: whatever a caller sends, a token is refused with 401 or verified,
and nothing else ever happens (no other exception, no identity that breaks what policy reads).

test_hostile_tokens.py has the named attacks and raw bytes against the verifier; this goes
after what those leave: text of any code point into ``parse_token``; well-formed segments of
any JSON; tokens *really signed* by the issuer's key whose claims are any JSON at all, under
an issuer with every claim rule (required claims, allow rules, group rules, the Kubernetes
preset, one-time tokens); and any header list into ``extract_credential``.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzzing import fuzz
from tests.identity.keyring import AUDIENCE, ISSUER, SigningKey
from tests.identity.test_verifier import Clock, KeyDocument
from ztgate.config.model import GroupRule, IdentityConfig, IssuerConfig
from ztgate.core.errors import AuthenticationFailed
from ztgate.core.identity import Identity
from ztgate.identity.credentials import extract_credential
from ztgate.identity.jwt import UnverifiedToken, parse_token
from ztgate.identity.keys import IssuerKeys
from ztgate.identity.verifier import TokenVerifier

MAX_BYTES = 16384
PARSE_MESSAGES = {
    "token is malformed",
    "token is too large",
    "encrypted tokens (JWE) are not accepted",
    "tokens that carry their own key or key URL are not accepted",
    "token requires critical extensions this gateway does not support",
}
KEY = SigningKey.generate("EdDSA")  # real signatures, and the cheapest to make per example
NOW = 1000.0


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def assert_401(exc: AuthenticationFailed) -> None:
    assert exc.status == 401


def check_parse(token: str) -> UnverifiedToken | None:
    """``parse_token``'s contract: AuthenticationFailed (401), or a parse that holds up."""
    try:
        parsed = parse_token(token, max_bytes=MAX_BYTES)
    except AuthenticationFailed as exc:
        refused: AuthenticationFailed | None = exc
    else:
        refused = None
    if refused is not None:
        assert refused.status == 401
        assert refused.message in PARSE_MESSAGES  # fixed texts: none can carry the token
        return None
    header, payload, signature = token.split(".")
    assert isinstance(parsed.header, dict)
    assert isinstance(parsed.claims, dict)
    assert isinstance(parsed.alg, str)
    assert parsed.alg
    assert parsed.kid is None or isinstance(parsed.header.get("kid"), str)
    assert parsed.signing_input == f"{header}.{payload}".encode()
    assert b64(parsed.signature) == signature  # one spelling per token
    assert not {"jwk", "jku", "x5u", "x5c", "crit", "b64", "zip"} & set(parsed.header)
    return parsed


# --- parse_token ---------------------------------------------------------------------------

_B64_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_NEAR_B64 = _B64_CHARS + "=+/. \t\r\n\x00é"


@fuzz(600)
@given(st.text(max_size=300) | st.text(alphabet=_NEAR_B64, max_size=300))
def test_any_text_is_refused_or_parsed(token: str) -> None:
    """Any code point, lone surrogates included (a ``str`` can hold what no header can)."""
    check_parse(token)


_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)  # past 64 bits: orjson refuses those
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
JSON = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
# Header parameters a parser branches on, with any value at all.
_HEADER_NAMES = st.sampled_from(
    ["alg", "kid", "typ", "cty", "jwk", "jku", "x5u", "x5c", "crit", "b64", "zip", "enc"]
)
HEADERS: st.SearchStrategy[dict[str, Any]] = st.dictionaries(
    _HEADER_NAMES | st.text(max_size=6), JSON, max_size=5
) | st.builds(
    dict,
    alg=st.sampled_from(["RS256", "ES256", "EdDSA", "none", "HS256", ""]) | JSON,
    kid=st.text(max_size=300) | JSON,
)


def _json_bytes(value: Any) -> bytes:
    """The standard library's encoder: it writes what orjson will not (integers past 64 bits,
    lone surrogates as escapes), so the parser meets those too."""
    return json.dumps(value).encode()


_SEGMENT = (
    st.builds(lambda v: b64(_json_bytes(v)), JSON | HEADERS)
    | st.builds(b64, st.binary(max_size=80))
    | st.text(alphabet=_B64_CHARS, max_size=40)
    | st.text(alphabet=_NEAR_B64, max_size=40)
)


@fuzz(600)
@given(
    header=st.builds(lambda v: b64(_json_bytes(v)), HEADERS) | _SEGMENT,
    payload=st.builds(lambda v: b64(_json_bytes(v)), JSON) | _SEGMENT,
    signature=_SEGMENT,
    extra=st.lists(_SEGMENT, max_size=3),
)
def test_well_formed_segments_of_any_json_are_refused_or_parsed(
    header: str, payload: str, signature: str, extra: list[str]
) -> None:
    check_parse(".".join([header, payload, signature, *extra]))


# --- signed tokens with any claims ---------------------------------------------------------

ISSUERS = {
    "oidc": IssuerConfig(
        name="oidc",
        issuer=ISSUER,
        audiences=[AUDIENCE, "other"],
        required_claims=["email", "org.team"],
        allow=[{"email": "*@example.com"}, {"org.team": ["red", "blue*"], "sub": "svc-*"}],
        group_rules=[
            GroupRule(when={"email": "admin@*"}, add=["admins"]),
            GroupRule(when={"org.level": "[0-9]"}, add=["levelled"]),
        ],
    ),
    "kubernetes": IssuerConfig(
        name="kubernetes",
        preset="kubernetes",
        issuer="https://kubernetes.default.svc",
        audiences=[AUDIENCE],
        one_time_tokens=True,
    ),
}


def _verifier(name: str) -> TokenVerifier:
    config = ISSUERS[name]
    keys = IssuerKeys(config, KeyDocument({"keys": [KEY.public_jwk()]}), clock=Clock())
    return TokenVerifier(
        IdentityConfig(issuers=[config]), {name: keys}, clock=lambda: NOW, shared=None
    )


@pytest.fixture
async def verifiers() -> dict[str, TokenVerifier]:
    """Made in the test's own event loop; hypothesis runs every example inside one call."""
    made = {name: _verifier(name) for name in ISSUERS}
    for verifier in made.values():
        for keys in verifier.issuer_keys.values():
            await keys.refresh()
    return made


def _near(value: float) -> st.SearchStrategy[Any]:
    """Times around ``value``, and anything else JSON can hold."""
    return (
        st.integers(int(value) - 4000, int(value) + 4000)
        | st.floats(value - 4000, value + 4000)
        | st.floats(allow_nan=False)
        | JSON
    )


_STRINGS = st.sampled_from(["", "x", "svc-1", "admin@example.com", "a@example.com"]) | JSON
CLAIMS = st.fixed_dictionaries(
    {},
    optional={
        "iss": st.sampled_from([ISSUER, "https://kubernetes.default.svc", ISSUER + "/"]) | JSON,
        "sub": _STRINGS
        | st.just("system:serviceaccount:ns:sa")
        | st.just("system:serviceaccount::"),
        "aud": st.sampled_from([AUDIENCE, [AUDIENCE], ["x", AUDIENCE], "other"]) | JSON,
        "exp": _near(NOW + 300),
        "iat": _near(NOW),
        "nbf": _near(NOW),
        "jti": _STRINGS,
        "email": _STRINGS,
        "org": st.fixed_dictionaries(
            {}, optional={"team": st.sampled_from(["red", "blue-2", ""]) | JSON, "level": JSON}
        )
        | JSON,
        "org.team": st.sampled_from(["red", "green"]) | JSON,
        "groups": st.lists(st.text(max_size=6) | JSON, max_size=3) | JSON,
        "scope": st.text(max_size=20) | JSON,
        "scp": st.lists(st.text(max_size=6), max_size=3) | JSON,
        "kubernetes.io": st.fixed_dictionaries(
            {},
            optional={
                "namespace": st.sampled_from(["ns", ""]) | JSON,
                "serviceaccount": st.fixed_dictionaries({"name": st.just("sa") | JSON}) | JSON,
                "pod": st.fixed_dictionaries({"name": st.just("p") | JSON}) | JSON,
            },
        )
        | JSON,
    },
).flatmap(lambda c: st.dictionaries(st.text(max_size=6), JSON, max_size=3).map(lambda x: x | c))


def check_identity(identity: Identity, config: IssuerConfig) -> None:
    """What policy and the audit rely on in a verified identity."""
    claims = identity.claims
    assert identity.issuer == config.issuer == claims["iss"]
    assert identity.issuer_name == config.name
    assert isinstance(identity.subject, str)
    assert identity.subject
    assert identity.principal == f"{config.name}/{identity.subject}"
    assert identity.expires_at + config.clock_skew > NOW
    assert identity.expires_at - float(claims["iat"]) <= config.max_token_lifetime
    assert all(isinstance(g, str) and g for g in identity.groups)
    assert all(isinstance(s, str) and s for s in identity.scopes)
    aud = claims["aud"]
    assert (aud in config.audiences) if isinstance(aud, str) else set(aud) & set(config.audiences)


@fuzz(400)
@given(
    issuer=st.sampled_from(sorted(ISSUERS)),
    claims=CLAIMS,
    header=st.dictionaries(st.sampled_from(["typ", "cty", "x-any"]), JSON, max_size=2),
)
async def test_a_signed_token_with_any_claims_is_refused_or_verified(
    verifiers: dict[str, TokenVerifier], issuer: str, claims: dict[str, Any], header: dict[str, Any]
) -> None:
    """Signed with the issuer's real key, so every claim check runs: only 401 or a sound
    identity can come out, whatever the claims hold."""
    token = KEY.sign(claims, header)
    try:
        identity = await verifiers[issuer].verify(token)
    except AuthenticationFailed as exc:
        refused: AuthenticationFailed | None = exc
    else:
        refused = None
    if refused is not None:
        assert refused.status == 401
        assert token not in refused.message
        return
    check_identity(identity, ISSUERS[issuer])


# --- the credential headers ----------------------------------------------------------------

_HEADER_NAME = st.sampled_from(
    [b"authorization", b"x-api-key", b"proxy-authorization", b"cookie", b"Authorization"]
)
_HEADER_VALUE = st.binary(max_size=60) | st.builds(
    lambda scheme, sep, token: scheme + sep + token,
    st.sampled_from([b"Bearer", b"bearer", b"BEARER", b"Basic", b"", b"Bearer\t"]),
    st.sampled_from([b" ", b"  ", b"", b"\t"]),
    st.binary(max_size=40) | st.text(alphabet=_NEAR_B64, max_size=40).map(str.encode),
)


@fuzz(400)
@given(st.lists(st.tuples(_HEADER_NAME, _HEADER_VALUE), max_size=4))
async def test_any_credential_headers_are_refused_or_read_then_refused(
    verifiers: dict[str, TokenVerifier], headers: list[tuple[bytes, bytes]]
) -> None:
    """The data path's and the admin API's way in: unsigned garbage never gets further than
    a 401, and a credential read from headers is plain ASCII."""
    try:
        credential = extract_credential(headers)
    except AuthenticationFailed as exc:
        assert_401(exc)
        return
    assert credential
    assert credential.isascii()
    assert credential.encode() == credential.encode().strip()  # ASCII white space only
    with pytest.raises(AuthenticationFailed):
        await verifiers["oidc"].verify(credential)


async def test_the_fuzzed_claims_do_reach_a_verified_identity(
    verifiers: dict[str, TokenVerifier],
) -> None:
    """The claims strategy is no strawman: a token it can draw verifies (so the fuzzer walks
    the success path too, not only refusals)."""
    claims = {
        "iss": ISSUER,
        "sub": "svc-1",
        "aud": AUDIENCE,
        "iat": int(NOW),
        "exp": int(NOW) + 300,
        "email": "admin@example.com",
        "org": {"team": "red", "level": "7"},
    }
    identity = await verifiers["oidc"].verify(KEY.sign(claims))
    check_identity(identity, ISSUERS["oidc"])
    assert identity.groups == {"admins", "levelled"}
