"""What the inspector learns about a request and needs again later in the same request."""

from __future__ import annotations

from dataclasses import dataclass

from ztgate.inspection.fields import TextField
from ztgate.inspection.pseudonyms import PseudonymVault
from ztgate.inspection.scanner import Finding


@dataclass(slots=True)
class InspectionState:
    """Each text field with its findings (scanned once, before policy decides), and the
    pseudonyms issued for this request, which its response restores."""

    scanned: list[tuple[TextField, list[Finding]]]
    vault: PseudonymVault | None = None
