"""How signals add up to the hits policy decides on."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ztgate.core.guardrails import (
    JUDGED_BENIGN,
    GuardrailHit,
    Signal,
    combine,
    hits_from_json,
    hits_json,
)


def test_one_hit_per_category_and_place() -> None:
    hits = combine(
        [
            Signal("jailbreak", "a", "user", 0.5),
            Signal("jailbreak", "b", "user", 0.5),
            Signal("jailbreak", "a", "system", 0.4),
        ]
    )
    assert hits == (
        GuardrailHit("jailbreak", "system", 0.4, frozenset({"a"})),
        GuardrailHit("jailbreak", "user", 0.75, frozenset({"a", "b"})),
    )


def test_a_check_firing_again_counts_once() -> None:
    (hit,) = combine([Signal("exfiltration", "x", "user", 0.5)] * 10)
    assert hit.score == 0.5


def test_injection_in_text_no_person_wrote_is_indirect() -> None:
    for place in ("tool_result", "document", "tool_definition"):
        (hit,) = combine([Signal("prompt_injection", "a", place, 0.9)])
        assert hit.category == "indirect_injection"
    (hit,) = combine([Signal("exfiltration", "a", "tool_result", 0.9)])
    assert hit.category == "exfiltration"


def test_a_benign_verdict_caps_the_hit() -> None:
    (hit,) = combine(
        [Signal("jailbreak", "a", "user", 0.7), Signal("jailbreak", JUDGED_BENIGN, "user", 0.1)]
    )
    assert hit.score == 0.1


signals = st.lists(
    st.builds(
        Signal,
        st.sampled_from(["prompt_injection", "jailbreak", "smuggling"]),
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from(["user", "tool_result"]),
        st.floats(0, 1),
    ),
    max_size=12,
)


@given(signals, signals)
def test_more_evidence_never_lowers_a_score(first: list[Signal], more: list[Signal]) -> None:
    before = {(h.category, h.location): h.score for h in combine(first)}
    after = {(h.category, h.location): h.score for h in combine(first + more)}
    for key, score in before.items():
        assert after[key] >= score - 1e-9
    assert all(0 <= s <= 1 for s in after.values())


@given(signals)
def test_hits_survive_the_audit_record(found: list[Signal]) -> None:
    hits = combine(found)
    assert hits_from_json(hits_json(hits)) == hits
