"""Labelled PII sentences: presidio-evaluator's templates and identities, ours, and near misses.

Three sources, all generated from one seed:

- **presidio-evaluator** (MIT): its sentence templates (``raw_data/templates.txt``) filled the
  way its ``SentenceFaker``/``RecordGenerator`` fills them: one FakeNameGenerator identity per
  sentence (``raw_data/FakeNameGenerator.com_3000.csv``) supplies the fields it has (email,
  phone number, birthday, names, street...), Faker (``en_US``) and the package's own lists
  (organisations, nationalities, US driver licence formats) the rest. The files are read from
  the installed package without importing it (its import pulls pandas, spaCy and a WikiData
  query). Deviation: no sentence is lower-cased (its generator lower-cases 5%).
- **Ours**: templates for the identifiers its templates lack (UK NINO, German tax ID, Spanish
  DNI/NIE, Italian codice fiscale, Aadhaar, French NIR, dates of birth) and more varied forms of
  the shared ones (grouped card numbers, IBANs of several countries, valid phone numbers of
  15 countries in international, national and E.164 form, IPv6, log lines, JSON).
- **Near misses**: sentences with no PII and numbers or tokens shaped like it (order and
  tracking numbers, timestamps, versions, barcodes, IMEIs, hashes, UUIDs, MAC addresses, ...).
  Every finding in them is a false positive.

Values carry valid check digits where the format has them: a detector that validates is
tested on its recall, not on refusing garbage.
"""

from __future__ import annotations

import csv
import importlib.util
import ipaddress
import random
import string
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path

import phonenumbers
import yaml
from faker import Faker
from stdnum import luhn, verhoeff
from stdnum.de import idnr
from stdnum.iso7064 import mod_11_10

from quality_data import Sample, fill

EVALUATOR_VERSION = "0.3.2"
EVALUATOR_INSTALL = (
    f".venv/bin/pip install --no-deps presidio-evaluator=={EVALUATOR_VERSION}"
    "  (or: make bench-quality)"
)

# Canonical entity names of the PII that the corpus labels and the tables score.
SHARED = (
    "EMAIL",
    "PHONE",
    "PAYMENT_CARD",
    "IBAN",
    "US_SSN",
    "IP_ADDRESS",
    "UK_NINO",
    "DE_TAX_ID",
    "ES_DNI",
    "IT_CODICE_FISCALE",
    "IN_AADHAAR",
)
"""Entities both engines have a recognizer for."""
ZTGATE_ONLY = ("FR_NIR", "DATE_OF_BIRTH")

FIELD_ENTITY = {
    # presidio-evaluator's template fields
    "credit_card_number": "PAYMENT_CARD",
    "iban": "IBAN",
    "phone_number": "PHONE",
    "email": "EMAIL",
    "ssn": "US_SSN",
    "ip_address": "IP_ADDRESS",
    "date_of_birth": "DATE_OF_BIRTH",
    # ours
    "card_printed": "PAYMENT_CARD",
    "iban_any": "IBAN",
    "phone_valid": "PHONE",
    "ipv4": "IP_ADDRESS",
    "ipv6": "IP_ADDRESS",
    "uk_nino": "UK_NINO",
    "de_tax_id": "DE_TAX_ID",
    "es_dni": "ES_DNI",
    "it_codice_fiscale": "IT_CODICE_FISCALE",
    "in_aadhaar": "IN_AADHAAR",
    "fr_nir": "FR_NIR",
    "dob": "DATE_OF_BIRTH",
}


def evaluator_raw_data() -> Path:
    """presidio-evaluator's ``data_generator/raw_data`` folder, found without importing it."""
    spec = importlib.util.find_spec("presidio_evaluator")
    locations = list(spec.submodule_search_locations or []) if spec else []
    raw = Path(locations[0]) / "data_generator" / "raw_data" if locations else None
    if raw is None or not (raw / "templates.txt").is_file():
        raise SystemExit(f"presidio-evaluator's data files are missing: {EVALUATOR_INSTALL}")
    return raw


# --- values ---------------------------------------------------------------------------------

_UPPER = string.ascii_uppercase
# UK NINO: first letter not D, F, I, Q, U, V; second not those nor O; some pairs never issued.
_NINO_FIRST = "ABCEGHJKLMNOPRSTWXYZ"
_NINO_SECOND = "ABCEGHJKLMNPRSTWXYZ"
_NINO_UNUSED = {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}
_PHONE_REGIONS = {
    "US": 4.0,
    "GB": 2.0,
    "IN": 2.0,
    "CA": 1.0,
    "AU": 1.0,
    "DE": 1.0,
    "FR": 1.0,
    "ES": 0.5,
    "IT": 0.5,
    "NL": 0.5,
    "BR": 0.5,
    "IE": 0.5,
    "CH": 0.5,
    "JP": 0.5,
    "MX": 0.5,
}
_IBAN_LOCALES = ("en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL")


class Values:
    """Generators for every template field, seeded once."""

    def __init__(self, seed: int, raw: Path) -> None:
        self.rng = random.Random(seed)
        self.fake = Faker("en_US")
        self.fake.seed_instance(seed)
        self.locales = {loc: Faker(loc) for loc in (*_IBAN_LOCALES, "es_ES", "it_IT", "fr_FR")}
        for i, f in enumerate(self.locales.values()):
            f.seed_instance(seed + 1 + i)
        with (raw / "companies_and_organizations.csv").open(encoding="utf-8-sig") as fh:
            self.organizations = [row["organization"] for row in csv.DictReader(fh, delimiter="\t")]
        with (raw / "nationalities.csv").open(encoding="utf-8-sig") as fh:
            self.nationalities = list(csv.DictReader(fh))
        licences = yaml.safe_load((raw / "us_driver_license_format.yaml").read_text())
        self.licence_formats = [
            f
            for formats in licences["en"]["faker"]["driving_license"]["usa"].values()
            for f in formats
        ]
        self.records = _identities(raw)

    # Faker's dates are drawn up to today, which would change the corpus from day to day.
    def when(self) -> datetime:
        """A moment in 2000-2025."""
        seconds = self.rng.randrange(26 * 365 * 86400)
        return datetime(2000, 1, 1) + timedelta(
            seconds=seconds, microseconds=self.rng.randrange(10**6)
        )

    def birth(self) -> date:
        """A birth date in 1935-2006."""
        return date(1935, 1, 1) + timedelta(days=self.rng.randrange(72 * 365))

    def year(self) -> str:
        return str(self.rng.randrange(1970, 2026))

    # presidio-evaluator's extra providers, re-implemented without pandas
    def ip_address(self) -> str:
        return self.fake.ipv4() if self.rng.random() < 0.8 else self.fake.ipv6()

    def us_driver_license(self) -> str:
        return self.fake.bothify(self.rng.choice(self.licence_formats))

    def age(self) -> str:
        shape = self.rng.choices(
            ["%#", "%", "1.%", "2.%", "100", "101", "104", "0.%"],
            [0.8, 0.1, 0.02, 0.02, 0.02, 0.01, 0.01, 0.02],
        )[0]
        return self.fake.numerify(shape)

    def address(self) -> str:
        f = self.fake
        shapes: list[Callable[[], str]] = [
            lambda: f"{f.street_address()}\n{f.city()}, {f.state_abbr()} {f.postcode()}",
            lambda: f"{f.street_address()}, {f.city()}, {f.country()}",
            lambda: f"{f.building_number()} {f.street_name()} {f.secondary_address()} {f.city()}",
            lambda: f"the corner of {f.street_name()} and {f.street_name()}",
        ]
        return self.rng.choice(shapes)()

    def nationality(self, column: str = "nationality") -> str:
        return self.rng.choice(self.nationalities)[column]

    # ours
    def card_printed(self) -> str:
        kind = self.rng.choice(["visa16", "mastercard", "amex", "discover", "jcb16", "diners"])
        digits = self.fake.credit_card_number(card_type=kind)
        if kind == "amex":
            return f"{digits[:4]} {digits[4:10]} {digits[10:]}"
        sep = self.rng.choice([" ", "-", ""])
        return sep.join(digits[i : i + 4] for i in range(0, len(digits), 4))

    def iban_any(self) -> str:
        compact = self.locales[self.rng.choice(_IBAN_LOCALES)].iban()
        if self.rng.random() < 0.5:
            return compact
        return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))

    def phone_valid(self) -> str:
        regions = list(_PHONE_REGIONS)
        region = self.rng.choices(regions, [_PHONE_REGIONS[r] for r in regions])[0]
        kind = self.rng.choice(
            [phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE]
        )
        example = phonenumbers.example_number_for_type(region, kind)
        assert example is not None
        nsn = phonenumbers.national_significant_number(example)
        for _ in range(200):
            digits = nsn[:3] + "".join(self.rng.choice(string.digits) for _ in nsn[3:])
            number = phonenumbers.parse(f"+{example.country_code}{digits}")
            if phonenumbers.is_valid_number(number):
                break
        style = self.rng.choices(
            [
                phonenumbers.PhoneNumberFormat.INTERNATIONAL,
                phonenumbers.PhoneNumberFormat.NATIONAL,
                phonenumbers.PhoneNumberFormat.E164,
            ],
            [0.45, 0.4, 0.15],
        )[0]
        return phonenumbers.format_number(number, style)

    def ipv4(self) -> str:
        return self.fake.ipv4_private() if self.rng.random() < 0.3 else self.fake.ipv4_public()

    def ipv6(self) -> str:
        full = self.fake.ipv6()
        return full if self.rng.random() < 0.6 else _compressed(full, self.rng)

    def uk_nino(self) -> str:
        while True:
            prefix = self.rng.choice(_NINO_FIRST) + self.rng.choice(_NINO_SECOND)
            if prefix not in _NINO_UNUSED:
                break
        digits = "".join(self.rng.choice(string.digits) for _ in range(6))
        suffix = self.rng.choice("ABCD")
        if self.rng.random() < 0.5:
            return f"{prefix} {digits[:2]} {digits[2:4]} {digits[4:]} {suffix}"
        return f"{prefix}{digits}{suffix}"

    def de_tax_id(self) -> str:
        while True:
            ten = str(self.rng.randrange(1, 10)) + "".join(
                self.rng.choice(string.digits) for _ in range(9)
            )
            number: str = ten + mod_11_10.calc_check_digit(ten)
            if idnr.is_valid(number):
                break
        if self.rng.random() < 0.3:
            return f"{number[:2]} {number[2:5]} {number[5:8]} {number[8:]}"
        return number

    def es_dni(self) -> str:
        es = self.locales["es_ES"]
        return es.nif() if self.rng.random() < 0.6 else es.nie()

    def it_codice_fiscale(self) -> str:
        return str(self.locales["it_IT"].ssn())

    def in_aadhaar(self) -> str:
        eleven = str(self.rng.randrange(2, 10)) + "".join(
            self.rng.choice(string.digits) for _ in range(10)
        )
        number = eleven + verhoeff.calc_check_digit(eleven)
        if self.rng.random() < 0.6:
            return f"{number[:4]} {number[4:8]} {number[8:]}"
        return number

    def fr_nir(self) -> str:
        n = str(self.locales["fr_FR"].ssn())
        if self.rng.random() < 0.5:
            return n
        return f"{n[0]} {n[1:3]} {n[3:5]} {n[5:7]} {n[7:10]} {n[10:13]} {n[13:]}"

    def dob(self) -> str:
        d = self.birth()
        return self.rng.choice(
            [
                f"{d.month}/{d.day}/{d.year}",
                d.strftime("%d/%m/%Y"),
                d.isoformat(),
                f"{d.day} {d.strftime('%B')} {d.year}",
                f"{d.strftime('%B')} {d.day}, {d.year}",
                d.strftime("%d.%m.%Y"),
            ]
        )

    def provider(self, field: str) -> str:
        """A value for ``field`` from Faker or the lists, as the evaluator's providers give."""
        special: dict[str, Callable[[], str]] = {
            "credit_card_number": self.fake.credit_card_number,
            "ip_address": self.ip_address,
            "us_driver_license": self.us_driver_license,
            "age": self.age,
            "address": self.address,
            "organization": lambda: self.rng.choice(self.organizations),
            "company": lambda: self.rng.choice(self.organizations),
            "nationality": self.nationality,
            "nation_woman": lambda: self.nationality("woman"),
            "nation_man": lambda: self.nationality("man"),
            "nation_plural": lambda: self.nationality("plural"),
            "person": self.fake.name,
            "date_time": lambda: str(self.when()),
            "date_of_birth": lambda: self.birth().strftime("%m/%d/%Y"),
            "year": self.year,
            "card_printed": self.card_printed,
            "iban_any": self.iban_any,
            "phone_valid": self.phone_valid,
            "ipv4": self.ipv4,
            "ipv6": self.ipv6,
            "uk_nino": self.uk_nino,
            "de_tax_id": self.de_tax_id,
            "es_dni": self.es_dni,
            "it_codice_fiscale": self.it_codice_fiscale,
            "in_aadhaar": self.in_aadhaar,
            "fr_nir": self.fr_nir,
            "dob": self.dob,
        }
        make = special.get(field)
        if make is not None:
            return make()
        return str(getattr(self.fake, field)())


def _compressed(full: str, rng: random.Random) -> str:
    """An IPv6 address with a run of zero groups, written with ``::``."""
    groups = full.split(":")
    start = rng.randrange(1, 6)
    length = rng.randrange(1, 8 - start)
    for i in range(start, start + length):
        groups[i] = "0"
    return ipaddress.IPv6Address(":".join(groups)).compressed


def _identities(raw: Path) -> list[dict[str, str]]:
    """FakeNameGenerator rows renamed the way presidio-evaluator's ``load_fake_person_df`` does
    (its credit card column dropped, as there: Faker's numbers are used instead)."""
    renames = {
        "Title": "prefix",
        "GivenName": "first_name",
        "Surname": "last_name",
        "StreetAddress": "street_name",
        "City": "city",
        "State": "state_abbr",
        "StateFull": "state",
        "ZipCode": "zipcode",
        "CountryFull": "country",
        "NameSet": "nationality",
        "EmailAddress": "email",
        "TelephoneNumber": "phone_number",
        "Birthday": "date_of_birth",
        "Age": "age",
        "Occupation": "job",
        "Company": "company",
        "Domain": "domain_name",
        "Username": "user_name",
    }
    records = []
    rng = random.Random(0)
    with (raw / "FakeNameGenerator.com_3000.csv").open(encoding="utf-8-sig") as fh:
        for row in csv.DictReader(fh):
            record = {new: row[old] for old, new in renames.items() if row.get(old)}
            first, last = row["GivenName"], row["Surname"]
            if rng.random() > 0.2:
                person = f"{first} {last}"
            else:
                person = f"{first} {row['MiddleInitial']}{rng.choice([' ', '. '])}{last}"
            record["person"] = record["name"] = person
            gender = row["Gender"]
            for part, value in (
                ("first_name", first),
                ("last_name", last),
                ("prefix", row["Title"]),
            ):
                record[f"{part}_{gender}"] = value
            records.append(record)
    return records


# --- templates ------------------------------------------------------------------------------

# Ours. Written for this benchmark: chat, forms, logs, JSON and CSV shapes, the context word
# sometimes right before the value, sometimes elsewhere in the sentence, sometimes absent.
OWN_TEMPLATES: dict[str, tuple[str, ...]] = {
    "PAYMENT_CARD": (
        "Please charge the renewal to my card {{card_printed}}, expiry 08/29.",
        "card_number,holder\n{{card_printed}},{{person}}",
        "I was billed twice on {{card_printed}} last week, can you refund one?",
        '{"customer": "{{person}}", "pan": "{{card_printed}}", "cvv": "***"}',
        "Visa ending in the number {{card_printed}} was declined at checkout.",
        "The number on the front is {{card_printed}}.",
    ),
    "IBAN": (
        "Please send the deposit to IBAN {{iban_any}} (account holder {{person}}).",
        "Bankverbindung: {{iban_any}}",
        "Refund to {{iban_any}}, reference {{year}}-REFUND.",
        '{"beneficiary": "{{person}}", "account": "{{iban_any}}"}',
        "My new account is {{iban_any}}, the old one is closed.",
    ),
    "PHONE": (
        "You can reach me on {{phone_valid}} after 6pm.",
        "Tel: {{phone_valid}}",
        "{{person}}\n{{job}}, {{organization}}\nMobile {{phone_valid}}",
        "Call the front desk at {{phone_valid}} if the door is locked.",
        '{"name": "{{person}}", "phone": "{{phone_valid}}"}',
        "She left a voicemail from {{phone_valid}} about the delivery.",
        "contact: {{person}} / {{phone_valid}} / {{email}}",
    ),
    "EMAIL": (
        "Forward the invoice to {{email}} and copy me.",
        "From: {{person}} <{{email}}>",
        '{"user": {"email": "{{email}}", "active": true}}',
        "Her address changed to {{email}} in March.",
    ),
    "US_SSN": (
        "SSN: {{ssn}}",
        "The applicant's social security number is {{ssn}}.",
        "{{person}}, {{ssn}}, {{date_of_birth}}",
        "Please verify the SSN {{ssn}} on file for {{person}}.",
    ),
    "IP_ADDRESS": (
        "Failed password for admin from {{ipv4}} port 52144 ssh2",
        '{{ipv4}} - - [12/Mar/2024:10:02:11 +0000] "GET /login HTTP/1.1" 200 512',
        "The VPN assigned me {{ipv6}} but the site sees {{ipv4}}.",
        "Whitelist {{ipv4}} and {{ipv6}} on the firewall.",
        "client_ip={{ipv6}} status=403",
    ),
    "UK_NINO": (
        "My National Insurance number is {{uk_nino}}.",
        "NI number: {{uk_nino}}",
        "Please update the payroll record for {{person}}, NINO {{uk_nino}}, from next month.",
        '{"employee": "{{person}}", "ni_number": "{{uk_nino}}"}',
        "HMRC wrote to {{person}} ({{uk_nino}}) about the tax code.",
        "{{uk_nino}} is the reference they asked for.",
    ),
    "DE_TAX_ID": (
        "Meine Steuer-ID ist {{de_tax_id}}.",
        "Steueridentifikationsnummer: {{de_tax_id}}",
        "Tax ID {{de_tax_id}} belongs to {{person}}, please add it to the payslip.",
        "IdNr {{de_tax_id}}",
        "For the German return I need your tax identification number: {{de_tax_id}}.",
        "The Finanzamt letter lists {{de_tax_id}} as her number.",
    ),
    "ES_DNI": (
        "Mi DNI es {{es_dni}}.",
        "DNI/NIE: {{es_dni}}",
        "Passenger {{person}}, document {{es_dni}}, seat 14C.",
        '{"nombre": "{{person}}", "documento": "{{es_dni}}"}',
        "Please register the tenant with ID {{es_dni}}.",
    ),
    "IT_CODICE_FISCALE": (
        "Il mio codice fiscale è {{it_codice_fiscale}}.",
        "Codice fiscale: {{it_codice_fiscale}}",
        "Add {{person}} ({{it_codice_fiscale}}) to the contract.",
        "CF {{it_codice_fiscale}} - {{person}} - {{city}}",
    ),
    "IN_AADHAAR": (
        "My Aadhaar number is {{in_aadhaar}}.",
        "Aadhaar: {{in_aadhaar}}",
        "KYC for {{person}}: PAN on file, Aadhaar no. {{in_aadhaar}}",
        "Please link {{in_aadhaar}} to my bank account.",
        "UID {{in_aadhaar}} was verified by OTP.",
    ),
    "FR_NIR": (
        "Mon numéro de sécurité sociale est {{fr_nir}}.",
        "N° de sécurité sociale : {{fr_nir}}",
        "Patient {{person}}, NIR {{fr_nir}}, admitted {{date_time}}.",
        "Carte Vitale {{fr_nir}}",
    ),
    "DATE_OF_BIRTH": (
        "Date of birth: {{dob}}",
        "DOB {{dob}}",
        "{{person}} was born on {{dob}} in {{city}}.",
        "Patient {{person}}, born {{dob}}, presents with a cough.",
        "Geburtsdatum: {{dob}}",
        "Please confirm your birthday ({{dob}}) to continue.",
    ),
}


def _near_misses(v: Values) -> dict[str, Callable[[], str]]:
    """Sentences with no PII in them; written for this benchmark (common shapes in prompts)."""
    rng, fake = v.rng, v.fake

    def digits(n: int) -> str:
        return str(rng.randrange(1, 10)) + "".join(rng.choice(string.digits) for _ in range(n - 1))

    def hexs(n: int) -> str:
        return "".join(rng.choice("0123456789abcdef") for _ in range(n))

    def ean13() -> str:
        body = rng.choice(["40", "50", "76", "87", "93"]) + digits(10)
        weights = sum(int(c) * (3 if i % 2 else 1) for i, c in enumerate(body))
        return body + str((10 - weights % 10) % 10)

    def imei() -> str:
        body = rng.choice(["35", "86", "01"]) + digits(12)
        return body + luhn.calc_check_digit(body)

    return {
        "order number": lambda: (
            f"Order #{digits(rng.randrange(9, 13))} shipped on {v.when().date()}."
        ),
        "tracking number": lambda: (
            f"Tracking: 1Z{''.join(rng.choice(_UPPER + string.digits) for _ in range(16))}"
        ),
        "usps tracking": lambda: (  # 22 digits; USPS service codes start with 9
            f"USPS {rng.choice(['9400', '9205', '9407', '9303', '9208', '9270'])} "
            + " ".join(digits(4) for _ in range(4))
            + f" {digits(2)}"
        ),
        "invoice": lambda: (
            f"Invoice INV-{v.year()}-{digits(6)} totals "
            f"${rng.randrange(10, 99999)}.{rng.randrange(100):02d}"
        ),
        "unix time": lambda: f"created_at={rng.randrange(1_500_000_000, 1_800_000_000)} ttl=3600",
        "timestamp": lambda: f"[{v.when().isoformat()}Z] worker {rng.randrange(64)} done",
        "version": lambda: (
            f"Upgrade to {rng.randrange(20)}.{rng.randrange(30)}.{rng.randrange(200)} "
            "before Friday."
        ),
        "windows build": lambda: (
            f"OS build 10.0.{rng.randrange(17000, 26000)}.{rng.randrange(1000, 9999)}"
        ),
        "barcode": lambda: f"EAN {ean13()} - {fake.word()} x{rng.randrange(1, 12)}",
        "imei": lambda: f"Device IMEI {imei()} enrolled.",
        "git sha": lambda: f"Reverted {hexs(40)} and {hexs(7)}.",
        "uuid": lambda: f"request_id={fake.uuid4()} latency_ms={rng.randrange(999)}",
        "md5": lambda: f"md5sum {hexs(32)}  {fake.file_name()}",
        "mac address": lambda: f"eth0 link/ether {fake.mac_address()} brd ff:ff:ff:ff:ff:ff",
        "clock time": lambda: (
            f"Standup moved to {rng.randrange(24):02d}:{rng.randrange(60):02d}:"
            f"{rng.randrange(60):02d} UTC."
        ),
        "cpp scope": lambda: f"std::{fake.word()}::iterator it = v.begin();",
        "date": lambda: (
            f"Deadline {rng.randrange(1, 13):02d}/{rng.randrange(1, 29):02d}/"
            f"{rng.randrange(2020, 2030)}; review {v.when().date()}."
        ),
        "price": lambda: (
            f"Q3 revenue was ${rng.randrange(1, 999)},{rng.randrange(1000):03d},"
            f"{rng.randrange(1000):03d}."
        ),
        "coordinates": lambda: f"GPS {fake.latitude()}, {fake.longitude()}",
        "zip+4": lambda: f"{fake.city()}, {fake.state_abbr()} {digits(5)}-{digits(4)}",
        "isbn": lambda: f"ISBN 978-{rng.randrange(10)}-{digits(3)}-{digits(5)}-{rng.randrange(10)}",
        "ticket": lambda: f"See JIRA-{digits(5)} and PR #{digits(4)}.",
        "part number": lambda: (
            f"Replace part {digits(3)}-{digits(4)}-{digits(3)} (rev {rng.choice(_UPPER)})."
        ),
        "account id": lambda: f"AWS account {digits(12)} in eu-west-1",
        "measurements": lambda: (
            f"{rng.randrange(100, 999)} x {rng.randrange(100, 999)} x "
            f"{rng.randrange(1000, 9999)} mm"
        ),
        "table of numbers": lambda: " | ".join(str(rng.randrange(10**5, 10**7)) for _ in range(4)),
        "hex dump": lambda: " ".join(hexs(4) for _ in range(8)),
        "stack frame": lambda: (
            f'  File "/app/{fake.word()}.py", line {rng.randrange(2000)}, in {fake.word()}'
        ),
    }


def build(seed: int, per_entity: int, negatives: int, per_near_miss: int) -> list[Sample]:
    """The labelled PII corpus.

    ``per_entity`` sentences from the evaluator's templates for each entity they label, and as
    many from ours for each entity of ours; ``negatives`` sentences from the evaluator's
    templates that label none of the scored entities; ``per_near_miss`` of each near miss.
    """
    raw = evaluator_raw_data()
    v = Values(seed, raw)
    templates = [
        line.strip().replace("\\n", "\n")
        for line in (raw / "templates.txt").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    scored = set(SHARED) | set(ZTGATE_ONLY)

    def evaluator_fill(template: str, index: int) -> Sample:
        record = dict(v.rng.choice(v.records))

        def value_of(field: str) -> str:
            value = record.pop(field, None)
            return value if value else v.provider(field)

        return fill(template, f"evaluator template {index}", value_of, FIELD_ENTITY)

    def own_fill(template: str, entity: str) -> Sample:
        return fill(template, f"ours: {entity}", v.provider, FIELD_ENTITY)

    def entities(template: str) -> set[str]:
        sample = fill(template, "", lambda _: "x", FIELD_ENTITY)
        return {s.entity for s in sample.spans} & scored

    samples: list[Sample] = []
    by_entity: dict[str, list[int]] = {}
    unlabelled: list[int] = []
    for i, template in enumerate(templates):
        found = entities(template)
        for entity in found:
            by_entity.setdefault(entity, []).append(i)
        if not found:
            unlabelled.append(i)
    for entity in sorted(by_entity):
        for _ in range(per_entity):
            i = v.rng.choice(by_entity[entity])
            samples.append(evaluator_fill(templates[i], i))
    for _ in range(negatives):
        i = v.rng.choice(unlabelled)
        samples.append(evaluator_fill(templates[i], i))
    for entity, own in OWN_TEMPLATES.items():
        for _ in range(per_entity):
            samples.append(own_fill(v.rng.choice(own), entity))
    for kind, make in _near_misses(v).items():
        for _ in range(per_near_miss):
            samples.append(Sample(make(), (), f"near miss: {kind}"))
    return samples
