"""A local OpenID issuer for the demo and tests: discovery, a JWKS, and tokens on demand.

It signs with a fresh ES256 key per run and serves over plain http on loopback, which ztgate
accepts for loopback issuers only. Never part of ``serve``.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

DEMO_AUDIENCE = "ztgate"


class DevIssuer:
    def __init__(self) -> None:
        self.base_url = ""
        self._runner: web.AppRunner | None = None
        self.rotate_key()

    def rotate_key(self) -> None:
        """Replace the signing key; the old one disappears from the JWKS at once."""
        self._key = ec.generate_private_key(ec.SECP256R1())
        self.kid = f"dev-{uuid.uuid4().hex[:12]}"

    def jwks(self) -> dict[str, Any]:
        public = ECAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        return {"keys": [{**public, "kid": self.kid, "alg": "ES256", "use": "sig"}]}

    def mint(
        self,
        subject: str,
        *,
        audience: str = DEMO_AUDIENCE,
        ttl: int = 900,
        claims: dict[str, Any] | None = None,
        issuer: str | None = None,
    ) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": issuer or self.base_url,
            "sub": subject,
            "aud": audience,
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": uuid.uuid4().hex,
            **(claims or {}),
        }
        return jwt.encode(payload, self._key, algorithm="ES256", headers={"kid": self.kid})

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self._discovery)
        app.router.add_get("/jwks", self._jwks)
        app.router.add_post("/token", self._token)
        return app

    async def _discovery(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "issuer": self.base_url,
                "jwks_uri": f"{self.base_url}/jwks",
                "token_endpoint": f"{self.base_url}/token",
                "id_token_signing_alg_values_supported": ["ES256"],
            }
        )

    async def _jwks(self, request: web.Request) -> web.Response:
        return web.json_response(self.jwks())

    async def _token(self, request: web.Request) -> web.Response:
        """Mint a token for a named subject: a stand-in for a workload's real IdP."""
        form = await request.post()
        subject = str(form.get("subject", "demo/anonymous-test-caller"))
        token = self.mint(subject)
        return web.json_response({"access_token": token, "token_type": "Bearer", "expires_in": 900})

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = self._runner.addresses[0]
        self.base_url = f"http://{bound[0]}:{bound[1]}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
