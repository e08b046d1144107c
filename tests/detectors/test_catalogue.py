"""Each detector: true positives in realistic formats, near misses, and validator edge cases.

Every value here is synthetic: card numbers, IBANs and national IDs are generated with their
checksums, keys and tokens are random strings of the right shape (built at run time, so no
secret-shaped literal sits in the source). Every table runs against both scanner backends.
"""

from __future__ import annotations

import base64
import json
import random
import re
import string
from functools import cache
from importlib.resources import files

import pytest
from stdnum import iban as stdnum_iban
from stdnum.iso7064 import mod_11_10

from ztgate.core.findings import Finding
from ztgate.detectors import validators as v
from ztgate.detectors.catalogue import catalogue
from ztgate.detectors.patterns import (
    HYPERSCAN_AVAILABLE,
    MAX_LENGTH_LIMIT,
    check_pattern,
    python_flags,
)
from ztgate.inspection.scanner import Scanner

BACKENDS = ["hyperscan", "re"] if HYPERSCAN_AVAILABLE else ["re"]
B62 = string.ascii_letters + string.digits
B64 = B62 + "+/"
B64URL = B62 + "-_"
HEX = "0123456789abcdef"
BASE32 = string.ascii_uppercase + "234567"


@cache
def catalogue_scanner(backend: str) -> Scanner:
    """One compiled scanner per backend for the whole test session (compiling takes ~0.5 s)."""
    return Scanner(catalogue(), backend=backend)  # type: ignore[arg-type]


@pytest.fixture(params=BACKENDS)
def scanner(request: pytest.FixtureRequest) -> Scanner:
    return catalogue_scanner(request.param)


def found(scanner: Scanner, text: str) -> list[tuple[str, str]]:
    return [(f.detector, text[f.start : f.end]) for f in scanner.scan(text)]


# --- synthetic value generators --------------------------------------------------------------


def rand(alphabet: str, n: int, seed: str) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(alphabet) for _ in range(n))


def luhn_check_digit(partial: str) -> str:
    """Independent of the validator under test: the textbook Luhn algorithm."""
    total = 0
    for i, ch in enumerate(reversed(partial)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def card(prefix: str, length: int, seed: str = "card") -> str:
    partial = prefix + rand(string.digits, length - len(prefix) - 1, seed + prefix)
    return partial + luhn_check_digit(partial)


def bad_luhn(number: str) -> str:
    return number[:-1] + str((int(number[-1]) + 1) % 10)


def grouped(number: str, sizes: tuple[int, ...], sep: str = " ") -> str:
    out, i = [], 0
    for size in sizes:
        out.append(number[i : i + size])
        i += size
    return sep.join(out)


def make_iban(country: str, bban: str) -> str:
    digits = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{country}{98 - int(digits) % 97:02d}{bban}"


def make_nir(first13: str) -> str:
    numeric = first13.replace("2A", "19").replace("2B", "18")
    return f"{first13}{97 - int(numeric) % 97:02d}"


def make_dni(number: str) -> str:
    return number + "TRWAGMYFPDXBNJZSQVHLCKE"[int(number) % 23]


def make_idnr(first10: str) -> str:
    return first10 + mod_11_10.calc_check_digit(first10)


def b64url(data: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def make_jwt(header: object | None = None) -> str:
    header = {"alg": "HS256", "typ": "JWT"} if header is None else header
    claims = {"sub": "user-1234", "iat": 1717171717, "scope": "read write"}
    return f"{b64url(header)}.{b64url(claims)}.{rand(B64URL, 43, 'jwt-sig')}"


def pem(kind: str = "RSA PRIVATE KEY", lines: int = 8, headers: str = "", end: bool = True) -> str:
    body = "\n".join(rand(B64, 64, f"pem{i}{kind}") for i in range(lines))
    tail = f"\n-----END {kind}-----" if end else ""
    return f"-----BEGIN {kind}-----\n{headers}{body}\n{rand(B64, 20, 'last')}={tail}"


ANTHROPIC = "sk-ant-api03-" + rand(B64URL, 93, "anthropic") + "AA"
ANTHROPIC_ADMIN = "sk-ant-admin01-" + rand(B64URL, 93, "admin") + "AA"
OPENAI_PROJECT = "sk-proj-" + rand(B64URL, 74, "oa1") + "T3BlbkFJ" + rand(B64URL, 74, "oa2")
OPENAI_LEGACY = "sk-" + rand(B62, 20, "oa3") + "T3BlbkFJ" + rand(B62, 20, "oa4")
AWS_KEY_ID = "AKIA" + rand(BASE32, 16, "aws")
AWS_SECRET = rand(B64, 40, "aws-secret")
GOOGLE_KEY = "AIza" + rand(B64URL, 35, "google")
AZURE_ACCOUNT_KEY = base64.b64encode(random.Random("azure").randbytes(64)).decode()
AZURE_SHARED_KEY = base64.b64encode(random.Random("azure-sb").randbytes(32)).decode()
AZURE_CLIENT_SECRET = rand(B62, 3, "az1") + "8Q~" + rand(B62 + "_~.-", 34, "az2")
GITHUB_PAT = "github_pat_" + rand(B62, 22, "gh1") + "_" + rand(B62, 59, "gh2")
GITLAB = "glpat-" + rand(B64URL, 20, "gitlab")
SLACK_BOT = f"xoxb-{rand(string.digits, 11, 's1')}-{rand(string.digits, 13, 's2')}-" + rand(
    B62, 24, "s3"
)
SLACK_USER = (
    f"xoxp-{rand(string.digits, 12, 's4')}-{rand(string.digits, 12, 's5')}-"
    f"{rand(string.digits, 12, 's6')}-{rand(HEX, 32, 's7')}"
)
SLACK_WEBHOOK = (
    f"https://hooks.slack.com/services/T{rand(BASE32, 8, 'w1')}/B{rand(BASE32, 8, 'w2')}/"
    + rand(B62, 24, "w3")
)
STRIPE = "sk_live_" + rand(B62, 24, "stripe")
NPM = "npm_" + rand(B62, 36, "npm")
PYPI = "pypi-AgEIcHlwaS5vcmc" + rand(B64URL, 120, "pypi")
PASSWORD = "Xk9#mP2vLq8w"
VISA = card("4", 16)
MASTERCARD_2 = card("2221", 16)
AMEX = card("37", 15)
DISCOVER = card("6011", 16)
JCB = card("3528", 16)
DINERS = card("36", 14)
UNIONPAY = card("62", 19)
NIR = make_nir("1850578006084")
NIR_CORSICA = make_nir("290012A006084")
IDNR = make_idnr("3657426180")
JWT = make_jwt()


# --- true positives: (detector, text, exactly what it must find) ------------------------------

TRUE_POSITIVES = [
    # email
    ("email", "mail jane.doe@example.org now", "jane.doe@example.org"),
    ("email", "<j.smith+news@mail.co.uk>", "j.smith+news@mail.co.uk"),
    ("email", "(contact: x_y-z@sub.domain.travel)", "x_y-z@sub.domain.travel"),
    ("email", "mailto:Ops.Team@Example.COM.", "Ops.Team@Example.COM"),
    # payment cards: every scheme, plain and printed
    ("payment_card", f"card {VISA} exp 12/29", VISA),
    ("payment_card", f"card {grouped(VISA, (4, 4, 4, 4))}.", grouped(VISA, (4, 4, 4, 4))),
    ("payment_card", f"MC {MASTERCARD_2}", MASTERCARD_2),
    ("payment_card", f"Amex {grouped(AMEX, (4, 6, 5))}", grouped(AMEX, (4, 6, 5))),
    (
        "payment_card",
        f"Discover {grouped(DISCOVER, (4, 4, 4, 4), '-')}",
        grouped(DISCOVER, (4, 4, 4, 4), "-"),
    ),
    ("payment_card", f"JCB:{JCB}", JCB),
    ("payment_card", f"Diners {grouped(DINERS, (4, 6, 4))}", grouped(DINERS, (4, 6, 4))),
    ("payment_card", f"UnionPay {UNIONPAY}", UNIONPAY),
    ("payment_card", f"Diners {card('38', 14)}", card("38", 14)),
    ("payment_card", "test card 4111 1111 1111 1111", "4111 1111 1111 1111"),
    # IBAN
    ("iban", "IBAN DE89 3704 0044 0532 0130 00 please", "DE89 3704 0044 0532 0130 00"),
    ("iban", "to GB82WEST12345698765432.", "GB82WEST12345698765432"),
    ("iban", "FR1420041010050500013M02606", "FR1420041010050500013M02606"),
    ("iban", f"NL: {make_iban('NL', 'ABNA0417164300')}", make_iban("NL", "ABNA0417164300")),
    ("iban", "Norway NO9386011117947", "NO9386011117947"),
    ("iban", "MT84MALT011000012345MTLCAST001S", "MT84MALT011000012345MTLCAST001S"),
    # US SSN
    ("us_ssn", "SSN 536-22-1234 on file", "536-22-1234"),
    ("us_ssn", "number 667 01 0001", "667 01 0001"),
    ("us_ssn", "ssn: 536221234", "ssn: 536221234"),
    ("us_ssn", "Social Security Number #899-99-9999", "899-99-9999"),
    ("us_ssn", "SSN is 536221234", "SSN is 536221234"),
    # phone numbers
    ("phone", "call +44 20 7946 0958 today", "+44 20 7946 0958"),
    ("phone", "US office +1 (201) 555-0123.", "+1 (201) 555-0123"),
    ("phone", "desk (415) 555-2671", "(415) 555-2671"),
    ("phone", "cell 201-555-0123", "201-555-0123"),
    ("phone", "fax 201.555.0123", "201.555.0123"),
    ("phone", "London 020 7946 0958", "020 7946 0958"),
    ("phone", "Berlin 030 12345678", "030 12345678"),
    ("phone", "Paris 01 23 45 67 89", "01 23 45 67 89"),
    ("phone", "tel:+49 30 901820", "+49 30 901820"),
    ("phone", "+33 1 23 45 67 89", "+33 1 23 45 67 89"),
    ("phone", "Mumbai +91 98765 43210", "+91 98765 43210"),
    ("phone", "desk 201-555-0123x42", "201-555-0123x"),  # the match stops at an extension
    ("phone", "Manchester (0161) 496 0066", "(0161) 496 0066"),
    # IP addresses
    ("ipv4", "host 192.168.1.20 up", "192.168.1.20"),
    ("ipv4", "dns 8.8.8.8,", "8.8.8.8"),
    ("ipv4", "255.255.255.255", "255.255.255.255"),
    ("ipv6", "addr 2001:db8::1 ok", "2001:db8::1"),
    ("ipv6", "fe80::1ff:fe23:4567:890a%eth0", "fe80::1ff:fe23:4567:890a"),
    ("ipv6", "mapped ::ffff:192.0.2.1", "::ffff:192.0.2.1"),
    (
        "ipv6",
        "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
        "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
    ),
    # national identifiers
    ("uk_nino", "NI number AB 12 34 56 C.", "AB 12 34 56 C"),
    ("uk_nino", "NINO: JG103759A", "JG103759A"),
    ("de_tax_id", f"Steuer-ID: {IDNR}", f"Steuer-ID: {IDNR}"),
    ("de_tax_id", "IdNr 36 574 261 809", "IdNr 36 574 261 809"),
    ("de_tax_id", "tax id 36574261809", "tax id 36574261809"),
    ("de_tax_id", f"Meine Steuer-ID ist {IDNR}", f"Steuer-ID ist {IDNR}"),
    ("fr_nir", f"NIR {NIR}", NIR),
    ("fr_nir", "n° 2 95 10 99 126 111 93", "2 95 10 99 126 111 93"),
    ("fr_nir", f"Corse {NIR_CORSICA}", NIR_CORSICA),
    ("es_dni", "DNI 54362315K", "54362315K"),
    ("es_dni", f"DNI {make_dni('12345678')}", make_dni("12345678")),
    ("es_dni", "NIE X2482300W", "X2482300W"),
    ("es_dni", "NIE X-2482300-W", "X-2482300-W"),
    ("in_aadhaar", "Aadhaar 2341 2341 2346", "2341 2341 2346"),
    ("in_aadhaar", "id 2341-2341-2346", "2341-2341-2346"),
    ("in_aadhaar", "Aadhaar no. 234123412346", "Aadhaar no. 234123412346"),
    ("in_aadhaar", "my Aadhaar number is 234123412346", "Aadhaar number is 234123412346"),
    ("in_aadhaar", "UID 234123412346", "UID 234123412346"),
    ("it_codice_fiscale", "CF RCCMNL83S18D969H", "RCCMNL83S18D969H"),
    # dates of birth in context
    ("date_of_birth", "DOB: 12/05/1988", "DOB: 12/05/1988"),
    ("date_of_birth", "she was born on 3 March 1990.", "born on 3 March 1990"),
    ("date_of_birth", "date of birth is 1985-07-23", "date of birth is 1985-07-23"),
    ("date_of_birth", "Birthday: July 4th, 1976", "Birthday: July 4th, 1976"),
    ("date_of_birth", "Geburtsdatum: 01.02.1970", "Geburtsdatum: 01.02.1970"),
    ("date_of_birth", "d.o.b. 31/12/99", "d.o.b. 31/12/99"),
    ("date_of_birth", "Your date of birth. It's 12/05/1988", "date of birth. It's 12/05/1988"),
    ("date_of_birth", "confirm your birthday (12/05/1988)", "birthday (12/05/1988"),
    # known-format secrets
    ("anthropic_api_key", f"ANTHROPIC_API_KEY={ANTHROPIC}\n", ANTHROPIC),
    ("anthropic_api_key", f"x-api-key: {ANTHROPIC}", ANTHROPIC),
    ("anthropic_admin_key", f"admin key {ANTHROPIC_ADMIN}", ANTHROPIC_ADMIN),
    ("openai_api_key", f"OPENAI_API_KEY={OPENAI_PROJECT}", OPENAI_PROJECT),
    ("openai_api_key", f"key: {OPENAI_LEGACY}", OPENAI_LEGACY),
    ("aws_access_key_id", f"aws_access_key_id = {AWS_KEY_ID}", AWS_KEY_ID),
    (
        "aws_access_key_id",
        "temp ASIA" + rand(BASE32, 16, "asia"),
        "ASIA" + rand(BASE32, 16, "asia"),
    ),
    (
        "aws_secret_access_key",
        f"aws_secret_access_key = {AWS_SECRET}\n",
        f"aws_secret_access_key = {AWS_SECRET}",
    ),
    (
        "aws_secret_access_key",
        f'{{"SecretAccessKey": "{AWS_SECRET}"}}',
        f'SecretAccessKey": "{AWS_SECRET}',
    ),
    (
        "aws_secret_access_key",
        f"export AWS_SECRET_ACCESS_KEY={AWS_SECRET}",
        f"AWS_SECRET_ACCESS_KEY={AWS_SECRET}",
    ),
    (
        "aws_secret_access_key",
        f"aws configure set aws_secret_access_key {AWS_SECRET}",
        f"aws_secret_access_key {AWS_SECRET}",
    ),
    ("google_api_key", f"key={GOOGLE_KEY}&q=1", GOOGLE_KEY),
    (
        "gcp_service_account",
        f'{{"type": "service_account", "private_key_id": "{rand(HEX, 40, "gcp")}"}}',
        f'"private_key_id": "{rand(HEX, 40, "gcp")}"',
    ),
    (
        "azure_storage_key",
        "DefaultEndpointsProtocol=https;AccountName=acct;"
        f"AccountKey={AZURE_ACCOUNT_KEY};EndpointSuffix=core.windows.net",
        f"AccountKey={AZURE_ACCOUNT_KEY}",
    ),
    (
        "azure_storage_key",
        f"Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKey={AZURE_SHARED_KEY}",
        f"SharedAccessKey={AZURE_SHARED_KEY}",
    ),
    ("azure_client_secret", f"secret: {AZURE_CLIENT_SECRET} ", AZURE_CLIENT_SECRET),
    *[
        ("github_token", f"token {p}_{rand(B62, 36, p)}.", f"{p}_{rand(B62, 36, p)}")
        for p in ("ghp", "gho", "ghu", "ghs", "ghr")
    ],
    ("github_token", f"GITHUB_TOKEN={GITHUB_PAT}", GITHUB_PAT),
    ("gitlab_token", f"PRIVATE-TOKEN: {GITLAB}", GITLAB),
    ("slack_token", f"SLACK_BOT_TOKEN={SLACK_BOT}", SLACK_BOT),
    ("slack_token", f"user token {SLACK_USER}", SLACK_USER),
    ("slack_webhook_url", f"post to {SLACK_WEBHOOK} now", SLACK_WEBHOOK),
    ("stripe_key", f"Stripe.api_key = '{STRIPE}'", STRIPE),
    ("stripe_key", "restricted rk_live_" + rand(B62, 30, "rk"), "rk_live_" + rand(B62, 30, "rk")),
    ("npm_token", f"//registry.npmjs.org/:_authToken={NPM}", NPM),
    ("pypi_token", f"password = {PYPI}", PYPI),
    ("private_key", f"key:\n{pem()}\nthanks", pem()),
    ("private_key", pem("EC PRIVATE KEY", 3), pem("EC PRIVATE KEY", 3)),
    ("private_key", pem("OPENSSH PRIVATE KEY", 6), pem("OPENSSH PRIVATE KEY", 6)),
    ("private_key", pem("PRIVATE KEY", 20), pem("PRIVATE KEY", 20)),
    (
        "private_key",
        pem("RSA PRIVATE KEY", 4, "Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,0A1B2C3D\n\n"),
        pem("RSA PRIVATE KEY", 4, "Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,0A1B2C3D\n\n"),
    ),
    (
        "private_key",
        '{"private_key": "' + pem("PRIVATE KEY", 5).replace("\n", "\\n") + '\\n"}',
        pem("PRIVATE KEY", 5).replace("\n", "\\n"),
    ),
    ("private_key", pem("PGP PRIVATE KEY BLOCK", 5), pem("PGP PRIVATE KEY BLOCK", 5)),
    (
        "private_key_partial",
        pem("RSA PRIVATE KEY", 3, end=False) + "\n\nis this right?",
        pem("RSA PRIVATE KEY", 3, end=False) + "\n\nis",
    ),
    ("jwt", f"token={JWT}&x=1", JWT),
    ("jwt", f"Authorization: Bearer {JWT}", JWT),
    ("jwt", f"unsigned {make_jwt({'alg': 'none'})[:-43]}", make_jwt({"alg": "none"})[:-43]),
    # credentials in URLs and connection strings
    (
        "database_url",
        "DATABASE_URL=postgres://app:S3cretPw9@db.internal:5432/app",
        "postgres://app:S3cretPw9@db.internal",
    ),
    (
        "database_url",
        "mongodb+srv://reader:p4ssw0rdX@cluster0.example.net/test",
        "mongodb+srv://reader:p4ssw0rdX@cluster0.example.net",
    ),
    ("database_url", "redis://:s3cr3tPw@cache:6379/0", "redis://:s3cr3tPw@cache"),
    ("database_url", "jdbc:mysql://root:hunter22@host/db", "jdbc:mysql://root:hunter22@host"),
    (
        "url_credentials",
        "clone https://admin:Tr0ub4dor@example.com/repo.git",
        "https://admin:Tr0ub4dor@example.com",
    ),
    ("url_credentials", "ftp://bob:x9Yz!w@files.example.net", "ftp://bob:x9Yz!w@files.example.net"),
    (
        "connection_string_password",
        "Server=tcp:db,1433;Database=app;User Id=sa;Password=Pa55w0rd!;Encrypt=true",
        ";Password=Pa55w0rd!",
    ),
    (
        "connection_string_password",
        "Data Source=db;User ID=sa;pwd='pa ss;word'",
        ";pwd='pa ss;word'",
    ),
    (
        "basic_auth",
        "Authorization: Basic " + base64.b64encode(b"alice:Xk9mP2vL").decode(),
        "Authorization: Basic " + base64.b64encode(b"alice:Xk9mP2vL").decode(),
    ),
    (
        "bearer_token",
        "Authorization: Bearer " + rand(B62, 40, "bearer"),
        "Bearer " + rand(B62, 40, "bearer"),
    ),
    # generic secrets in context
    ("generic_secret", f'password = "{PASSWORD}"', f'password = "{PASSWORD}'),
    ("generic_secret", "DB_PASSWORD=q8Zr2mVx7TkP", "PASSWORD=q8Zr2mVx7TkP"),
    (
        "generic_secret",
        '"client_secret": "a8f5f167f44f4964e6c998dee827110c"',
        'client_secret": "a8f5f167f44f4964e6c998dee827110c',
    ),
    ("generic_secret", "api_key: 9fK2mQ7xR4tZ8wB1", "api_key: 9fK2mQ7xR4tZ8wB1"),
    ("generic_secret", "my password is Tr0ub4dor&3x", "password is Tr0ub4dor&3x"),
    (
        "generic_secret",
        "const accessToken = 'f3Gh8Kq2Lm9Np4Rs';",
        "accessToken = 'f3Gh8Kq2Lm9Np4Rs",
    ),
]


@pytest.mark.parametrize(("detector", "text", "expected"), TRUE_POSITIVES)
def test_true_positive(scanner: Scanner, detector: str, text: str, expected: str) -> None:
    assert (detector, expected) in found(scanner, text)


# --- near misses: (detector, text) the detector must not report ------------------------------

NEAR_MISSES = [
    # private keys: placeholders in docs and templates
    ("private_key", "-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----"),
    (
        "private_key",
        "-----BEGIN RSA PRIVATE KEY-----\n<your key here>\n-----END RSA PRIVATE KEY-----",
    ),
    ("private_key", '"-----BEGIN PRIVATE KEY-----\\nMIIE...\\n-----END PRIVATE KEY-----\\n"'),
    # email
    ("email", "retina asset logo@2x.png"),
    ("email", "user@localhost"),
    ("email", "name@domain.c"),
    ("email", "@handle said hi"),
    # payment cards
    ("payment_card", f"card {bad_luhn(VISA)}"),
    ("payment_card", f"order {card('9', 16)}"),  # Luhn-valid, no scheme starts with 9
    ("payment_card", f"amex? {card('37', 16)}"),  # Amex is 15 digits
    ("payment_card", f"visa? {card('4', 15)}"),
    ("payment_card", f"groups {grouped(VISA, (4, 2, 2, 4, 4))}"),
    ("payment_card", f"mixed {VISA[:4]} {VISA[4:8]}-{VISA[8:12]} {VISA[12:]}"),
    ("payment_card", f"run 99{VISA}123"),
    ("payment_card", "tracking 1234567890123"),
    # IBAN
    ("iban", "DE00 3704 0044 0532 0130 00"),
    ("iban", "DE89 3704 0044 0532 0130 0"),
    ("iban", "XX89370400440532013000"),
    ("iban", "DE89 370400 440532 013000"),
    ("iban", "de89370400440532013000"),
    # US SSN: area, group and serial rules, documentation numbers, unseparated without context
    ("us_ssn", "000-12-3456"),
    ("us_ssn", "666-12-3456"),
    ("us_ssn", "912-34-5678"),
    ("us_ssn", "123-00-4567"),
    ("us_ssn", "123-45-0000"),
    ("us_ssn", "078-05-1120"),
    ("us_ssn", "123-45-6789"),
    ("us_ssn", "111-11-1111"),
    ("us_ssn", "order 536221234"),
    ("us_ssn", "536-22 1234"),
    # phone numbers that are dates, order numbers, versions or not in any plan
    ("phone", "on 2023-01-15"),
    ("phone", "on 12.05.2023"),
    ("phone", "on 06/09/1988"),
    ("phone", "Order #5551234567"),
    ("phone", "call 555-123-4567"),
    ("phone", "+1 555 0100"),
    ("phone", "version 0.12.3"),
    ("phone", "room 101"),
    ("phone", "ISBN 978-3-16-148410-0"),
    ("phone", "at 18:20:05.246984"),  # dotted trunk-0 numbers are French only
    # IP addresses
    ("ipv4", "bad 999.1.1.1"),
    ("ipv4", "bad 256.1.1.1"),
    ("ipv4", "leading zero 192.168.01.1"),
    ("ipv4", "three parts 10.0.1"),
    ("ipv6", "at 10:30:45"),
    ("ipv6", "at 12:34"),
    ("ipv6", "std::vector<int> a::b"),
    ("ipv6", "mac 00:1A:2B:3C:4D:5E"),
    ("ipv6", "unspecified ::"),
    # national identifiers
    ("uk_nino", "BG 12 34 56 A"),
    ("uk_nino", "AB 12 34 56 E"),
    ("uk_nino", "DA123456A"),
    ("uk_nino", "AB 1234 56 C"),
    ("de_tax_id", "Steuer-ID: 36574261808"),
    ("de_tax_id", "36574261809"),
    ("fr_nir", NIR[:-2] + f"{(int(NIR[-2:]) + 1) % 100:02d}"),
    ("fr_nir", "1 85 13 78 006 084 36"),
    ("es_dni", "DNI 54362315Z"),
    ("es_dni", "NIE X2482300A"),
    ("in_aadhaar", "2341 2341 2347"),
    ("in_aadhaar", "1341 2341 2346"),
    ("in_aadhaar", "234123412346"),
    ("in_aadhaar", "tracking 2341 2341 2346 0000"),  # four groups are no Aadhaar
    ("it_codice_fiscale", "RCCMNL83S18D969X"),
    # dates of birth
    ("date_of_birth", "DOB: 31/02/1988"),
    ("date_of_birth", "born in 1990"),
    ("date_of_birth", "meeting on 12/05/1988"),
    ("date_of_birth", "DOB: 1850-01-01"),
    ("date_of_birth", "born on 45 March 1990"),
    ("date_of_birth", "Dobby 12/05/1988"),
    ("date_of_birth", "reborn 12/05/1988"),
    # known-format secrets: wrong prefix, wrong length, placeholders
    ("anthropic_api_key", "sk-ant-api02-" + rand(B64URL, 93, "anthropic") + "AA"),
    ("anthropic_api_key", "sk-ant-api03-" + rand(B64URL, 92, "anthropic") + "AA"),
    ("anthropic_api_key", "sk-ant-api03-" + rand(B64URL, 93, "anthropic") + "AB"),
    ("anthropic_api_key", "sk-ant-api03-" + "x" * 93 + "AA"),
    ("anthropic_admin_key", "sk-ant-admin01-" + "EXAMPLE" * 13 + "AAAA"),
    ("openai_api_key", "sk-proj-" + rand(B64URL, 156, "oa-nomarker")),
    ("openai_api_key", "sk-" + rand(B62, 20, "oa3") + "T3BlbkFK" + rand(B62, 20, "oa4")),
    ("aws_access_key_id", "AKIAIOSFODNN7EXAMPLE"),
    ("aws_access_key_id", "AKIA" + rand(BASE32, 15, "aws")),
    ("aws_access_key_id", "AKIB" + rand(BASE32, 16, "aws")),
    ("aws_access_key_id", "akia" + rand(BASE32, 16, "aws").lower()),
    ("aws_secret_access_key", "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("aws_secret_access_key", f"aws_secret_access_key = {AWS_SECRET[:39]}"),
    ("aws_secret_access_key", f"aws_secret_access_key = {AWS_SECRET}Q"),
    ("aws_secret_access_key", f"checksum {AWS_SECRET}"),
    ("google_api_key", "AIza" + rand(B64URL, 34, "google")),
    ("google_api_key", "AIzb" + rand(B64URL, 35, "google")),
    ("google_api_key", "AIza" + rand(B64URL, 37, "google")),
    ("gcp_service_account", '"private_key_id": "' + "0" * 40 + '"'),
    ("gcp_service_account", '"private_key_id": "' + rand(HEX, 39, "gcp") + '"'),
    (
        "azure_storage_key",
        "AccountKey=" + base64.b64encode(random.Random(1).randbytes(48)).decode(),
    ),
    ("azure_storage_key", "AccountKey=" + "A" * 86 + "=="),
    ("azure_client_secret", rand(B62, 3, "az1") + "8Q-" + rand(B62, 34, "az2")),
    ("github_token", "ghx_" + rand(B62, 36, "ghp")),
    ("github_token", "ghp_" + rand(B62, 35, "ghp")),
    ("github_token", "ghp_" + "x" * 36),
    ("github_token", "ghp_1234567890abcdefghijklmnopqrstuvwxyz"),
    ("gitlab_token", "glpat-" + rand(B64URL, 19, "gitlab")),
    ("gitlab_token", "glpat-xxxxxxxxxxxxxxxxxxxx"),
    ("slack_token", "xoxb-XXXXXXXXXX-XXXXXXXXXXXXX-XXXXXXXXXXXXXXXXXXXXXXXX"),
    ("slack_token", "xoxq-" + SLACK_BOT[5:]),
    (
        "slack_webhook_url",
        "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
    ),
    ("stripe_key", "sk_test_" + rand(B62, 24, "stripe")),
    ("stripe_key", "pk_live_" + rand(B62, 24, "stripe")),
    ("stripe_key", "sk_live_" + "x" * 24),
    ("npm_token", "npm_" + rand(B62, 35, "npm")),
    ("pypi_token", "pypi-AgEIcHlwaS5vcmc" + rand(B64URL, 40, "pypi")),
    ("private_key", pem("PUBLIC KEY")),
    ("private_key", pem("CERTIFICATE")),
    ("private_key_partial", pem("PUBLIC KEY", end=False)),
    ("private_key_partial", "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA...\n"),
    ("jwt", f"{b64url({'typ': 'JWT'})}.{b64url({'sub': 'x'})}.c2ln"),
    ("jwt", "eyJhbGciOiJIUzI1NiJ9 alone"),
    # credentials in URLs and connection strings: placeholders and templates
    ("database_url", "postgres://user:password@localhost/db"),
    ("database_url", "postgres://user:${DB_PASSWORD}@db.internal/app"),
    ("database_url", "postgres://db.internal:5432/app"),
    ("url_credentials", "https://user:<password>@example.com"),
    ("url_credentials", "https://example.com:8080/path"),
    ("url_credentials", "https://user:****@example.com"),
    ("connection_string_password", "Server=db;User Id=sa;Password=;"),
    ("connection_string_password", "Server=db;User Id=sa;Password=********;"),
    ("connection_string_password", "Server=db;User Id=sa;Password={password};"),
    ("basic_auth", "Authorization: Basic " + base64.b64encode(b"alice").decode()),
    ("basic_auth", "Authorization: Basic " + base64.b64encode(b"user:password").decode()),
    ("bearer_token", "Bearer tokens are issued by the identity provider"),
    ("bearer_token", "Authorization: Bearer <token>"),
    ("bearer_token", "Authorization: Bearer ${TOKEN}"),
    # generic secrets: code, placeholders, low entropy, deference to known formats
    ("generic_secret", 'password = "changeme"'),
    ("generic_secret", "password: ********"),
    ("generic_secret", "token = get_token()"),
    ("generic_secret", "api_key = os.environ['API_KEY']"),
    ("generic_secret", "max_tokens = 1024000000"),
    ("generic_secret", "tokenizer = AutoTokenizer.from_pretrained('bert')"),
    ("generic_secret", "secret_file = /etc/secrets/db.key"),
    ("generic_secret", "password = ${DB_PASSWORD}"),
    ("generic_secret", "auth_token: OAuth2Session"),
    ("generic_secret", "password: aaaaaaaaaaaa"),
    ("generic_secret", "for token in tokens: total_tokens += len(token)"),
    ("generic_secret", 'TOKEN_HEADER = "X-API-Key"'),
    ("generic_secret", 'secret_name = "prod/payments/stripe"'),
    ("generic_secret", f"api_key = {ANTHROPIC}"),
    ("generic_secret", f"token: {JWT}"),
]


@pytest.mark.parametrize(("detector", "text"), NEAR_MISSES)
def test_near_miss(scanner: Scanner, detector: str, text: str) -> None:
    assert detector not in [d for d, _ in found(scanner, text)]


def test_known_formats_win_over_the_context_detectors(scanner: Scanner) -> None:
    assert found(scanner, f"api_key = {ANTHROPIC}") == [("anthropic_api_key", ANTHROPIC)]
    assert found(scanner, f"Authorization: Bearer {JWT}") == [("jwt", JWT)]
    secret = f"aws_secret_access_key={AWS_SECRET}"
    assert found(scanner, secret) == [("aws_secret_access_key", secret)]


# --- validators ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("digits", "valid"),
    [
        ("79927398713", True),
        ("79927398710", False),
        ("4111111111111111", True),
        ("4111111111111112", False),
        ("0", True),
        ("", False),
        ("12a4", False),
        ("١٢٣", False),  # non-ASCII digits are not card digits
    ],
)
def test_luhn(digits: str, valid: bool) -> None:
    assert v.luhn(digits) is valid


@pytest.mark.parametrize(
    ("number", "brand"),
    [
        (VISA, "visa"),
        (card("4", 13), "visa"),
        (card("55", 16), "mastercard"),
        (card("2720", 16), "mastercard"),
        (card("2721", 16), None),  # just past the 2-series
        (card("2220", 16), None),
        (AMEX, "amex"),
        (card("34", 15), "amex"),
        (DISCOVER, "discover"),
        (card("644", 16), "discover"),
        (card("65", 19), "discover"),
        (JCB, "jcb"),
        (card("3590", 16), None),
        (DINERS, "diners"),
        (card("300", 14), "diners"),
        (UNIONPAY, "unionpay"),
        (card("1", 16), None),
    ],
)
def test_card_brand(number: str, brand: str | None) -> None:
    assert v.card_brand(number) == brand


def test_iban_mod97_and_lengths() -> None:
    assert v.iban_mod97("DE89370400440532013000") == 1
    assert v.iban("DE89 3704 0044 0532 0130 00")
    assert not v.iban("DE88370400440532013000")
    assert not v.iban("DE8937040044053201300")  # 21 characters, DE has 22
    assert not v.iban("DE89 37040 044 0532 0130 00")  # groups are printed by four
    for country, bban in [
        ("GB", "NWBK60161331926819"),
        ("CH", "0483050000000000A"),
        ("SE", "5000" * 5),
    ]:
        assert v.iban(make_iban(country, bban)), country


def test_iban_lengths_agree_with_stdnum_registry() -> None:
    """The table is ours (nothing is read at scan time); python-stdnum's copy of the SWIFT
    registry is the cross-check, and its validator agrees with ours on generated IBANs."""
    registry = {}
    for line in (files("stdnum") / "iban.dat").read_text().splitlines():
        if m := re.match(r'([A-Z]{2}) .*bban="([^"]+)"', line):
            registry[m[1]] = 4 + sum(int(n) for n in re.findall(r"\d+", m[2]))
    shared = registry.keys() & v.IBAN_LENGTHS.keys()
    assert len(shared) > 70
    assert {cc: v.IBAN_LENGTHS[cc] for cc in shared} == {cc: registry[cc] for cc in shared}
    examples = [
        "DE89370400440532013000",
        "GB82WEST12345698765432",
        "FR1420041010050500013M02606",
        "NO9386011117947",
        "MT84MALT011000012345MTLCAST001S",
        make_iban("NL", "ABNA0417164300"),
        make_iban("CH", "0483050000000000A"),
    ]
    for number in examples:
        assert v.iban(number), number
        assert stdnum_iban.is_valid(number), number
        broken = number[:2] + f"{(int(number[2:4]) + 1) % 100:02d}" + number[4:]
        assert not v.iban(broken), broken
        assert not stdnum_iban.is_valid(broken), broken
    assert not v.iban("GB18000000000000000000")  # mod-97 holds, but GB banks are letters


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("001-01-0001", True),
        ("665-99-9999", True),
        ("667-01-0001", True),
        ("899-99-9999", True),
        ("000-01-0001", False),
        ("666-01-0001", False),
        ("900-01-0001", False),
        ("999-01-0001", False),
        ("123-00-0001", False),
        ("123-01-0000", False),
        ("219-09-9999", False),
        ("078-05-1120", False),
        ("555-55-5555", False),
    ],
)
def test_ssn_rules(text: str, valid: bool) -> None:
    assert v.us_ssn(text) is valid


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("192.168.1.1", True),
        ("0.0.0.0", True),
        ("999.1.1.1", False),
        ("1.1.1.256", False),
        ("01.1.1.1", False),
    ],
)
def test_ipv4(text: str, valid: bool) -> None:
    assert v.ipv4(text) is valid


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("2001:db8::1", True),
        ("::ffff:192.0.2.1", True),
        ("::1", False),  # one group: loopback, and what "::1" in code looks like
        ("::", False),
        ("ab::cd", False),  # no decimal digit: code (a::b paths), not an address
        ("12:34:56", False),
        ("1:2:3:4:5:6:7:8:9", False),
    ],
)
def test_ipv6(text: str, valid: bool) -> None:
    assert v.ipv6(text) is valid


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        ("+44 20 7946 0958", True),
        ("(201) 555-0123", True),
        ("030 12345678", True),
        ("2023-01-15", False),  # a date
        ("15.01.2023", False),
        ("01/15/23", False),
        ("555-123-4567", False),  # 555 is no area code
        ("+1 234", False),  # too short
        ("+123456789012345678", False),  # longer than E.164
        ("000-000-0000", False),
    ],
)
def test_phone(text: str, valid: bool) -> None:
    assert v.phone(text) is valid


def test_date_of_birth_calendar() -> None:
    assert v.date_of_birth("DOB 29/02/2000")  # leap year
    assert not v.date_of_birth("DOB 29/02/1900")
    assert v.date_of_birth("born 02/13/1990")  # US month/day order
    assert not v.date_of_birth("born 13/13/1990")
    assert v.date_of_birth("born Sept 3, 1990")
    assert not v.date_of_birth("born Smarch 3, 1990")
    assert not v.date_of_birth("born on 1899-12-31")


def test_entropy_and_placeholders() -> None:
    assert v.shannon_entropy("") == 0
    assert v.shannon_entropy("aaaa") == 0
    assert v.shannon_entropy("abcd") == pytest.approx(2.0)
    assert v.shannon_entropy("ab" * 5000) == pytest.approx(1.0)
    for placeholder in (
        "EXAMPLEKEY123",
        "xxxx-1234",
        "${TOKEN}",
        "<api-key>",
        "abc123456def",
        "zzzzzzqw",
    ):
        assert v.looks_placeholder(placeholder), placeholder
    assert not v.looks_placeholder(rand(B62, 40, "random"))
    assert v.high_entropy_value("q8Zr2mVx7TkP")
    assert not v.high_entropy_value("Summer")  # short
    assert not v.high_entropy_value("self.settings.api_token")
    assert not v.high_entropy_value("./config/secret.yaml")


def test_jwt_header_must_name_an_algorithm() -> None:
    assert v.jwt(JWT)
    assert not v.jwt(f"{b64url(['alg'])}.e30.sig")
    assert not v.jwt("eyJ!!!.eyJ.x")


def test_base64_key_sizes() -> None:
    assert v.base64_key(AZURE_ACCOUNT_KEY)
    assert v.base64_key(AZURE_SHARED_KEY)
    assert not v.base64_key(AZURE_ACCOUNT_KEY[:-4])
    assert not v.base64_key("not base64!")


# --- the catalogue itself --------------------------------------------------------------------


def test_catalogue_shape() -> None:
    detectors = catalogue()
    ids = [d.id for d in detectors]
    assert len(ids) == len(set(ids))
    for d in detectors:
        assert d.category in ("pii", "secret")
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*", d.label), d.id
        assert 0 < d.confidence <= 1
        limit = 8192 if d.id.startswith("private_key") else MAX_LENGTH_LIMIT
        assert d.max_length <= limit, d.id
        # max_length is the exact bound of the pattern, checked in both engines
        assert check_pattern(d.id, d.pattern, d.flags, limit=limit) == d.max_length
        re.compile(d.pattern, python_flags(d.flags))
    categories = {d.category for d in detectors}
    assert categories == {"pii", "secret"}


def test_every_detector_has_a_true_positive_and_a_near_miss() -> None:
    ids = {d.id for d in catalogue()}
    assert ids == {d for d, _, _ in TRUE_POSITIVES}
    assert ids == {d for d, _ in NEAR_MISSES}


def test_findings_carry_the_detector_metadata(scanner: Scanner) -> None:
    text = f"mail a@example.com key {AWS_KEY_ID}"
    assert scanner.scan(text) == [
        Finding("email", "pii", "EMAIL", 5, 18),
        Finding("aws_access_key_id", "secret", "AWS_ACCESS_KEY_ID", 23, 43),
    ]
