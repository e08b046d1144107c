"""Validators: the second opinion on a regex candidate, pure functions from the matched text.

A regex finds things shaped like a card number or an API key; most digit runs and identifiers of
that shape are not one. Checksums (Luhn, mod-97, national ID check digits), number plans
(libphonenumber), calendar rules and randomness tests turn "looks like" into "is", which is
what keeps redaction from mangling order numbers, versions and code. Each validator gets exactly
the text its detector matched, context words included, and answers True to keep the finding.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import math
import re
from collections import Counter
from datetime import date
from functools import cache

import orjson
import phonenumbers
from stdnum import numdb
from stdnum.de import idnr
from stdnum.es import dni, nie
from stdnum.fr import nir
from stdnum.in_ import aadhaar
from stdnum.it import codicefiscale

_NON_DIGIT = re.compile(r"\D")
_SEPARATORS = re.compile(r"[ -]")


def digits_of(text: str) -> str:
    return _NON_DIGIT.sub("", text)


# --- payment cards ---------------------------------------------------------------------------


def luhn(digits: str) -> bool:
    """The Luhn (mod 10) check every major card scheme uses; ``digits`` holds digits only."""
    if not digits.isdigit() or not digits.isascii():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# (first prefix, last prefix, prefix length, allowed lengths, brand), from the schemes' published
# IIN ranges. An IIN in none of them is not a card this gateway treats as one.
_IIN_RANGES: tuple[tuple[int, int, int, frozenset[int], str], ...] = (
    (4, 4, 1, frozenset({13, 16, 19}), "visa"),
    (51, 55, 2, frozenset({16}), "mastercard"),
    (2221, 2720, 4, frozenset({16}), "mastercard"),
    (34, 34, 2, frozenset({15}), "amex"),
    (37, 37, 2, frozenset({15}), "amex"),
    (6011, 6011, 4, frozenset(range(16, 20)), "discover"),
    (644, 649, 3, frozenset(range(16, 20)), "discover"),
    (65, 65, 2, frozenset(range(16, 20)), "discover"),
    (3528, 3589, 4, frozenset(range(16, 20)), "jcb"),
    (300, 305, 3, frozenset(range(14, 20)), "diners"),
    (3095, 3095, 4, frozenset(range(14, 20)), "diners"),
    (36, 36, 2, frozenset(range(14, 20)), "diners"),
    (38, 39, 2, frozenset(range(14, 20)), "diners"),
    (62, 62, 2, frozenset(range(16, 20)), "unionpay"),
)

# Printed groupings: 4-4-4-4(-3), Amex 4-6-5, Diners 4-6-4. Anything else with separators is a
# list of numbers, not a card.
_GROUPINGS = ((4, 6, 5), (4, 6, 4))


def card_brand(digits: str) -> str | None:
    """The scheme whose IIN range and length fit ``digits``, or None."""
    for low, high, width, lengths, brand in _IIN_RANGES:
        if len(digits) in lengths and low <= int(digits[:width]) <= high:
            return brand
    return None


def payment_card(text: str) -> bool:
    digits = digits_of(text)
    if not 13 <= len(digits) <= 19 or card_brand(digits) is None or not luhn(digits):
        return False
    if digits == text:
        return True
    if " " in text and "-" in text:
        return False
    groups = tuple(len(g) for g in _SEPARATORS.split(text))
    if groups in _GROUPINGS:
        return True
    return all(g == 4 for g in groups[:-1]) and 1 <= groups[-1] <= 4


# --- IBAN ------------------------------------------------------------------------------------

# ISO 13616 IBAN lengths per country (SWIFT IBAN registry).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


_IBAN_DIGITS = str.maketrans({chr(c): str(c - 55) for c in range(ord("A"), ord("Z") + 1)})


def iban_mod97(compact: str) -> int:
    """ISO 7064 mod 97-10 over the rearranged IBAN (letters as 10..35); a valid IBAN gives 1."""
    return int((compact[4:] + compact[:4]).upper().translate(_IBAN_DIGITS)) % 97


_BBAN_FIELD = re.compile(r"(\d+)!([nac])")
_BBAN_CLASSES = {"n": "[0-9]", "a": "[A-Z]", "c": "[A-Za-z0-9]"}


@cache
def _bban_format(country: str) -> re.Pattern[str] | None:
    """The country's BBAN layout from python-stdnum's copy of the SWIFT registry, compiled once
    per country (stdnum's own validator re-reads it per call, at ten times the cost)."""
    structure = numdb.get("iban").info(country)[0][1].get("bban")
    if not structure:
        return None
    fields = _BBAN_FIELD.findall(structure)
    return re.compile("".join(f"{_BBAN_CLASSES[kind]}{{{n}}}" for n, kind in fields))


def iban(text: str) -> bool:
    """Country length, print grouping, mod-97, then the country's BBAN format (``GB`` wants a
    four-letter bank code, ``DE`` digits only) so that digit soup with a lucky checksum stays
    out. National check digits inside the BBAN are not required."""
    compact = text.replace(" ", "")
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact.isalnum():
        return False
    if " " in text and any(len(g) != 4 for g in text.split(" ")[:-1]):
        return False
    if iban_mod97(compact) != 1:
        return False
    bban = _bban_format(compact[:2])
    return bban is None or bban.fullmatch(compact[4:]) is not None


# --- US SSN ----------------------------------------------------------------------------------

# Numbers the SSA never issued but that circulate as examples (a wallet insert, ads, docs).
_SSN_EXAMPLES = frozenset({"078051120", "219099999", "123456789"})


def us_ssn(text: str) -> bool:
    """Area 001-665 or 667-899, group 01-99, serial 0001-9999: the SSA's issuing rules."""
    digits = digits_of(text)[-9:]
    if len(digits) != 9 or digits in _SSN_EXAMPLES or len(set(digits)) == 1:
        return False
    area, group, serial = int(digits[:3]), digits[3:5], digits[5:]
    return 0 < area < 900 and area != 666 and group != "00" and serial != "0000"


# --- network addresses -----------------------------------------------------------------------


def ipv4(text: str) -> bool:
    try:
        ipaddress.IPv4Address(text)  # octets <= 255, no leading zeros
    except ValueError:
        return False
    return True


def ipv6(text: str) -> bool:
    """A parseable IPv6 address that is not code: ``Vec::new`` and ``a::b`` carry no digit."""
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        return False
    groups = [g for g in text.split(":") if g]
    return (
        not address.is_unspecified
        and any(ch.isdigit() for ch in text)
        and (len(groups) >= 2 or "." in text)
    )


# --- phone numbers ---------------------------------------------------------------------------

_DATE_SHAPES = re.compile(
    r"\d{4}[ ./-]\d{1,2}[ ./-]\d{1,2}|\d{1,2}[ ./-]\d{1,2}[ ./-](?:\d{4}|\d{2})"
)
# National numbers with a trunk 0 are tried against these plans; more regions would accept more
# digit runs, so the list stays short. Dotted ones (01.23.45.67.89) are French only: in the
# others' plans a dotted pair such as the 05.246984 of a timestamp would pass.
_TRUNK_REGIONS = ("GB", "DE", "FR")


def phone(text: str) -> bool:
    """A number valid in its plan: international (+CC) as written, NANP, or a trunk-0 plan.
    A final ``x`` (the detector stops there when an extension follows) is not judged."""
    text = text.removesuffix("x")
    digits = digits_of(text)
    if not 7 <= len(digits) <= 15 or _DATE_SHAPES.fullmatch(text):
        return False
    regions: tuple[str | None, ...]
    if text.startswith("+"):
        regions = (None,)
    elif text.startswith(("0", "(0")):
        regions = ("FR",) if "." in text else _TRUNK_REGIONS
    else:
        regions = ("US",)
    for region in regions:
        try:
            number = phonenumbers.parse(text, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return True
    return False


# --- national identifiers --------------------------------------------------------------------

# UK National Insurance number: no checksum exists, so the allocation rules are all there is.
_NINO_BAD_PREFIXES = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})


def uk_nino(text: str) -> bool:
    compact = text.replace(" ", "")
    spaces = text.count(" ")
    return compact[:2] not in _NINO_BAD_PREFIXES and spaces in (0, 4)


def de_tax_id(text: str) -> bool:
    """German Steuer-IdNr (11 digits, ISO 7064 check digit, digit-repetition rule)."""
    return idnr.is_valid(digits_of(text)[-11:])


def fr_nir(text: str) -> bool:
    """French NIR (social security number): 13 characters and a mod-97 key."""
    return nir.is_valid(text.replace(" ", ""))


def es_dni(text: str) -> bool:
    """Spanish DNI or NIE with its mod-23 check letter."""
    compact = text.replace("-", "")
    return nie.is_valid(compact) if compact[0] in "XYZ" else dni.is_valid(compact)


def in_aadhaar(text: str) -> bool:
    """Indian Aadhaar: 12 digits (not 16: the pattern takes in a fourth group to see it) with
    a Verhoeff check digit."""
    digits = digits_of(text)
    return len(digits) == 12 and aadhaar.is_valid(digits)


def it_codice_fiscale(text: str) -> bool:
    """Italian codice fiscale: embedded birth date and a check letter."""
    return codicefiscale.is_valid(text)


# --- dates of birth --------------------------------------------------------------------------

_MONTHS = {
    name: i + 1
    for i, names in enumerate(
        (
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        )
    )
    for name in names
}
_ISO_DATE = re.compile(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})$")
_NUMERIC_DATE = re.compile(r"(\d{1,2})[-/.](\d{1,2})[-/.](\d{4}|\d{2})$")
_DAY_MONTH_YEAR = re.compile(r"(\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?([a-z]+)\.?,?\s+(\d{4})$")
_MONTH_DAY_YEAR = re.compile(r"([a-z]+)\.?\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+(\d{4})$")


def _real_date(year: int, month: int, day: int) -> bool:
    if year < 100:
        year += 1900
    if not 1900 <= year <= 2100:
        return False
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


def date_of_birth(text: str) -> bool:
    """The date at the end of the match exists on the calendar (either day/month order)."""
    lowered = text.lower()
    if m := _ISO_DATE.search(lowered):
        return _real_date(int(m[1]), int(m[2]), int(m[3]))
    if m := _NUMERIC_DATE.search(lowered):
        a, b, year = int(m[1]), int(m[2]), int(m[3])
        return _real_date(year, b, a) or _real_date(year, a, b)
    if m := _DAY_MONTH_YEAR.search(lowered):
        month = _MONTHS.get(m[2])
        return month is not None and _real_date(int(m[3]), month, int(m[1]))
    if m := _MONTH_DAY_YEAR.search(lowered):
        month = _MONTHS.get(m[1])
        return month is not None and _real_date(int(m[3]), month, int(m[2]))
    return False


# --- randomness: what separates a credential from a word, a variable or a placeholder --------

_ASCENDING = "0123456789abcdefghijklmnopqrstuvwxyz"
# Words of documentation and templates, and six-character ascending runs (123456, abcdef).
_PLACEHOLDER_PARTS = (
    "example",
    "placeholder",
    "redacted",
    "changeme",
    "change_me",
    "your_",
    "your-",
    "yourkey",
    "dummy",
    "sample",
    "xxxx",
    "****",
    "....",
    "<",
    ">",
    "${",
    "{{",
    "%s",
    "%(",
    *(_ASCENDING[i : i + 6] for i in range(len(_ASCENDING) - 5)),
)
_REPEATED_RUN = re.compile(r"(.)\1{5}")


# c * log2(c) for the counts a bounded match can have: entropy without a log per character.
_C_LOG_C = (0.0, *(c * math.log2(c) for c in range(1, 8193)))


def shannon_entropy(text: str) -> float:
    """Bits per character of ``text`` taken as a sample of its own character distribution."""
    n = len(text)
    if not n:
        return 0.0
    if n >= len(_C_LOG_C):
        return -sum(c / n * math.log2(c / n) for c in Counter(text).values())
    return math.log2(n) - sum(map(_C_LOG_C.__getitem__, Counter(text).values())) / n


def looks_placeholder(text: str) -> bool:
    """Documentation and template values: EXAMPLE, xxxx, ****, <token>, ${VAR}, 123456..."""
    lowered = text.lower()
    return any(part in lowered for part in _PLACEHOLDER_PARTS) or bool(
        _REPEATED_RUN.search(lowered)
    )


def not_placeholder(text: str) -> bool:
    return not looks_placeholder(text)


def random_token(text: str, min_entropy: float = 3.0) -> bool:
    """A known-format token that is not a documentation placeholder."""
    return not looks_placeholder(text) and shannon_entropy(text) >= min_entropy


_DIGIT = re.compile(r"[0-9]")


def _char_classes(text: str) -> int:
    """How many of lowercase, uppercase, digits and other characters ``text`` mixes."""
    return (
        (text != text.upper())
        + (text != text.lower())
        + (_DIGIT.search(text) is not None)
        + (not text.isalnum())
    )


_DOTTED_IDENTIFIER = re.compile(r"[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)+", re.ASCII)
# Words joined by separators: header names (X-API-Key), secret names (prod/payments/stripe).
_JOINED_WORDS = re.compile(r"(?:[A-Z]?[a-z]+|[A-Z]+)(?:[-_./](?:[A-Z]?[a-z]+|[A-Z]+))+")
_IDENTIFIER_CHARS = re.compile(r"[A-Za-z0-9_.-]+")
_LOWER_RUN = re.compile(r"[a-z]{3,}")
_PATH = re.compile(r"(?:\.{0,2}/|~/)[\w./-]+", re.ASCII)


def _wordy(value: str) -> bool:
    """Made of words, as names in code are (``getAccessToken``, ``OAuth2Session``,
    ``total_tokens``): half its characters sit in lowercase runs of three or more. Random
    tokens rarely do (runs that long are rare), and passwords with symbols are never taken.
    Letters-only words joined by ``-_./`` (``X-API-Key``, ``prod/payments/stripe``) are names
    too."""
    if _JOINED_WORDS.fullmatch(value):
        return True
    if not _IDENTIFIER_CHARS.fullmatch(value):
        return False
    return sum(len(run) for run in _LOWER_RUN.findall(value)) * 2 >= len(value)


def high_entropy_value(value: str) -> bool:
    """A value assigned to a secret-sounding name that looks like a credential, not like code.

    Rejects names from code (``os.environ``, ``get_token``, ``OAuth2Session``), paths,
    placeholders, single-class runs (``12345678``) and low-entropy strings. The thresholds are
    per character, lower for short values: an 8-character password cannot reach 3.5 bits.
    """
    value = value.strip("\"'`")
    if not 8 <= len(value) <= 128 or value.startswith("$") or _wordy(value):
        return False
    if _char_classes(value) < 2 or _DOTTED_IDENTIFIER.fullmatch(value) or _PATH.fullmatch(value):
        return False
    return shannon_entropy(value) >= (2.5 if len(value) < 12 else 3.0) and not looks_placeholder(
        value
    )


def bearer_value(value: str) -> bool:
    """A bearer credential: long, mixed and random enough to be a token, not prose or a word."""
    return (
        20 <= len(value) <= 512
        and not looks_placeholder(value)
        and _char_classes(value) >= 2
        and not _DOTTED_IDENTIFIER.fullmatch(value)
        and shannon_entropy(value) >= 3.0
    )


def password_value(value: str) -> bool:
    """An explicit password field: anything that is not empty, a template or a placeholder."""
    value = value.strip("\"'")
    lowered = value.lower()
    return (
        bool(value)
        and lowered not in _PLACEHOLDER_PASSWORDS
        and not looks_placeholder(value)
        and not value.startswith(("$", "%", "{"))
    )


_PLACEHOLDER_PASSWORDS = frozenset(
    {
        "password",
        "passwd",
        "pass",
        "pwd",
        "secret",
        "mypassword",
        "my_password",
        "yourpassword",
        "user",
        "username",
        "pw",
        "***",
        "xxx",
        "x",
        "-",
    }
)


def aws_secret_key(value: str) -> bool:
    """Exactly 40 base64 characters (the pattern over-captures one to see the token end)."""
    return (
        len(value) == 40
        and _char_classes(value.replace("/", "").replace("+", "")) >= 2
        and random_token(value, 3.5)
    )


def base64_key(value: str) -> bool:
    """An Azure account or shared-access key: strict base64 of 32 or 64 random bytes."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return len(raw) in (32, 64) and random_token(value, 4.0)


def basic_credentials(value: str) -> bool:
    """HTTP Basic: base64 of ``user:password`` with a non-placeholder password."""
    try:
        raw = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return False
    user, colon, password = raw.partition(":")
    return bool(colon) and password_value(password) and not looks_placeholder(user)


def jwt(text: str) -> bool:
    """The first segment is base64url JSON with an ``alg``: a JOSE header, not lookalike text."""
    header = text.split(".", 1)[0]
    try:
        raw = base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))
        parsed = orjson.loads(raw)
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        return False
    return isinstance(parsed, dict) and isinstance(parsed.get("alg"), str)


_EMAIL_FILE_TLDS = frozenset({"png", "jpg", "jpeg", "gif", "svg", "webp", "css", "js", "ico"})


def email(text: str) -> bool:
    """Rejects dot misuse (``a..b@``, ``.a@``, ``-a@``: the scanner then retries one character
    further on) and retina asset names such as ``logo@2x.png``."""
    local, _, domain = text.rpartition("@")
    if ".." in text or local.endswith(".") or not local[0].isalnum():
        return False
    labels = domain.split(".")
    return labels[-1].lower() not in _EMAIL_FILE_TLDS and all(
        label and not label.startswith("-") and not label.endswith("-") for label in labels
    )


_PEM_LINE = re.compile(r"-----(?:BEGIN|END)[A-Z0-9 ]{0,60}-----")
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/=]{16,}")


def pem_block(text: str) -> bool:
    """A private-key block with a key in it: at least 40 base64 characters between its lines,
    so a placeholder (``-----BEGIN PRIVATE KEY-----`` ``...`` ``-----END ...``) is not one.
    Line breaks written as ``\\n`` (a key inside JSON) count as breaks."""
    body = _PEM_LINE.sub(" ", text).replace("\\n", "\n")
    return sum(len(run) for run in _BASE64_RUN.findall(body)) >= 40
