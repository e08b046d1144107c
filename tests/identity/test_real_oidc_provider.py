"""A real OpenID provider (npm oidc-provider) issuing client-credentials JWTs to real callers,
through the real gateway: tokens pass, an IdP outage is ridden out, key rotation is picked up."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import anthropic
import pytest

from tests.identity.oidc_provider import PACKAGE, OidcProvider
from tests.stackrunner import RunningStack

pytestmark = pytest.mark.skipif(not PACKAGE.exists(), reason="run `make setup` (npm tools)")

MODEL = "claude-haiku-5-5"
HELLO = [{"role": "user", "content": "hello from a CI runner"}]


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    idp = OidcProvider(tmp_path_factory.mktemp("oidc"))
    idp.start()
    yield idp
    idp.stop()


@pytest.fixture(scope="module")
def gateway(provider: OidcProvider) -> Iterator[RunningStack]:
    running = RunningStack(
        identity={
            "issuers": [
                {
                    "name": "corp",
                    "issuer": provider.issuer,
                    "audiences": [provider.audience],
                    "key_refetch_min_interval": "1s",
                }
            ]
        }
    )
    yield running
    running.close()


def call(gateway: RunningStack, sdk: Callable[..., anthropic.Anthropic], token: str) -> str:
    client = sdk(base_url=gateway.url, auth_token=token)
    message = client.messages.create(model=MODEL, max_tokens=32, messages=HELLO)  # type: ignore[arg-type]
    return message.content[0].text  # type: ignore[union-attr]


def test_provider_tokens_pass_and_ride_out_an_outage_and_a_rotation(
    provider: OidcProvider, gateway: RunningStack, sdk: Callable[..., anthropic.Anthropic]
) -> None:
    first, unused = (
        provider.token(),
        provider.token(client_id="data-agent", client_secret="data-agent-secret"),
    )
    assert "hello from a CI runner" in call(gateway, sdk, first)

    provider.stop()  # the IdP goes down: cached keys keep serving, even for unseen tokens
    assert "hello" in call(gateway, sdk, unused)
    assert gateway.stack.server.started

    provider.start(rotate=True)  # back, with a new signing key only
    rotated = provider.token()
    time.sleep(1.1)  # past key_refetch_min_interval: the unknown kid triggers one refetch
    assert "hello" in call(gateway, sdk, rotated)
    assert gateway.stack.gateway.verifier.status()["corp"]["ready"] is True


def test_wrong_audience_from_the_provider_is_refused(
    provider: OidcProvider, gateway: RunningStack, sdk: Callable[..., anthropic.Anthropic]
) -> None:
    if not provider.running:
        provider.start()
    token = provider.token(resource="https://another-service.internal")
    with pytest.raises(anthropic.AuthenticationError, match="audience not accepted"):
        call(gateway, sdk, token)


def test_identity_from_a_provider_token(provider: OidcProvider, gateway: RunningStack) -> None:
    if not provider.running:
        provider.start()
    token = provider.token(client_id="data-agent", client_secret="data-agent-secret")
    identity = gateway.run(gateway.stack.gateway.verifier.verify(token))
    assert identity.principal == "corp/data-agent"
    assert identity.scopes == {"skill:xlsx"}
