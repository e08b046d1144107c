"""What the inspector learns about a request and needs again later in the same request."""

from __future__ import annotations

from dataclasses import dataclass

from ztgate.core.texts import TextField
from ztgate.inspection.deep import Scan
from ztgate.inspection.pseudonyms import PseudonymVault


@dataclass(slots=True)
class InspectionState:
    """The strings that carry findings (scanned once, before policy decides), and the
    pseudonyms issued for this request, which its response restores."""

    scanned: list[tuple[TextField, Scan]]
    in_keys: list[tuple[str, Scan]]  # keys of the API's objects that carry findings
    tainted: set[str]  # keys that carry findings: never spelled in a path
    vault: PseudonymVault | None = None
