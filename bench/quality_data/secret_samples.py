"""Secrets (labelled with the ztgate detector that should find them) and near misses.

Written for this benchmark after the formats and allow-lists that gitleaks (MIT) and Yelp's
detect-secrets (Apache-2.0) publish: prefixes, lengths, alphabets, the places secrets turn up
(env files, JSON and YAML config, code, curl commands, logs, chat) and the look-alikes those
projects keep out (placeholders, documentation examples, variable references, code that names
a credential without holding one, hashes, UUIDs, public keys). No value is copied from either
project and none is real: every secret is drawn at run time from a seeded generator in a valid
format, so this file holds no string that secret scanning would flag.
"""

from __future__ import annotations

import base64
import json
import random
import string
from collections.abc import Callable

from quality_data import Sample, fill

B62 = string.ascii_letters + string.digits
B64 = B62 + "+/"
B64URL = B62 + "-_"
HEX = "0123456789abcdef"
UPPER_B32 = string.ascii_uppercase + "234567"
SYMBOLS = "!#%&*@^-_."

KNOWN_FORMAT = (
    "anthropic_api_key",
    "anthropic_admin_key",
    "openai_api_key",
    "aws_access_key_id",
    "aws_secret_access_key",
    "google_api_key",
    "gcp_service_account",
    "azure_storage_key",
    "azure_client_secret",
    "github_token",
    "gitlab_token",
    "slack_token",
    "slack_webhook_url",
    "stripe_key",
    "npm_token",
    "pypi_token",
    "private_key",
    "jwt",
    "database_url",
    "url_credentials",
    "connection_string_password",
    "basic_auth",
)
"""Secrets with a fixed shape or an explicit credential field: the recall goal is for these."""
CONTEXTUAL = ("bearer_token", "generic_secret")
"""Secrets known only by the word next to them."""


class Secrets:
    """Format-valid random secrets, one generator per kind."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def s(self, alphabet: str, n: int) -> str:
        return "".join(self.rng.choice(alphabet) for _ in range(n))

    def digits(self, low: int, high: int) -> str:
        return str(self.rng.randrange(1, 10)) + self.s(
            string.digits, self.rng.randint(low, high) - 1
        )

    def password(self) -> str:
        while True:
            value = self.s(B62 + SYMBOLS, self.rng.randint(10, 24))
            if any(c.isdigit() for c in value) and any(c.isalpha() for c in value):
                return value

    def anthropic_api_key(self) -> str:
        return "sk-ant-api03-" + self.s(B64URL, 93) + "AA"

    def anthropic_admin_key(self) -> str:
        return "sk-ant-admin01-" + self.s(B64URL, 93) + "AA"

    def openai_api_key(self) -> str:
        marker = "T3Blbk" + "FJ"
        if self.rng.random() < 0.25:
            return "sk-" + self.s(B62, 20) + marker + self.s(B62, 20)
        kind = self.rng.choice(["proj", "proj", "svcacct", "admin"])
        return f"sk-{kind}-" + self.s(B64URL, 58) + marker + self.s(B64URL, 58)

    def aws_access_key_id(self) -> str:
        return self.rng.choice(["AKIA", "ASIA"]) + self.s(UPPER_B32, 16)

    def aws_secret(self) -> str:
        return self.s(B64, 40)

    def google_api_key(self) -> str:
        return "AIza" + self.s(B64URL, 35)

    def hex40(self) -> str:
        return self.s(HEX, 40)

    def azure_storage_key(self) -> str:
        return base64.b64encode(self.rng.randbytes(64)).decode()

    def azure_client_secret(self) -> str:
        return self.s(B62, 3) + self.s(string.digits, 1) + "Q~" + self.s(B62 + "_~.-", 34)

    def github_token(self) -> str:
        if self.rng.random() < 0.25:
            return "github_" + "pat_" + self.s(B62, 22) + "_" + self.s(B62, 59)
        return self.rng.choice(["ghp", "gho", "ghu", "ghs", "ghr"]) + "_" + self.s(B62, 36)

    def gitlab_token(self) -> str:
        return self.rng.choice(["glpat", "glpat", "gldt", "glrt"]) + "-" + self.s(B64URL, 20)

    def slack_token(self) -> str:
        kind = self.rng.random()
        if kind < 0.5:
            return f"xoxb-{self.digits(10, 13)}-{self.digits(10, 13)}-{self.s(B62, 24)}"
        if kind < 0.8:
            return (
                f"xoxp-{self.digits(10, 13)}-{self.digits(10, 13)}-{self.digits(10, 13)}-"
                + self.s(HEX, 32)
            )
        return (
            f"xapp-1-A{self.s(string.ascii_uppercase + string.digits, 10)}-{self.digits(13, 13)}-"
            + self.s(HEX, 64)
        )

    def slack_webhook_url(self) -> str:
        upper = string.ascii_uppercase + string.digits
        return (
            "https://hooks.slack.com/services/"
            f"T{self.s(upper, 8)}/B{self.s(upper, 10)}/{self.s(B62, 24)}"
        )

    def stripe_key(self) -> str:
        prefix = self.rng.choice(["sk", "sk", "rk"])
        return f"{prefix}_" + "live_" + self.s(B62, self.rng.choice([24, 99]))

    def npm_token(self) -> str:
        return "npm_" + self.s(B62, 36)

    def pypi_token(self) -> str:
        return "pypi-" + "AgEIcHlwaS5vcmc" + self.s(B64URL, self.rng.randint(120, 180))

    def pem(self, label: str = "RSA PRIVATE KEY", lines: int = 12, end: bool = True) -> str:
        body = "\n".join(self.s(B64, 64) for _ in range(lines))
        text = f"-----BEGIN {label}-----\n{body}\n"
        return text + f"-----END {label}-----" if end else text.rstrip("\n")

    def private_key(self) -> str:
        label = self.rng.choice(
            ["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"]
        )
        return self.pem(label, self.rng.randint(4, 25))

    def jwt(self) -> str:
        def part(obj: object) -> str:
            return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

        alg = self.rng.choice(["HS256", "RS256", "ES256"])
        header: dict[str, str] = {"alg": alg, "typ": "JWT"}
        if alg != "HS256":
            header["kid"] = self.s(B62, 16)
        claims = {
            "sub": self.s(B62, 12),
            "iss": "https://auth." + self.s(string.ascii_lowercase, 8) + ".com",
            "iat": self.rng.randrange(1_600_000_000, 1_800_000_000),
            "exp": self.rng.randrange(1_800_000_000, 1_900_000_000),
        }
        sig = self.s(B64URL, 43 if alg == "HS256" else 86 if alg == "ES256" else 342)
        return f"{part(header)}.{part(claims)}.{sig}"

    def basic(self) -> str:
        user = self.rng.choice(
            ["admin", "deploy", "ci", "svc-" + self.s(string.ascii_lowercase, 5)]
        )
        return base64.b64encode(f"{user}:{self.password()}".encode()).decode()

    def password_urlsafe(self) -> str:
        while True:
            value = self.s(B62 + "-_.~!*", self.rng.randint(10, 24))
            if any(c.isdigit() for c in value) and any(c.isalpha() for c in value):
                return value

    def password_cs(self) -> str:
        return self.password().replace(";", "!")

    def opaque_token(self) -> str:
        return self.s(B62, self.rng.randint(32, 64))

    def host(self) -> str:
        return (
            self.rng.choice(["db", "cache", "mq", "primary"])
            + "."
            + self.s(string.ascii_lowercase, 6)
            + ".internal"
        )


def _env_name(detector: str) -> str:
    return {
        "anthropic_api_key": "ANTHROPIC_API_KEY",
        "anthropic_admin_key": "ANTHROPIC_ADMIN_KEY",
        "openai_api_key": "OPENAI_API_KEY",
        "aws_access_key_id": "AWS_ACCESS_KEY_ID",
        "google_api_key": "GOOGLE_API_KEY",
        "azure_client_secret": "AZURE_CLIENT_SECRET",
        "github_token": "GH_TOKEN",
        "gitlab_token": "GITLAB_TOKEN",
        "slack_token": "SLACK_BOT_TOKEN",
        "slack_webhook_url": "SLACK_WEBHOOK",
        "stripe_key": "STRIPE_SECRET_KEY",
        "npm_token": "NPM_TOKEN",
        "pypi_token": "TWINE_PASSWORD",
    }[detector]


# Where a token that stands alone turns up. {{v}} is the secret, {{name}} its variable.
_TOKEN_CONTEXTS = (
    "export {{name}}={{v}}",
    '{{name}}="{{v}}"',
    '  "{{lname}}": "{{v}}",',
    "{{lname}}: {{v}}",
    'client = Client(api_key="{{v}}")',
    "I pasted {{v}} into the chat by mistake, how do I rotate it?",
    "DEBUG headers={'x-api-key': '{{v}}', 'accept': 'application/json'}",
    "The key is {{v}}",
    "{{v}}",
)
_URL_CONTEXTS = (
    "export {{name}}={{v}}",
    '  "{{lname}}": "{{v}}",',
    "requests.post('{{v}}', json={'text': 'deploy done'})",
    "Post alerts to {{v}} please",
    "{{v}}",
)


def _positives(sec: Secrets) -> dict[str, tuple[str, Callable[[], Sample]]]:
    """kind -> (expected detector, maker)."""
    rng = sec.rng
    makers: dict[str, tuple[str, Callable[[], Sample]]] = {}

    def token_maker(
        detector: str, make: Callable[[], str], contexts: tuple[str, ...] = _TOKEN_CONTEXTS
    ) -> Callable[[], Sample]:
        def build() -> Sample:
            name = _env_name(detector)
            values = {"v": make(), "name": name, "lname": name.lower()}
            template = rng.choice(contexts)
            return fill(
                template,
                f"secret: {detector}",
                values.__getitem__,
                {"v": detector},
                label_others=False,
            )

        return build

    for detector in (
        "anthropic_api_key",
        "anthropic_admin_key",
        "openai_api_key",
        "aws_access_key_id",
        "google_api_key",
        "azure_client_secret",
        "github_token",
        "gitlab_token",
        "slack_token",
        "stripe_key",
        "npm_token",
        "pypi_token",
    ):
        makers[detector] = (detector, token_maker(detector, getattr(sec, detector)))
    makers["slack_webhook_url"] = (
        "slack_webhook_url",
        token_maker("slack_webhook_url", sec.slack_webhook_url, _URL_CONTEXTS),
    )

    def shaped(
        detector: str,
        templates: tuple[str, ...],
        values: dict[str, Callable[[], str]],
        labels: dict[str, str] | None = None,
    ) -> None:
        entity_of = {"v": detector, **(labels or {})}

        def build() -> Sample:
            cache: dict[str, str] = {}

            def value_of(field: str) -> str:
                if field not in cache:
                    cache[field] = values[field]()
                return cache[field]

            return fill(
                rng.choice(templates),
                f"secret: {detector}",
                value_of,
                entity_of,
                label_others=False,
            )

        makers[detector] = (detector, build)

    lower = string.ascii_lowercase
    shaped(
        "aws_secret_access_key",
        (
            "[default]\naws_access_key_id = {{id}}\naws_secret_access_key = {{v}}",
            "AWS_SECRET_ACCESS_KEY={{v}}",
            '{"AccessKeyId": "{{id}}", "SecretAccessKey": "{{v}}", "SessionToken": null}',
            "aws configure set aws_secret_access_key {{v}}",
        ),
        {"v": sec.aws_secret, "id": sec.aws_access_key_id},
        {"id": "aws_access_key_id"},
    )
    shaped(
        "gcp_service_account",
        (
            '{\n  "type": "service_account",\n  "project_id": "{{p}}",\n'
            '  "private_key_id": "{{v}}",\n'
            '  "client_email": "ci@{{p}}.iam.gserviceaccount.com"\n}',
            '"private_key_id": "{{v}}"',
        ),
        {"v": sec.hex40, "p": lambda: sec.s(lower, 8) + "-" + sec.digits(6, 6)},
    )
    shaped(
        "azure_storage_key",
        (
            "DefaultEndpointsProtocol=https;AccountName={{a}};AccountKey={{v}};EndpointSuffix=core.windows.net",
            'conn = "AccountName={{a}};AccountKey={{v}}"',
            "Endpoint=sb://{{a}}.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey={{v}}",
        ),
        {"v": sec.azure_storage_key, "a": lambda: sec.s(lower, 10)},
    )
    shaped(
        "private_key",
        (
            "{{v}}",
            "Here is the deploy key:\n\n{{v}}\n\nPlease add it to the server.",
            "ssh_key: |\n{{v}}",
        ),
        {"v": sec.private_key},
    )
    shaped(
        "jwt",
        (
            "Authorization: Bearer {{v}}",
            "token={{v}}",
            '{"id_token": "{{v}}", "expires_in": 3600}',
            "Why does {{v}} fail verification?",
        ),
        {"v": sec.jwt},
    )
    shaped(
        "database_url",
        (
            "DATABASE_URL=postgres://{{u}}:{{v}}@{{h}}:5432/app",
            "mysql://{{u}}:{{v}}@{{h}}:3306/shop?charset=utf8mb4",
            'MONGO_URI="mongodb+srv://{{u}}:{{v}}@cluster0.{{h}}/prod"',
            "redis://default:{{v}}@{{h}}:6379/0",
            "amqps://{{u}}:{{v}}@{{h}}/vhost",
        ),
        {
            "v": sec.password_urlsafe,
            "u": lambda: rng.choice(["app", "admin", "svc_orders"]),
            "h": sec.host,
        },
    )
    shaped(
        "url_credentials",
        (
            "git clone https://{{u}}:{{v}}@git.{{d}}.com/team/repo.git",
            "pip install --index-url https://{{u}}:{{v}}@pypi.{{d}}.net/simple pkg",
            "ftp://{{u}}:{{v}}@files.{{d}}.org/upload/",
        ),
        {
            "v": sec.password_urlsafe,
            "u": lambda: rng.choice(["deploy", "ci-bot", "oauth2"]),
            "d": lambda: sec.s(lower, 7),
        },
    )
    shaped(
        "connection_string_password",
        (
            "Server=tcp:{{h}},1433;Database=app;User ID=app;Password={{v}};Encrypt=True;",
            'ConnectionStrings__Default="Host={{h}};Username=app;Pwd={{v}};SSL Mode=Require"',
        ),
        {"v": sec.password_cs, "h": sec.host},
    )
    shaped(
        "basic_auth",
        (
            "Authorization: Basic {{v}}",
            "curl -H 'authorization: basic {{v}}' https://registry.internal/v2/",
        ),
        {"v": sec.basic},
    )
    shaped(
        "bearer_token",
        (
            "Authorization: Bearer {{v}}",
            "curl -H 'Authorization: Bearer {{v}}' https://api.partner.net/orders",
            "use bearer {{v}} for the staging API",
        ),
        {"v": sec.opaque_token},
    )
    shaped(
        "generic_secret",
        (
            'password = "{{v}}"',
            "DB_PASSWORD={{v}}",
            "client_secret: {{v}}",
            '{"api_key": "{{v}}", "region": "eu"}',
            "SECRET_KEY = '{{v}}'",
            "the wifi password is {{v}}",
            "auth_token={{v}}",
        ),
        {"v": sec.password},
    )
    return makers


def _near_misses(sec: Secrets) -> dict[str, Callable[[], str]]:
    """Text that names or resembles a credential without holding one."""
    rng = sec.rng
    lower = string.ascii_lowercase

    def placeholder_token() -> str:
        return rng.choice(
            [
                "ghp_" + "x" * 36,
                "sk-ant-api03-" + "X" * 93 + "AA",
                "npm_" + "0" * 36,
                "AIza" + "X" * 35,
                "glpat-" + "x" * 20,
                "xoxb-" + "0" * 11 + "-" + "0" * 12 + "-" + "x" * 24,
                "sk_" + "live_" + "X" * 24,
            ]
        )

    return {
        "aws documentation key id": lambda: (
            "aws_access_key_id = AKIA" + sec.s(UPPER_B32, 9) + "EXAMPLE"
        ),
        "aws documentation secret": lambda: (
            "aws_secret_access_key = " + sec.s(B62, 30) + "EXAMPLEKEY"
        ),
        "placeholder token": lambda: f"TOKEN={placeholder_token()}",
        "template token": lambda: rng.choice(
            [
                "GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }}",
                "api_key: {{ vault_api_key }}",
                "export OPENAI_API_KEY=<your-api-key>",
                "ANTHROPIC_API_KEY=your_api_key_here",
                "password: ${DB_PASSWORD}",
                "token = %(token)s",
            ]
        ),
        "env lookup": lambda: rng.choice(
            [
                'api_key = os.environ["OPENAI_API_KEY"]',
                "const token = process.env.GITHUB_TOKEN;",
                'password := os.Getenv("DB_PASSWORD")',
                "export API_KEY=$(cat /run/secrets/api_key)",
            ]
        ),
        "code names a credential": lambda: rng.choice(
            [
                "password = get_password(user)",
                'token = request.headers.get("Authorization")',
                "api_key = settings.API_KEY",
                "auth_token: Optional[str] = None",
                'access_token = response.json()["access_token"]',
                "refresh_token=refreshTokenFromCookie",
                "secret = self._load_secret(path)",
                "private_key = serialization.load_pem_private_key(data, None)",
            ]
        ),
        "token counts": lambda: rng.choice(
            [
                f"max_tokens = {rng.choice([256, 1024, 4096])}",
                f'"usage": {{"input_tokens": {rng.randrange(9999)}, '
                f'"output_tokens": {rng.randrange(999)}}}',
                f"token_count={rng.randrange(50)}",
            ]
        ),
        "placeholder password": lambda: rng.choice(
            [
                'password = "changeme"',
                'password: "********"',
                "PASSWORD=<your-password>",
                '"password": ""',
                "password=xxxxxxxx",
                'DB_PASSWORD="${POSTGRES_PASSWORD}"',
            ]
        ),
        "url without password": lambda: rng.choice(
            [
                "postgres://localhost:5432/app",
                f"postgresql://app@{sec.host()}:5432/app",
                "mongodb://mongo:27017/test",
                "redis://:${REDIS_PASSWORD}@redis:6379/0",
                "postgres://user:password@localhost/db",
                "mysql://root:<password>@127.0.0.1:3306/dev",
            ]
        ),
        "at sign in url": lambda: rng.choice(
            [
                f"https://medium.com/@{sec.s(lower, 8)}/why-we-moved-{sec.digits(4, 4)}",
                f"git@github.com:{sec.s(lower, 6)}/{sec.s(lower, 8)}.git",
                f"ssh://git@git.{sec.s(lower, 6)}.com:2222/infra.git",
                f"https://www.npmjs.com/package/@{sec.s(lower, 5)}/{sec.s(lower, 7)}",
            ]
        ),
        "commit sha": lambda: f"commit {sec.hex40()}\nMerge: {sec.s(HEX, 7)} {sec.s(HEX, 7)}",
        "digest": lambda: f"image: registry.internal/app@sha256:{sec.s(HEX, 64)}",
        "lockfile integrity": lambda: f'"integrity": "sha512-{sec.s(B64, 86)}=="',
        "uuid": lambda: f'"client_id": "{_uuid(sec)}", "tenant": "{_uuid(sec)}"',
        "bearer in prose": lambda: rng.choice(
            [
                "I hate to be the bearer of bad news, but the build is red.",
                "Bearer tokens expire after an hour, so refresh them.",
                "Authorization: Bearer <token>",
                "Authorization: Bearer ${ACCESS_TOKEN}",
                "Authorization: Bearer YOUR_API_KEY",
            ]
        ),
        "basic auth placeholder": lambda: rng.choice(
            [
                "Authorization: Basic " + base64.b64encode(b"user:password").decode(),
                "Authorization: Basic <credentials>",
                "Authorization: Basic " + base64.b64encode(b"username:changeme").decode(),
            ]
        ),
        "public key or certificate": lambda: sec.pem(
            rng.choice(["PUBLIC KEY", "CERTIFICATE", "RSA PUBLIC KEY"]), 6
        ),
        "private key placeholder": lambda: rng.choice(
            [
                "-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----",
                "-----BEGIN RSA PRIVATE KEY-----\n<your key here>\n-----END RSA PRIVATE KEY-----",
            ]
        ),
        "slack placeholder webhook": lambda: (
            "https://hooks.slack.com/services/T00000000/B00000000/" + "X" * 24
        ),
        "azure placeholder": lambda: rng.choice(
            [
                "DefaultEndpointsProtocol=https;AccountName=myaccount;AccountKey=<account-key>;",
                "AccountKey=...;EndpointSuffix=core.windows.net",
            ]
        ),
        "truncated token": lambda: (
            rng.choice(["ghp_", "sk-ant-api03-", "xoxb-", "glpat-", "npm_"]) + sec.s(B62, 6) + "..."
        ),
        "low entropy value": lambda: rng.choice(
            [
                'secret = "aaaaaaaaaaaa"',
                'api_key = "1234567890"',
                'token = "abcabcabcabc"',
                "password=11111111",
            ]
        ),
        "constant names": lambda: rng.choice(
            [
                'TOKEN_HEADER = "X-API-Key"',
                'grant_type = "client_credentials"',
                'password_reset_url = "/account/password/reset"',
                "PASSWORD_MIN_LENGTH = 12",
                'token_type = "Bearer"',
                'secret_name = "prod/payments/stripe"',
                "secretName: tls-cert-prod",
            ]
        ),
        "prose about passwords": lambda: rng.choice(
            [
                "The password is incorrect, please try again.",
                "Password: must be at least 12 characters.",
                "Reset your password from the account page.",
                "Your API key is shown only once; store it in a vault.",
            ]
        ),
        "data uri": lambda: f'<img src="data:image/png;base64,iVBORw0KGgo{sec.s(B64, 120)}">',
        "random ids": lambda: (
            f"trace_id={sec.s(HEX, 32)} span_id={sec.s(HEX, 16)} session={sec.s(B62, 22)}"
        ),
    }


def _uuid(sec: Secrets) -> str:
    h = sec.s(HEX, 32)
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


def build(seed: int, per_kind: int) -> list[Sample]:
    """``per_kind`` samples of each secret kind and of each near-miss kind."""
    sec = Secrets(random.Random(seed))
    samples: list[Sample] = []
    for _detector, make in _positives(sec).values():
        samples.extend(make() for _ in range(per_kind))
    for kind, near in _near_misses(sec).items():
        samples.extend(Sample(near(), (), f"near miss: {kind}") for _ in range(per_kind))
    return samples
