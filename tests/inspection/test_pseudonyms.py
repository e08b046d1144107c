"""Pseudonym vaults: consistency, tolerant restore, never inventing a value, streaming."""

from __future__ import annotations

import itertools

from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.fuzzing import fuzz
from tests.inspection.test_streaming import chunkings
from ztgate.inspection.pseudonyms import PseudonymVault
from ztgate.inspection.streaming import StreamRestorer

VALUES = ["alice@example.org", "bob@example.net", "+44 20 7946 0958", "a.b*c(d)[e]"]


def filled() -> PseudonymVault:
    vault = PseudonymVault()
    vault.pseudonym("EMAIL", VALUES[0])
    vault.pseudonym("EMAIL", VALUES[1])
    vault.pseudonym("PHONE", VALUES[2])
    vault.pseudonym("SECRET", VALUES[3])
    return vault


def test_same_value_same_pseudonym_counters_per_label() -> None:
    vault = PseudonymVault()
    assert vault.pseudonym("EMAIL", "a@x.org") == "<EMAIL_1>"
    assert vault.pseudonym("PHONE", "+1 202 555 0101") == "<PHONE_1>"
    assert vault.pseudonym("EMAIL", "b@x.org") == "<EMAIL_2>"
    assert vault.pseudonym("EMAIL", "a@x.org") == "<EMAIL_1>"
    assert vault.issued == {"EMAIL_1", "EMAIL_2", "PHONE_1"}
    assert "a@x.org" not in repr(vault.issued)


def test_tolerant_restore() -> None:
    vault = filled()
    text = "<email_1> <**EMAIL_2**> <_PHONE_1_> EMAIL_1 <EMAIL\\_2> < SECRET_1 > **EMAIL_1**"
    assert vault.restore(text) == (
        f"{VALUES[0]} {VALUES[1]} {VALUES[2]} {VALUES[0]} {VALUES[1]} {VALUES[3]} **{VALUES[0]}**"
    )


def test_restore_leaves_look_alikes() -> None:
    vault = filled()
    text = "<EMAIL_9> EMAIL_12 MY_EMAIL_1 EMAIL_1x <PHONE_2> <E.AIL_1> <EMAIL_> [EMAIL_1"
    assert vault.restore(text) == text.replace("[EMAIL_1", f"[{VALUES[0]}")


def test_empty_vault_restores_nothing() -> None:
    assert PseudonymVault().restore("<EMAIL_1> EMAIL_1") == "<EMAIL_1> EMAIL_1"


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("<>*_ \\xEMAILPHONE_9 .\n")), max_size=80))
def test_restore_never_invents_a_value(noise: str) -> None:
    """Text built from look-alikes of never-issued pseudonyms stays exactly as it is."""
    vault = PseudonymVault()
    vault.pseudonym("EMAIL", "secret@example.org")  # issues EMAIL_1 only
    assert vault.restore(noise.replace("1", "")) == noise.replace("1", "")
    out = vault.restore(noise + " <EMAIL_1>")
    assert out.count("secret@example.org") == 1


@settings(max_examples=200, deadline=None)
@given(
    words=st.lists(st.sampled_from(["hi", " ", "\n", "<", ">", "*", "x_1", *VALUES]), max_size=30)
)
def test_pseudonymize_then_restore_round_trips(words: list[str]) -> None:
    vault = PseudonymVault()
    masked = "".join(
        vault.pseudonym("EMAIL" if "@" in w else "VALUE", w) if w in VALUES else w for w in words
    )
    assert vault.restore(masked) == "".join(words)


@settings(max_examples=200, deadline=None)
@given(
    text=st.lists(
        st.sampled_from(["<EMAIL_1>", "<email_2>", "EMAIL_1", "<**PHONE_1**>", "EMAIL_12", "<",
                         "<EMAIL_9>", "_", "*", " ", "x", "EMAIL", "\\_", ">", "1"]),
        max_size=25,
    ).map("".join),
    sizes=st.lists(st.integers(1, 9), max_size=5),
)  # fmt: skip
@example("<EMAIL_1\\_EMAIL_1>", [])
def test_stream_restore_equals_whole_restore(text: str, sizes: list[int]) -> None:
    vault = filled()
    restorer = StreamRestorer(vault)
    out = "".join(restorer.feed(c) for c in chunkings(text, sizes)) + restorer.flush()
    assert out == vault.restore(text)


def test_stream_restore_releases_plain_text_at_once() -> None:
    restorer = StreamRestorer(filled())
    assert restorer.feed("Hello there, ") == "Hello there, "
    assert restorer.feed("write to <EMA") == "write to "
    assert restorer.feed("IL_1> now") == f"{VALUES[0]} now"
    assert restorer.feed(" EMAIL_") == " "
    assert restorer.feed("2.") == f"{VALUES[1]}."
    assert restorer.flush() == ""


def test_a_candidate_not_issued_hides_nothing() -> None:
    """``<EMAIL_1\\_X>`` is no surrogate, but the whole word ``EMAIL_1`` in it is one. The
    whole restore used to skip everything inside the unissued bracket, while a stream (which
    had released the '<' once it could no longer open an issued surrogate) restored the word."""
    vault = filled()
    assert vault.restore("<EMAIL_1\\_X>") == f"<{VALUES[0]}\\_X>"
    assert vault.restore("<EMAIL_1\\_EMAIL_1>") == f"<{VALUES[0]}\\_EMAIL_1>"
    assert vault.restore("<EMAIL_9> <email_2>") == f"<EMAIL_9> {VALUES[1]}"


def test_stream_holds_a_bracketed_surrogate_as_long_as_its_regex_allows() -> None:
    """Escapes make a surrogate's inside up to 91 characters long, whatever the vault's
    longest core: the hold used to look back only twice the longest core, plus 16."""
    vault = filled()
    text = "say <EMAIL" + "\\" * 60 + "_1> done"
    assert vault.restore(text) == f"say {VALUES[0]} done"
    restorer = StreamRestorer(vault)
    assert "".join(restorer.feed(c) for c in text) + restorer.flush() == vault.restore(text)


_PIECES = ["<", ">", "*", "_", "__", " ", "\t", "\\", "\n", "x", "é", "1", "12", "EMAIL",
           "email", "PHONE", "SECRET", "_1", "_2", "EMAIL_1", "<EMAIL_1>", "<**PHONE_1**>",
           "\\_"]  # fmt: skip


@fuzz(150)
@given(
    text=st.lists(st.sampled_from(_PIECES), max_size=40).map("".join),
    cuts=st.lists(st.integers(0, 200), max_size=12),
)
@example("<EMAIL_1\\_EMAIL_1>", [])
@example("<EMAIL" + "\\" * 60 + "_1>", [3, 50])
def test_stream_restore_equals_whole_restore_at_any_split(text: str, cuts: list[int]) -> None:
    """Streamed restore equals whole restore, the text split at any points (pieces that look
    like surrogates, their variants, and what breaks them)."""
    vault = filled()
    restorer = StreamRestorer(vault)
    bounds = [0, *sorted(c % (len(text) + 1) for c in cuts), len(text)]
    out = "".join(restorer.feed(text[a:b]) for a, b in itertools.pairwise(bounds))
    assert out + restorer.flush() == vault.restore(text)
