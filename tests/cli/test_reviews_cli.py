"""`ztgate reviews` before it speaks to a gateway: where, as whom, over what. (Deciding and
waiting through a real gateway: tests/review/test_gateway_reviews.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ztgate.cli.main import cli

TOKEN = "eyJ.test.token"


def _run(*args: str, env: dict[str, str | None]) -> tuple[int, str]:
    base: dict[str, str | None] = {"ZTGATE_URL": None, "ZTGATE_TOKEN": None}
    result = CliRunner().invoke(cli, ["reviews", *args], env=base | env)
    return result.exit_code, result.stdout + result.stderr


def test_it_needs_a_gateway_and_a_token() -> None:
    code, output = _run("list", env={"ZTGATE_TOKEN": TOKEN})
    assert (code, output.strip()) == (2, "ztgate reviews: no gateway: pass --url or set ZTGATE_URL")
    code, output = _run("list", env={"ZTGATE_URL": "http://127.0.0.1:9"})
    assert code == 2
    assert "no token: set ZTGATE_TOKEN" in output


@pytest.mark.parametrize("url", ["http://ztgate.example.com", "ftp://127.0.0.1", "ztgate"])
def test_a_token_never_crosses_a_network_in_clear(url: str) -> None:
    code, output = _run("show", "rev_1", "--url", url, env={"ZTGATE_TOKEN": TOKEN})
    assert code == 2
    assert "--url" in output
    assert TOKEN not in output


def test_an_unreachable_gateway_is_a_one_line_error_without_the_token(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    code, output = _run(
        "approve", "rev_1", "--reason", "x", "--url", "http://127.0.0.1:9",
        "--token-file", str(token_file), env={},
    )  # fmt: skip
    assert code == 2
    assert output.startswith("ztgate reviews: POST /ztgate/api/v1/reviews/rev_1/approve failed")
    assert TOKEN not in output


def test_a_decision_needs_a_reason_and_wait_a_duration() -> None:
    code, output = _run("deny", "rev_1", env={"ZTGATE_TOKEN": TOKEN})
    assert code == 2
    assert "Missing option '--reason'" in output
    code, output = _run("wait", "rev_1", "--timeout", "soon", env={"ZTGATE_TOKEN": TOKEN})
    assert code == 2
    assert "'soon' is not a duration" in output
