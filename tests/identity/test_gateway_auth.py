"""Authentication at the gateway: tokens from the issuer's JWKS over HTTP, every refusal a 401."""

from __future__ import annotations

import time
from collections.abc import Callable

import anthropic
import pytest

from tests.identity.keyring import SigningKey
from tests.stackrunner import RunningStack

MODEL = "claude-sonnet-5-5"
HELLO = [{"role": "user", "content": "hi"}]


def refused(stack: RunningStack, **credentials: str) -> anthropic.AuthenticationError:
    before = len(stack.received())
    with (
        anthropic.Anthropic(base_url=stack.url, max_retries=0, **credentials) as client,  # type: ignore[arg-type]
        pytest.raises(anthropic.AuthenticationError) as info,
    ):
        client.messages.create(model=MODEL, max_tokens=8, messages=HELLO)  # type: ignore[arg-type]
    assert len(stack.received()) == before, "a refused request reached the upstream"
    assert info.value.status_code == 401
    assert info.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    return info.value


def message(error: anthropic.AuthenticationError) -> str:
    return str(error.body["error"]["message"])  # type: ignore[index]


def test_missing_token_is_401(stack: RunningStack, sdk: Callable[..., anthropic.Anthropic]) -> None:
    client = sdk(
        base_url=stack.url,
        api_key="x",
        default_headers={"Authorization": anthropic.Omit()},
    )
    with pytest.raises(anthropic.AuthenticationError) as info:
        client.models.list()
    assert "no credential" in message(info.value)


def test_expired_token_is_401(stack: RunningStack) -> None:
    now = int(time.time())
    token = stack.token(claims={"iat": now - 1000, "nbf": now - 1000, "exp": now - 500})
    assert "expired" in message(refused(stack, auth_token=token))


def test_token_signed_by_an_unknown_key_is_401(stack: RunningStack) -> None:
    stranger = SigningKey.generate("ES256")
    now = int(time.time())
    token = stranger.sign(
        {
            "iss": stack.stack.issuer.base_url,
            "sub": "demo/mallory",
            "aud": "ztgate",
            "iat": now,
            "exp": now + 300,
        },
        {"kid": stack.stack.issuer.kid},
    )
    error = refused(stack, auth_token=token)
    assert "signature" in message(error)
    assert token not in message(error)


def test_token_for_another_audience_is_401(stack: RunningStack) -> None:
    token = stack.token(audience="some-other-service")
    assert "audience not accepted" in message(refused(stack, auth_token=token))


def test_token_from_an_untrusted_issuer_is_401(stack: RunningStack) -> None:
    token = stack.token(issuer="https://evil.example")
    assert "issuer is not trusted" in message(refused(stack, api_key=token))


def test_garbage_token_is_401(stack: RunningStack) -> None:
    assert "malformed" in message(refused(stack, api_key="sk-ant-api03-not-a-jwt"))


def test_valid_token_in_each_header_passes(
    stack: RunningStack, sdk: Callable[..., anthropic.Anthropic]
) -> None:
    token = stack.token()
    for credentials in ({"auth_token": token}, {"api_key": token}):
        assert sdk(base_url=stack.url, **credentials).models.list().data
    proxy = sdk(
        base_url=stack.url,
        api_key="x",
        default_headers={
            "Authorization": anthropic.Omit(),
            "Proxy-Authorization": f"Bearer {token}",
        },
    )
    assert proxy.models.list().data
