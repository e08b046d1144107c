"""Token validation cost: a verified-token cache hit, and a miss (full signature and claim
checks) for RS256, ES256 and EdDSA, each beside PyJWT's own ``jwt.decode`` measured in the same
run as the baseline (what a gateway without ztgate's cache pays on every request).

Run: ``.venv/bin/python bench/identity.py`` (also part of ``make bench``).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from ztgate.config.model import IdentityConfig, IssuerConfig
from ztgate.identity.keys import IssuerKeys
from ztgate.identity.verifier import TokenVerifier

ISSUER = "https://idp.bench.invalid"
AUDIENCE = "ztgate"


def _key(alg: str) -> tuple[Any, dict[str, Any]]:
    if alg == "RS256":
        private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
        jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    else:
        private = ed25519.Ed25519PrivateKey.generate()
        jwk = OKPAlgorithm.to_jwk(private.public_key(), as_dict=True)
    return private, {**jwk, "kid": alg.lower(), "alg": alg, "use": "sig"}


def _tokens(private: Any, alg: str, count: int) -> list[str]:
    now = int(time.time())
    return [
        jwt.encode(
            {"iss": ISSUER, "aud": AUDIENCE, "sub": f"bench/{i}", "iat": now, "exp": now + 3000},
            private,
            algorithm=alg,
            headers={"kid": alg.lower()},
        )
        for i in range(count)
    ]


async def _per_call_us(call: Callable[[str], Awaitable[object]], tokens: list[str]) -> float:
    """Median over batches of the mean time per call, in microseconds."""
    batch = max(1, len(tokens) // 20)
    samples = []
    for start in range(0, len(tokens), batch):
        chunk = tokens[start : start + batch]
        began = time.perf_counter_ns()
        for token in chunk:
            await call(token)
        samples.append((time.perf_counter_ns() - began) / len(chunk) / 1000)
    return statistics.median(samples)


async def measure(alg: str, count: int) -> dict[str, float]:
    private, public = _key(alg)
    config = IssuerConfig(name="bench", issuer=ISSUER, audiences=[AUDIENCE], algorithms=[alg])

    async def document() -> object:
        return {"keys": [public]}

    keys = IssuerKeys(config, document)
    verifier = TokenVerifier(IdentityConfig(issuers=[config]), {"bench": keys})
    await keys.refresh()
    tokens = _tokens(private, alg, count)
    pyjwk = jwt.PyJWK(public)

    async def pyjwt_decode(token: str) -> object:
        return jwt.decode(token, pyjwk, algorithms=[alg], audience=AUDIENCE, issuer=ISSUER)

    baseline = await _per_call_us(pyjwt_decode, tokens)
    miss = await _per_call_us(verifier.verify, tokens)  # every token new: full verification
    hit = await _per_call_us(verifier.verify, [tokens[0]] * count)  # cached after the first
    return {"pyjwt": baseline, "miss": miss, "hit": hit}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2000, help="tokens per algorithm (2000)")
    count = parser.parse_args().tokens
    print("| algorithm | PyJWT decode (baseline) | ztgate miss | ztgate hit | hit vs baseline |")
    print("|---|---:|---:|---:|---:|")
    for alg in ("RS256", "ES256", "EdDSA"):
        result = asyncio.run(measure(alg, count))
        print(
            f"| {alg} | {result['pyjwt']:.1f} us | {result['miss']:.1f} us | "
            f"{result['hit']:.2f} us | {result['pyjwt'] / result['hit']:.0f}x faster |"
        )


if __name__ == "__main__":
    main()
