"""Reading the audit back, for ``ztgate audit``/``sessions`` and the admin API alike: searches
joined with their outcomes, single events, verification, checkpoints and decoded sessions.

It holds what reading needs beyond the store: the key that opens sealed recordings and the
public keys that verify checkpoints. Errors stay typed (:class:`StoreUnavailable`,
:class:`SealError`); the CLI and the admin API each say them in their own way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ztgate.audit.chain import VerifyReport, verify_chain_async
from ztgate.audit.events import AuditQuery, Checkpoint, StoredEvent
from ztgate.audit.recording import Recording
from ztgate.audit.sealing import Sealer, load_recording
from ztgate.audit.signing import (
    SigningKey,
    key_id,
    load_public_key,
    public_key_pem,
    sqlite_key_path,
)
from ztgate.audit.store.base import AuditStore, SessionQuery, SessionSummary, StoredRecording
from ztgate.audit.views import checkpoint_document, request_document
from ztgate.config.model import GatewayConfig

CHECKPOINTS_FORMAT = "ztgate-audit-checkpoints/1"


class AuditReader:
    def __init__(
        self,
        store: AuditStore,
        *,
        sealer: Sealer | None = None,
        public_keys: Mapping[str, Ed25519PublicKey] | None = None,
    ) -> None:
        self.store = store
        self.sealer = sealer
        self.public_keys = dict(public_keys or {})

    @classmethod
    def from_config(cls, config: GatewayConfig, store: AuditStore) -> AuditReader:
        """With the configured recording key and the public half of the signing key (read,
        never created: reading the audit must not change what signs it). ValueError when the
        configured signing key cannot be read."""
        encryption_key = config.audit.recordings.encryption_key
        sealer = (
            None
            if encryption_key is None
            else Sealer.from_base64(encryption_key.get_secret_value())
        )
        signing = configured_signing_key(config)
        keys = {} if signing is None else {signing.key_id: signing.public_key()}
        return cls(store, sealer=sealer, public_keys=keys)

    async def search(self, query: AuditQuery) -> list[dict[str, Any]]:
        """Matching events newest first, each request event with its outcome (or null)."""
        events = await self.store.search(query)
        return [await self._with_outcome(event) for event in events]

    async def event(self, seq: int) -> dict[str, Any] | None:
        events = self.store.events(after_seq=seq - 1)
        try:
            async for event in events:
                return await self._with_outcome(event) if event.seq == seq else None
        finally:
            closer = getattr(events, "aclose", None)  # the store's cursor, at once
            if closer is not None:
                await closer()
        return None

    async def _with_outcome(self, event: StoredEvent) -> dict[str, Any]:
        outcome = None
        if event.kind == "request" and event.request_id is not None:
            found = await self.store.search(
                AuditQuery(request_id=event.request_id, kinds=("outcome",), limit=1)
            )
            outcome = found[0] if found else None
        document = request_document(event, outcome)
        if event.kind != "request":
            del document["outcome"], document["outcome_seq"]
        return document

    async def verify(self, exported: Sequence[Checkpoint] = ()) -> VerifyReport:
        """Recompute the whole chain and check every stored (and ``exported``) checkpoint."""
        checkpoints = await self.store.checkpoints()
        return await verify_chain_async(
            self.store.events(), checkpoints, self.public_keys, exported
        )

    async def checkpoints_document(self) -> dict[str, Any]:
        """Every checkpoint and the public keys that verify them: what to keep elsewhere."""
        checkpoints = await self.store.checkpoints()
        return {
            "format": CHECKPOINTS_FORMAT,
            "checkpoints": [checkpoint_document(c) for c in checkpoints],
            "public_keys": [
                {"key_id": kid, "algorithm": "Ed25519", "public_key": public_key_pem(key)}
                for kid, key in sorted(self.public_keys.items())
            ],
        }

    async def sessions(self, query: SessionQuery) -> list[SessionSummary]:
        return await self.store.sessions(query)

    async def session(self, session_id: str) -> list[Recording | StoredRecording]:
        """A session's recordings oldest first, opened; a purged one stays as its metadata.
        SealError when one is sealed and the configured key (if any) does not open it."""
        opened: list[Recording | StoredRecording] = []
        for stored in await self.store.recordings(session_id):
            recording = load_recording(stored, sealer=self.sealer)
            opened.append(stored if recording is None else recording)
        return opened


def configured_signing_key(config: GatewayConfig) -> SigningKey | None:
    """The signing key the gateway uses, if it is configured or was created already."""
    audit = config.audit
    if audit.signing_key is not None:
        return SigningKey.from_pem(audit.signing_key.get_secret_value())
    path = Path(audit.signing_key_file) if audit.signing_key_file else None
    if path is None:
        path = sqlite_key_path(config.store.url)
        if path is None or not path.exists():
            return None
    try:
        return SigningKey.from_pem(path.read_bytes())
    except OSError as exc:
        raise ValueError(f"cannot read the audit signing key {path}: {exc.strerror}") from None


def public_keys_document(document: Mapping[str, Any]) -> dict[str, Ed25519PublicKey]:
    """The public keys of an exported checkpoints document, by key id (checked against it)."""
    keys = {}
    for entry in document.get("public_keys") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("public_key"), str):
            raise ValueError("public_keys: each entry needs a public_key (PEM)")
        key = load_public_key(entry["public_key"])
        keys[key_id(key)] = key
    return keys
