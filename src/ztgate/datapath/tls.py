"""Serving HTTPS: one SSL context per process, its certificate reloaded when the files change.

Renewing a certificate must not drop a connection: the live context gets the new chain
(``load_cert_chain`` again), which the next handshakes use while connections already open keep
theirs. A chain that fails to load (half-written files, a key that does not match) is tried on
a scratch context first, so the live one keeps the last good pair and the failure is reported
(``/readyz`` warnings, the admin API's status, the log) until good files arrive.

uvicorn builds the context through ``ssl_context_factory`` in every worker process, before the
application exists; the gateway finds the same object with :func:`server_tls` (one per
settings per process) to watch its files.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ztgate.config.model import ServerTLSConfig

log = logging.getLogger("ztgate")

_LOADED: dict[tuple[Any, ...], ServerTLS] = {}


class ServerTLS:
    """The listener's SSL context and the files it came from."""

    def __init__(self, settings: ServerTLSConfig) -> None:
        self.settings = settings
        self.last_error: str | None = None
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.set_alpn_protocols(["http/1.1"])
        if settings.client_ca_file is not None:
            self.context.load_verify_locations(cafile=settings.client_ca_file)
            self.context.verify_mode = (
                ssl.CERT_REQUIRED
                if settings.client_certificates == "required"
                else ssl.CERT_OPTIONAL
            )
        self._fingerprint = self._read()
        # At start a bad pair is fatal: refuse to start rather than serve without it.
        self.context.load_cert_chain(settings.cert_file, settings.key_file)

    def _read(self) -> bytes:
        digest = hashlib.sha256()
        for path in (self.settings.cert_file, self.settings.key_file):
            digest.update(Path(path).read_bytes())
        return digest.digest()

    def reload(self) -> bool:
        """Load the files again if they changed; True when the live context has a new chain."""
        try:
            fingerprint = self._read()
            if fingerprint == self._fingerprint:
                return False
            scratch = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            scratch.load_cert_chain(self.settings.cert_file, self.settings.key_file)
            self.context.load_cert_chain(self.settings.cert_file, self.settings.key_file)
        except (OSError, ssl.SSLError, ValueError) as exc:
            error = (
                f"the TLS certificate could not be reloaded ({type(exc).__name__}: {exc}); "
                "the last good one is served"
            )
            if error != self.last_error:
                log.error(error, extra={"event": "tls_reload_failed"})
            self.last_error = error
            return False
        self._fingerprint = fingerprint
        self.last_error = None
        log.warning("TLS certificate reloaded", extra={"event": "tls_reloaded"})
        return True

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reload_interval)
            self.reload()


def _key(settings: ServerTLSConfig) -> tuple[Any, ...]:
    return tuple(settings.model_dump().items())


def server_tls(settings: ServerTLSConfig) -> ServerTLS:
    """This process' context for these settings (made on first use)."""
    found = _LOADED.get(_key(settings))
    if found is None:
        found = _LOADED[_key(settings)] = ServerTLS(settings)
    return found


def context_factory(settings: ServerTLSConfig) -> Callable[[Any, Any], ssl.SSLContext]:
    """What uvicorn calls for the listener's context in each worker (a plain object, so it
    pickles into spawned workers)."""
    return _Factory(settings)


class _Factory:
    def __init__(self, settings: ServerTLSConfig) -> None:
        self.settings = settings

    def __call__(self, _config: Any, _default: Any) -> ssl.SSLContext:
        return server_tls(self.settings).context


def client_identities(tls: dict[str, Any] | None) -> tuple[str, ...]:
    """What a verified client certificate says of its holder, as policy matches it:
    ``CN=...`` for its subject's common name, ``DNS:...``, ``URI:...`` (SPIFFE ids),
    ``email:...`` for its subject alternative names. Empty without a verified certificate."""
    if not tls:
        return ()
    peer = tls.get("peer")
    if not isinstance(peer, dict):
        return ()
    names: list[str] = []
    for rdn in peer.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                names.append(f"CN={value}")
    for kind, value in peer.get("subjectAltName", ()):
        label = {"DNS": "DNS", "URI": "URI", "email": "email", "IP Address": "IP"}.get(kind)
        if label is not None:
            names.append(f"{label}:{value}")
    return tuple(names)
