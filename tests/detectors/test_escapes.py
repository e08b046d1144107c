"""A key written right after (or before) an escape sequence is found and masked, and the
escapes around it are left as they were.

The defect this guards against: in code and logs keys follow escapes written out (``"...\\nsk-
ant-api03-..."``, ``%0Ask-ant-...``), and most escapes end in a word character, so a ``\\b``
before the key's prefix failed against that ``n`` or ``A`` and the key went through in clear.
Every catalogue secret with a fixed shape is planted between any two escapes (the common ones
of JSON, C, Python, URLs and HTML), in whole texts and in streams cut at any points.
"""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from tests.detectors import test_catalogue as formats
from tests.fuzzing import fuzz
from tests.inspection.test_masking import KEY, full_scanner
from ztgate.core.maskplan import MaskPlan
from ztgate.inspection.masking import mask_text
from ztgate.inspection.pseudonyms import PseudonymVault
from ztgate.inspection.streaming import StreamMasker

REDACT = MaskPlan({}, {"secret": "redact"})
SECRETS = [
    ("anthropic_api_key", formats.ANTHROPIC),
    ("anthropic_admin_key", formats.ANTHROPIC_ADMIN),
    ("openai_api_key", formats.OPENAI_PROJECT),
    ("openai_api_key", formats.OPENAI_LEGACY),
    ("aws_access_key_id", formats.AWS_KEY_ID),
    ("aws_access_key_id", "ASIA" + formats.AWS_KEY_ID[4:]),
    ("google_api_key", formats.GOOGLE_KEY),
    ("azure_client_secret", formats.AZURE_CLIENT_SECRET),
    ("github_token", formats.GITHUB_PAT),
    ("github_token", "ghp_" + formats.rand(formats.B62, 36, "escapes")),
    ("gitlab_token", formats.GITLAB),
    ("slack_token", formats.SLACK_BOT),
    ("slack_token", formats.SLACK_USER),
    ("slack_webhook_url", formats.SLACK_WEBHOOK),
    ("stripe_key", formats.STRIPE),
    ("npm_token", formats.NPM),
    ("pypi_token", formats.PYPI),
    ("jwt", formats.JWT),
    ("private_key", formats.pem("RSA PRIVATE KEY", 2)),
]
HEX = "0123456789abcdefABCDEF"
_hex2 = st.text(HEX, min_size=2, max_size=2)
ESCAPES = st.one_of(
    st.sampled_from(["\\n", "\\t", "\\r", "\\\\", '\\"', "\\'", "\\0", "\\b", "\\f", "\\v"]),
    _hex2.map(lambda h: "\\u00" + h),  # JSON, JavaScript, Python
    _hex2.map(lambda h: "\\x" + h),  # C, Python
    st.integers(0, 0o377).map(lambda n: f"\\{n:03o}"),  # C octal
    _hex2.map(lambda h: "%" + h),  # URL encoding: %0A
    st.integers(0, 255).map(lambda n: f"&#{n};"),  # HTML: &#10;
    st.just("&#x0A;"),
)
# Before the key anything may stand, a word included (``abcsk-ant-...`` is still a key); after
# it an escape always does (a key glued to a following word is no key: its end is unclear).
CONTEXT = "token: "
AROUND = st.sampled_from(["", " ", '"', "x = '", CONTEXT, "abc", "\n", ","])


@fuzz(150)
@given(st.sampled_from(SECRETS), AROUND, ESCAPES | st.just(""), ESCAPES, AROUND)
@example(SECRETS[0], 'print("', "\\n", "\\n", '")')
@example(SECRETS[0], "", "%0A", "%0A", "")
@example(SECRETS[4], "", "\\u0041", "&#10;", "")
def test_a_secret_between_escapes_is_found(
    secret: tuple[str, str], before: str, left: str, right: str, after: str
) -> None:
    detector, value = secret
    prefix = before + left
    text = prefix + value + right + after
    scanner = full_scanner()
    findings = scanner.scan(text)
    assert any(
        (f.detector, f.start, f.end) == (detector, len(prefix), len(prefix) + len(value))
        for f in findings
    ), (text, findings)
    masked = mask_text(text, findings, REDACT, hash_key=KEY, detectors=scanner.detectors).text
    if before == CONTEXT:
        # The context word brings a generic finding of its own, which may take in the escape
        # (``token: %00https://...``): their union is masked, so only the key's absence holds.
        assert not any(value[i : i + 8] in masked for i in range(len(value) - 7)), masked
    else:
        label = scanner.detectors[detector].label
        assert masked == f"{prefix}[REDACTED:{label}]{right}{after}"
    # Streamed a few characters at a time, and in one piece: the same text.
    for size in (1, 5, 64, len(text)):
        masker = StreamMasker(scanner, REDACT, pseudonyms=PseudonymVault(), hash_key=KEY)
        out = "".join(masker.feed(text[i : i + size]) for i in range(0, len(text), size))
        assert out + masker.flush() == masked
