"""A mask obligation in plain data: which action applies to which finding.

Policy builds plans (``mask:`` on its rules), inspection applies them; both read them from here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Literal, get_args

from ztgate.core.findings import Finding

Action = Literal["redact", "pseudonymize", "hash", "block", "report"]
ACTIONS: frozenset[str] = frozenset(get_args(Action))


def _check_actions(where: str, actions: Mapping[str, Action]) -> Mapping[str, Action]:
    for key, action in actions.items():
        if action not in ACTIONS:
            raise ValueError(f"{where} {key!r}: unknown action {action!r}")
    return MappingProxyType(dict(actions))


# From least to most protective: when several policy rules apply, the strictest wins.
STRICTNESS: Mapping[str, int] = MappingProxyType(
    {"report": 0, "pseudonymize": 1, "hash": 2, "redact": 3, "block": 4}
)


@dataclass(frozen=True, slots=True)
class MaskPlan:
    """Which action applies to which finding: per detector id, else per category, else
    ``default``. A finding no rule covers (``default=None``) is left alone and unrecorded.

    ``also`` holds the plans of other policy rules that apply to the same request: each
    finding gets the strictest action any of them gives it."""

    by_detector: Mapping[str, Action]
    by_category: Mapping[str, Action]
    default: Action | None = None
    also: tuple[MaskPlan, ...] = ()
    # Actions that cannot apply where the plan is used, and what they become there.
    substitutes: Mapping[str, Action] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        # Frozen in depth: a plan is shared by every request its policy rule matches.
        object.__setattr__(self, "by_detector", _check_actions("detector", self.by_detector))
        object.__setattr__(self, "by_category", _check_actions("category", self.by_category))
        if self.default is not None and self.default not in ACTIONS:
            raise ValueError(f"unknown default action {self.default!r}")

    @staticmethod
    def strictest(plans: Sequence[MaskPlan]) -> MaskPlan | None:
        """One plan for several rules' plans (None for none)."""
        layers = [layer for plan in plans for layer in (plan, *plan.also)]
        if not layers:
            return None
        if len(layers) == 1:
            return layers[0]
        first, *rest = layers
        return MaskPlan(
            first.by_detector,
            first.by_category,
            first.default,
            tuple(replace(layer, also=()) for layer in rest),
        )

    def substituting(self, substitutes: Mapping[str, Action]) -> MaskPlan:
        """This plan where some actions become others: on responses ``pseudonymize`` only
        reports (the caller may see its own values); in batches, whose results cannot be
        restored, it redacts."""
        return replace(self, substitutes=MappingProxyType(dict(substitutes)))

    def action_for(self, finding: Finding) -> Action | None:
        """The detector's own rule beats its category's, which beats the default."""
        action = self._own_action(finding.detector, finding.category)
        for other in self.also:
            candidate = other._own_action(finding.detector, finding.category)
            if candidate is not None and (
                action is None or STRICTNESS[candidate] > STRICTNESS[action]
            ):
                action = candidate
        if action is not None and self.substitutes:
            action = self.substitutes.get(action, action)
        return action

    def _own_action(self, detector: str, category: str) -> Action | None:
        action = self.by_detector.get(detector)
        if action is None:
            action = self.by_category.get(category, self.default)
        return action
