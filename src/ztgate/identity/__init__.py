"""Who can ask: turn a caller's bearer token into a verified identity, or refuse it."""

from ztgate.core.identity import Identity
from ztgate.identity.credentials import extract_credential
from ztgate.identity.verifier import TokenVerifier

__all__ = ["Identity", "TokenVerifier", "extract_credential"]
