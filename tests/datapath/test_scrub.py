"""ztgate's key is removed from whatever the upstream sends, however it is cut into reads."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ztgate.datapath.scrub import REMOVED, KeyScrubber

KEY = b"sk-ant-api03-upstream/key_of-the+gateway"


def test_every_spelling_is_removed() -> None:
    scrubber = KeyScrubber(KEY)
    body = b'{"message": "invalid key ' + KEY + b'", "json": "' + KEY.replace(b"/", b"\\/") + b'"}'
    out = scrubber.scrub(body)
    assert KEY not in out
    assert KEY.replace(b"/", b"\\/") not in out
    assert out.count(REMOVED) == 2


def test_headers_are_scrubbed() -> None:
    out = KeyScrubber(KEY).headers([(b"x-echo", b"key=" + KEY), (b"request-id", b"req_1")])
    assert out == [(b"x-echo", b"key=" + REMOVED), (b"request-id", b"req_1")]


def test_a_stream_holds_back_only_a_possible_start() -> None:
    stream = KeyScrubber(KEY).stream()
    assert stream.feed(b"data: hello\n\n") == b"data: hello\n\n"  # nothing held: no key starts
    assert stream.feed(b"data: " + KEY[:10]) == b"data: "
    assert stream.feed(KEY[10:] + b" after\n\n") == REMOVED + b" after\n\n"
    assert stream.feed(b"x sk-") == b"x "
    assert stream.flush() == b"sk-"


@settings(deadline=None, max_examples=300)
@given(
    st.lists(
        st.sampled_from([KEY, KEY.replace(b"/", b"\\/"), b"sk-", b"s", b"data: ", b"\n\n", b"abc"]),
        max_size=12,
    ),
    st.lists(st.integers(min_value=1, max_value=60), min_size=1, max_size=30),
)
def test_any_cut_gives_what_the_whole_gives(pieces: list[bytes], cuts: list[int]) -> None:
    """Split anywhere, the stream releases exactly what scrubbing the whole body releases:
    no spelling of the key survives a cut, and nothing else is lost or reordered."""
    scrubber = KeyScrubber(KEY)
    body = b"".join(pieces)
    stream = scrubber.stream()
    out, at = [], 0
    for size in cuts:
        out.append(stream.feed(body[at : at + size]))
        at += size
    out.append(stream.feed(body[at:]))
    out.append(stream.flush())
    released = b"".join(out)
    assert released == scrubber.scrub(body)
    assert KEY not in released
