"""The detector catalogue: what counts as PII or a secret, as bounded regexes plus validators.

Known-format rules follow the public knowledge of gitleaks (MIT) and Yelp's detect-secrets
(Apache-2.0): prefixes, lengths and the placeholders they allow-list.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import cache

from ztgate.detectors import validators as v
from ztgate.detectors.patterns import Detector, make_detector, python_flags


def _on_value(pattern: str, flags: int, check: Callable[[str], bool]) -> Callable[[str], bool]:
    """Validates only the ``value`` group: context words are there to find it, not to judge."""
    regex = re.compile(pattern, python_flags(flags))

    def validate(text: str) -> bool:
        match = regex.fullmatch(text)
        return match is not None and check(match["value"])

    return validate


# --- building blocks -------------------------------------------------------------------------

# name = value, name: value, "name": "value", name := value, name => value, name is value
_ASSIGN = r"""["']?[ \t]{0,3}(?:[:=]{1,2}>?|[ \t](?:is|was)[ \t])[ \t]{0,3}["'`]?"""
_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_DATE = (
    r"(?:[0-9]{4}[-/.][0-9]{1,2}[-/.][0-9]{1,2}"
    r"|[0-9]{1,2}[-/.][0-9]{1,2}[-/.](?:[0-9]{4}|[0-9]{2})"
    rf"|[0-9]{{1,2}}(?:st|nd|rd|th)?[ \t](?:of[ \t])?{_MONTH}\.?,?[ \t][0-9]{{4}}"
    rf"|{_MONTH}\.?[ \t][0-9]{{1,2}}(?:st|nd|rd|th)?,?[ \t][0-9]{{4}})\b"
)
# A birth-date phrase, a separator, up to two filler words ("is", "on the"), then the date.
_DOB_CONTEXT = (
    r"\b(?:date[ \t]of[ \t]birth|birth[ \t]?date|birthday|dob|d\.o\.b|born(?:[ \t]on)?"
    r"|geburtsdatum|geboren(?:[ \t]am)?|fecha[ \t]de[ \t]nacimiento)"
    r"[ \t:,=.(-]{1,4}(?:[A-Za-z']{1,10}[ \t:,]{1,3}){0,2}"
)
# "SSN is 123...", "Steuer-ID ist 123...": a linking verb between a context word and its value.
_IS = r"(?:(?:is|ist|lautet|was|war)[ \t:]{1,3})?"
# A number's end, or the x of an extension (201-555-0123x42): the match ends at the x, as
# any repetition after the number costs Hyperscan a third of its speed on the whole catalogue.
_NUMBER_END = r"(?:\b|x)"
_PEM_BEGIN = r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
_PEM_END = r"-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
# A full block up to its END line, headers of encrypted keys included.
_PEM = rf"{_PEM_BEGIN}[\x20-\x7e\t\r\n]{{1,8000}}?{_PEM_END}"
# A block cut short (pasted in part, or its END beyond the bound): the base64 lines of its body.
# They hold no spaces, so the match stops at the prose that follows; the JSON form of a
# service-account key writes line breaks as the two characters \n.
_PEM_PARTIAL = rf"{_PEM_BEGIN}[A-Za-z0-9+/=\r\n\\]{{64,8000}}"
_URL_USER = r"""[^\s:/?#\[\]@"'<>]"""
_DB_SCHEMES = (
    r"(?:jdbc:)?(?:postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|rediss?|amqps?|mssql"
    r"|sqlserver|oracle|clickhouse|cockroachdb|couchdb|neo4j(?:\+s)?)"
)
_CREDENTIAL_NAMES = (
    r"(?:password|passwd|passphrase|pwd|secret|(?:access|auth|refresh)[_.-]?token|token"
    r"|api[_.-]?key|apikey|access[_.-]?key|private[_.-]?key|client[_.-]?secret|credentials?)"
)


# --- the catalogue ---------------------------------------------------------------------------


def _pii() -> list[Detector]:
    return [
        make_detector(
            "email",
            "pii",
            "EMAIL",
            # No \b before the local part: with one Hyperscan runs at a tenth of the speed. The
            # leftmost start is the start of the run anyway; the validator wants it alphanumeric.
            r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}\.){1,4}[A-Za-z]{2,24}\b",
            0.95,
            v.email,
        ),
        make_detector(
            "payment_card",
            "pii",
            "PAYMENT_CARD",
            r"\b[0-9](?:[ -]?[0-9]){12,18}\b",
            0.95,
            v.payment_card,
        ),
        make_detector(
            "iban",
            "pii",
            "IBAN",
            r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b",
            0.95,
            v.iban,
        ),
        make_detector(
            "us_ssn",
            "pii",
            "US_SSN",
            r"\b[0-9]{3}-[0-9]{2}-[0-9]{4}\b|\b[0-9]{3} [0-9]{2} [0-9]{4}\b"
            r"|(?i:\b(?:ssn|social[ \t]security(?:[ \t]number|[ \t]no\.?)?)[ \t:#.-]{0,4}"
            rf"{_IS})[0-9]{{9}}\b",
            0.85,
            v.us_ssn,
        ),
        make_detector(
            "phone",
            "pii",
            "PHONE",
            # +CC international, (NPA) NXX-XXXX, NPA-NXX-XXXX (before an extension or not), and
            # trunk-0 national numbers, (0161) 496 0066 too; separators are required so that
            # plain digit runs (order numbers) stay out.
            r"\+[1-9][0-9]{0,2}[ .-]?(?:\(0?[0-9]{1,4}\)[ .-]?)?[0-9]{1,4}"
            rf"(?:[ .-]?[0-9]{{1,4}}){{1,5}}{_NUMBER_END}"
            rf"|\([2-9][0-9]{{2}}\)[ .-]?[2-9][0-9]{{2}}[ .-]?[0-9]{{4}}{_NUMBER_END}"
            rf"|\b[2-9][0-9]{{2}}[ .-][2-9][0-9]{{2}}[ .-][0-9]{{4}}{_NUMBER_END}"
            r"|\b0[1-9][0-9]{0,4}(?:[ /.-][0-9]{2,8}){1,4}\b"
            r"|\(0[1-9][0-9]{0,4}\)[ ]?[0-9]{2,8}(?:[ /.-][0-9]{2,8}){0,3}\b",
            0.7,
            v.phone,
        ),
        make_detector(
            "ipv4",
            "pii",
            "IP_ADDRESS",
            r"\b(?:[0-9]{1,3}\.){3}[0-9]{1,3}\b",
            0.7,
            v.ipv4,
        ),
        make_detector(
            "ipv6",
            "pii",
            "IP_ADDRESS",
            # Two colons at least (so 10:30 is no candidate); an IPv4 tail as in ::ffff:192.0.2.1.
            r"(?:\b[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{0,4}){2,7}|::[0-9A-Fa-f]{0,4}"
            r"(?::[0-9A-Fa-f]{0,4}){0,6})(?:\.[0-9]{1,3}){0,3}",
            0.7,
            v.ipv6,
        ),
        make_detector(
            "uk_nino",
            "pii",
            "UK_NINO",
            r"\b[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D]\b",
            0.6,
            v.uk_nino,
        ),
        make_detector(
            "de_tax_id",
            "pii",
            "DE_TAX_ID",
            r"(?i:\b(?:steuer[ \t-]?id(?:entifikationsnummer)?|steuer-?idnr|idnr"
            r"|identifikationsnummer|tax[ \t_-]?id(?:entification)?(?:[ \t]number|[ \t]no\.?)?"
            rf"|tin)\b[ \t:.#-]{{0,4}}{_IS})[0-9]{{2}} ?[0-9]{{3}} ?[0-9]{{3}} ?[0-9]{{3}}\b",
            0.8,
            v.de_tax_id,
        ),
        make_detector(
            "fr_nir",
            "pii",
            "FR_NIR",
            r"\b[12] ?[0-9]{2} ?(?:0[1-9]|1[0-2]|[2-9][0-9]) ?(?:[0-9]{2}|2[ABab]) ?[0-9]{3}"
            r" ?[0-9]{3} ?[0-9]{2}\b",
            0.85,
            v.fr_nir,
        ),
        make_detector(
            "es_dni",
            "pii",
            "ES_DNI",
            r"\b(?:[0-9]{8}|[XYZ]-?[0-9]{7})-?[A-Z]\b",
            0.8,
            v.es_dni,
        ),
        make_detector(
            "in_aadhaar",
            "pii",
            "IN_AADHAAR",
            # A fourth group is taken in, and refused by the validator: a card or tracking number
            # printed in groups of four is not three Aadhaar groups. "UID" is UIDAI's name.
            r"\b[2-9][0-9]{3}[ -][0-9]{4}[ -][0-9]{4}(?:[ -][0-9]{4})?\b"
            r"|(?i:\b(?:aadhaa?r(?:[ \t]no\.?|[ \t]number)?|uid)[ \t:#.-]{0,4}"
            rf"{_IS})[2-9][0-9]{{11}}\b",
            0.8,
            v.in_aadhaar,
        ),
        make_detector(
            "it_codice_fiscale",
            "pii",
            "IT_CODICE_FISCALE",
            r"\b[A-Z]{6}[0-9LMNP-V]{2}[ABCDEHLMPRST][0-9LMNP-V]{2}[A-Z][0-9LMNP-V]{3}[A-Z]\b",
            0.85,
            v.it_codice_fiscale,
        ),
        make_detector(
            "date_of_birth",
            "pii",
            "DATE_OF_BIRTH",
            _DOB_CONTEXT + _DATE,
            0.8,
            v.date_of_birth,
            re.IGNORECASE,
        ),
    ]


def _known_secrets() -> list[Detector]:
    """Secrets with a fixed prefix or shape: high confidence, placeholder-aware.

    The prefixed formats (Anthropic, OpenAI, AWS key ids, Google, GitHub, GitLab, Slack,
    Stripe, npm, PyPI, JWTs) have no word boundary before their prefix: in code and logs a
    key often follows an escape written out, and most escapes end in a word character
    (``\\n``, ``\\t``, ``\\u000A``, ``\\x0a``, ``\\012``, ``%0A``), so ``\\b`` there would
    hide the key. The prefix alone is distinctive enough (measured on random and base32 text:
    no finding more), and a key glued to a word is still a key; the boundary after it stays
    (escapes start with a non-word character). The three-letter ``A3T`` of old AWS key ids,
    context detectors and number detectors keep theirs: there it keeps prose, base32 runs and
    digit runs out."""
    token = v.random_token
    return [
        make_detector(
            "anthropic_api_key",
            "secret",
            "ANTHROPIC_API_KEY",
            r"sk-ant-api03-[A-Za-z0-9_-]{93}AA\b",
            0.99,
            token,
        ),
        make_detector(
            "anthropic_admin_key",
            "secret",
            "ANTHROPIC_ADMIN_KEY",
            r"sk-ant-admin01-[A-Za-z0-9_-]{93}AA\b",
            0.99,
            token,
        ),
        make_detector(
            "openai_api_key",
            "secret",
            "OPENAI_API_KEY",
            r"sk-(?:proj|svcacct|admin|None)-[A-Za-z0-9_-]{20,100}T3BlbkFJ[A-Za-z0-9_-]{20,100}"
            r"|sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}\b",
            0.99,
            token,
        ),
        make_detector(
            "aws_access_key_id",
            "secret",
            "AWS_ACCESS_KEY_ID",
            # A3T[A-Z0-9] keeps its \b: three letters alone match too much base32 (see above).
            r"(?:\bA3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}\b",
            0.95,
            token,
        ),
        _aws_secret(),
        make_detector(
            "google_api_key",
            "secret",
            "GOOGLE_API_KEY",
            # 35 characters after AIza; one more is captured to see that the token ends there
            r"AIza[0-9A-Za-z_-]{35,36}",
            0.95,
            lambda text: len(text) == 39 and token(text),
        ),
        make_detector(
            "gcp_service_account",
            "secret",
            "GCP_SERVICE_ACCOUNT_KEY_ID",
            r'"private_key_id"[ \t]{0,3}:[ \t]{0,3}"[0-9a-f]{40}"',
            0.95,
            lambda text: token(text.rsplit(":", 1)[1], 2.5),
        ),
        _value_detector(
            "azure_storage_key",
            "AZURE_STORAGE_KEY",
            r"\b(?:AccountKey|SharedAccessKey)[ \t]{0,2}=[ \t]{0,2}"
            r"(?P<value>[A-Za-z0-9+/]{40,88}={0,2})",
            0.95,
            v.base64_key,
            re.IGNORECASE,
        ),
        make_detector(
            "azure_client_secret",
            "secret",
            "AZURE_CLIENT_SECRET",
            r"[A-Za-z0-9_~.]{3}[0-9]Q~[A-Za-z0-9_~.-]{31,35}",
            0.9,
            lambda text: len(text) <= 40 and token(text),
        ),
        make_detector(
            "github_token",
            "secret",
            "GITHUB_TOKEN",
            r"(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36}\b|github_pat_[A-Za-z0-9_]{82}\b",
            0.99,
            token,
        ),
        make_detector(
            "gitlab_token",
            "secret",
            "GITLAB_TOKEN",
            r"gl(?:pat|dt|rt|ptt|soat|cbt|imt)-[A-Za-z0-9_-]{20,64}",
            0.95,
            token,
        ),
        make_detector(
            "slack_token",
            "secret",
            "SLACK_TOKEN",
            r"xox[abeoprs]-(?:[0-9]{1,14}-){1,4}[A-Za-z0-9]{8,64}\b"
            r"|xapp-[0-9]-[A-Z0-9]{9,12}-[0-9]{10,14}-[A-Za-z0-9]{30,80}\b"
            r"|xoxe(?:\.xox[bp])?-[0-9]-[A-Za-z0-9]{60,160}\b",
            0.95,
            token,
        ),
        make_detector(
            "slack_webhook_url",
            "secret",
            "SLACK_WEBHOOK_URL",
            r"(?:https?://)?hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/_-]{20,120}",
            0.95,
            v.not_placeholder,
        ),
        make_detector(
            "stripe_key",
            "secret",
            "STRIPE_KEY",
            r"(?:sk|rk)_live_[A-Za-z0-9]{20,99}\b",
            0.99,
            token,
        ),
        make_detector("npm_token", "secret", "NPM_TOKEN", r"npm_[A-Za-z0-9]{36}\b", 0.95, token),
        make_detector(
            "pypi_token",
            "secret",
            "PYPI_TOKEN",
            r"pypi-AgE(?:IcHlwaS5vcmc|NdGVzdC5weXBpLm9yZw)[A-Za-z0-9_-]{50,300}",
            0.99,
            token,
        ),
        make_detector("private_key", "secret", "PRIVATE_KEY", _PEM, 0.99, v.pem_block, limit=8192),
        # Separate from the complete form because Hyperscan compiles the two far faster apart.
        make_detector(
            "private_key_partial", "secret", "PRIVATE_KEY", _PEM_PARTIAL, 0.95, limit=8192
        ),
        make_detector(
            "jwt",
            "secret",
            "JWT",
            r"eyJ[A-Za-z0-9_-]{2,150}\.eyJ[A-Za-z0-9_-]{2,500}\.[A-Za-z0-9_-]{0,350}",
            0.9,
            v.jwt,
        ),
        _value_detector(
            "database_url",
            "DATABASE_URL",
            rf"\b{_DB_SCHEMES}://{_URL_USER}{{0,64}}:(?P<value>{_URL_USER}{{1,128}})@"
            r"[A-Za-z0-9_.-]{1,100}",
            0.9,
            v.password_value,
            re.IGNORECASE,
        ),
        _value_detector(
            "url_credentials",
            "URL_CREDENTIALS",
            rf"\b[A-Za-z][A-Za-z0-9+.-]{{1,20}}://{_URL_USER}{{1,64}}:(?P<value>{_URL_USER}{{1,128}})@"
            r"[A-Za-z0-9_.-]{1,100}",
            0.85,
            v.password_value,
        ),
        _value_detector(
            "connection_string_password",
            "PASSWORD",
            r";[ \t]{0,3}(?:password|pwd)[ \t]{0,3}=[ \t]{0,3}"
            # Quoted values with spaces stay within a stream's default holdback (128).
            r"""(?P<value>"[^"\r\n]{1,96}"|'[^'\r\n]{1,96}'|[^;\s"']{1,128})""",
            0.85,
            v.password_value,
            re.IGNORECASE,
        ),
        _value_detector(
            "basic_auth",
            "BASIC_AUTH",
            r"\bauthorization[ \t]{0,3}[:=][ \t]{0,3}[\"']?basic[ \t]{1,3}"
            r"(?P<value>[A-Za-z0-9+/]{6,256}={0,2})",
            0.85,
            v.basic_credentials,
            re.IGNORECASE,
        ),
    ]


def _value_detector(
    id: str,
    label: str,
    pattern: str,
    confidence: float,
    check: Callable[[str], bool],
    flags: int = 0,
) -> Detector:
    return make_detector(
        id,
        "secret",
        label,
        pattern,
        confidence,
        _on_value(pattern, flags, check),
        flags,
        value_checked=True,
    )


def _aws_secret() -> Detector:
    pattern = (
        r"\b(?:[A-Za-z0-9]{1,16}[_.-]){0,2}(?:aws[_.-]?secret(?:[_.-]?access)?(?:[_.-]?key)?"
        # also as a command-line argument: aws configure set aws_secret_access_key VALUE
        rf"|secret[_.-]?access[_.-]?key)\b(?:{_ASSIGN}|[ \t]{{1,3}})"
        r"(?P<value>[A-Za-z0-9/+=]{40,41})"
    )
    return _value_detector(
        "aws_secret_access_key",
        "AWS_SECRET_ACCESS_KEY",
        pattern,
        0.9,
        v.aws_secret_key,
        re.IGNORECASE,
    )


def _deferring(
    check: Callable[[str], bool], known: Sequence[Detector], *, known_first: bool = False
) -> Callable[[str], bool]:
    """Context-found values defer to the known-format detectors: a value one of them recognises
    (or rejects as a placeholder) is theirs, so ``api_key = sk-ant-...`` is reported as an
    Anthropic key and ``Bearer eyJ...`` as a JWT, whatever starts first. ``known_first`` runs
    the (cheap, JWT first) known-format test before ``check``: right for long values that are
    usually tokens, while short ones are cheaper to reject with ``check``."""
    ordered = sorted(known, key=lambda d: d.id != "jwt")
    known_regexes = [re.compile(d.pattern, python_flags(d.flags)) for d in ordered]

    def is_known(value: str) -> bool:
        return any(r.search(value) for r in known_regexes)

    if known_first:
        return lambda value: not is_known(value) and check(value)
    return lambda value: check(value) and not is_known(value)


def _contextual_secrets(known: Sequence[Detector]) -> list[Detector]:
    """Secrets recognised by what surrounds them rather than by their own shape."""
    return [
        _value_detector(
            "bearer_token",
            "BEARER_TOKEN",
            r"\bbearer[ \t]{1,3}(?P<value>[A-Za-z0-9+/=_.~-]{20,512})",
            0.8,
            _deferring(v.bearer_value, known, known_first=True),
            re.IGNORECASE,
        ),
        _value_detector(
            "generic_secret",
            "SECRET",
            # The match starts at the name's keyword (DB_PASSWORD= is found from PASSWORD=):
            # a free-form prefix before it costs Python's re several times the search time.
            rf"{_CREDENTIAL_NAMES}[A-Za-z0-9_.-]{{0,20}}{_ASSIGN}"
            r"(?P<value>[A-Za-z0-9+/=_.~!@#$%^&*-]{8,128})",
            0.6,
            _deferring(v.high_entropy_value, known),
            re.IGNORECASE,
        ),
    ]


@cache
def _catalogue() -> tuple[Detector, ...]:
    known = _known_secrets()
    return (*_pii(), *known, *_contextual_secrets(known))


def catalogue() -> list[Detector]:
    """The built-in detectors, in tie-break order (earlier wins among equal findings)."""
    return list(_catalogue())
