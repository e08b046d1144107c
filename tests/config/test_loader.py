from __future__ import annotations

import pytest

from ztgate.config import ConfigError, parse_config
from ztgate.config.units import parse_duration, parse_size

MINIMAL = """
policy: policy.yaml
upstream:
  api_key: "${KEY}"
identity:
  issuers:
    - name: github
      issuer: "https://token.actions.githubusercontent.com"
      audiences: ["ztgate"]
"""


def test_minimal_config_fills_documented_defaults() -> None:
    config = parse_config(MINIMAL, environ={"KEY": "sk-ant-real"})
    assert config.listen == "127.0.0.1:8787"
    assert config.upstream.url == "https://api.anthropic.com"
    assert config.upstream.api_key.get_secret_value() == "sk-ant-real"
    assert config.upstream.timeout == 600
    issuer = config.identity.issuers[0]
    assert issuer.algorithms == ["RS256", "ES256", "EdDSA"]
    assert issuer.clock_skew == 60
    assert config.store.url == "sqlite:///.ztgate/ztgate.db"


def test_secret_is_not_in_repr() -> None:
    config = parse_config(MINIMAL, environ={"KEY": "sk-ant-real"})
    assert "sk-ant-real" not in repr(config)


def test_missing_environment_variable_names_key_and_variable() -> None:
    with pytest.raises(ConfigError, match=r"upstream\.api_key: environment variable KEY"):
        parse_config(MINIMAL, environ={})


def test_default_and_escape_in_interpolation() -> None:
    text = MINIMAL.replace('"${KEY}"', '"${KEY:-fallback}$${LITERAL}"')
    config = parse_config(text, environ={})
    assert config.upstream.api_key.get_secret_value() == "fallback${LITERAL}"


def test_no_issuer_refuses_with_guidance() -> None:
    with pytest.raises(ConfigError, match="no anonymous mode") as info:
        parse_config("upstream: {api_key: k}", environ={})
    assert "identity:" in str(info.value)


@pytest.mark.parametrize(
    ("snippet", "where", "what"),
    [
        ("upstream: {api_key: k, timeot: 5s}", "upstream.timeot", "unknown key"),
        ("upstream: {api_key: k, timeout: soon}", "upstream.timeout", "not a duration"),
        ("upstream: {api_key: k, url: 'http://api.example.com'}", "upstream.url", "https"),
        ("upstream: {api_key: '  '}", "upstream.api_key", "empty"),
        ('upstream: {api_key: "sk-ant\\nx-injected: 1"}', "upstream.api_key", "printable ASCII"),
        ("listen: nowhere", "listen", "HOST:PORT"),
        ("server: {max_json_body: lots}", "server.max_json_body", "not a size"),
    ],
)
def test_invalid_values_name_the_key(snippet: str, where: str, what: str) -> None:
    base = "upstream: {api_key: k}\n" if not snippet.startswith("upstream") else ""
    issuers = (
        "identity: {issuers: [{name: a, issuer: 'https://idp.example.com', audiences: [z]}]}\n"
        "policy: policy.yaml\n"
    )
    with pytest.raises(ConfigError) as info:
        parse_config(base + snippet + "\n" + issuers, environ={})
    message = str(info.value)
    assert where in message
    assert what in message


@pytest.mark.parametrize("alg", ["none", "HS256", "HS512", "hs384"])
def test_symmetric_and_none_algorithms_are_refused_at_load(alg: str) -> None:
    text = (
        "upstream: {api_key: k}\n"
        "identity: {issuers: [{name: a, issuer: 'https://idp.example.com', audiences: [z], "
        f"algorithms: [{alg}]}}]}}\n"
    )
    with pytest.raises(ConfigError, match=r"identity\.issuers\.0\.algorithms"):
        parse_config(text, environ={})


def test_http_issuer_allowed_only_on_loopback() -> None:
    template = (
        "policy: p.yaml\n"
        "upstream: {{api_key: k}}\n"
        "identity: {{issuers: [{{name: a, issuer: '{url}', audiences: [z]}}]}}\n"
    )
    parse_config(template.format(url="http://127.0.0.1:9000"), environ={})
    parse_config(template.format(url="http://localhost:9000/realm"), environ={})
    with pytest.raises(ConfigError, match="https"):
        parse_config(template.format(url="http://idp.internal"), environ={})


def test_duplicate_issuer_names_are_refused() -> None:
    text = (
        "policy: p.yaml\n"
        "upstream: {api_key: k}\n"
        "identity: {issuers: [{name: a, issuer: 'https://x.example', audiences: [z]},"
        " {name: a, issuer: 'https://y.example', audiences: [z]}]}\n"
    )
    with pytest.raises(ConfigError, match="share the name"):
        parse_config(text, environ={})


def test_not_yaml_is_reported() -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_config("upstream: [unclosed", environ={})


@pytest.mark.parametrize(
    ("text", "seconds"), [("600s", 600), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25), (7, 7)]
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "size"), [("32MiB", 32 * 1024**2), ("1KB", 1000), (512, 512)])
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "text", ["٣s", "𝟗m", "²h", "1" * 400 + "s", float("inf"), float("nan"), "-5s", "5", ""]
)
def test_a_duration_is_ascii_digits_and_finite(text: object) -> None:
    """``\\d`` and ``float`` read ``٣`` as 3: a duration no person reads as one is refused,
    and so is one too long to be a number of seconds."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["٣MiB", "𝟗", "1" * 19 + "B", "1" * 5000, "0B"])
def test_a_size_is_ascii_digits_and_bounded(text: str) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


def test_no_policy_refuses_with_guidance() -> None:
    text = MINIMAL.replace("policy: policy.yaml\n", "")
    with pytest.raises(ConfigError, match="denies what policy does not name"):
        parse_config(text, environ={"KEY": "k"})


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        ('"a\\n  fake: problem": 1', "'a\\n  fake: problem': unknown key"),
        ('" ": 1', "' ': unknown key"),
        ('server: {"x\\ty": 1}', "server.'x\\ty': unknown key"),
        ('inspection: {custom: {patterns: {x: "a{99999999999}"}}}', "cannot be compiled"),
    ],
)
def test_a_problem_is_one_line_whatever_the_key(extra: str, said: str) -> None:
    """Keys are the author's text: a blank one or one with a line break is quoted, so that
    the message names it and no key can add a line (a problem of its own) to the message."""
    with pytest.raises(ConfigError) as info:
        parse_config(MINIMAL + extra + "\n", environ={"KEY": "k"})
    message = str(info.value)
    assert said in message, message
    assert len(message.splitlines()) == 2, message
