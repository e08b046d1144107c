"""Reading YAML for a person: every failure becomes one readable error of the caller's kind
(config, policy, case table)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def read_yaml(path: str | Path, what: str, error: type[Exception]) -> Any:
    """The parsed document (``safe_load`` only), or ``error`` saying what could not be read."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"cannot read the {what} {path}: {exc.strerror}") from exc
    return parse_yaml(text, str(path), error)


def parse_yaml(text: str, source: str, error: type[Exception]) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"{source} is not valid YAML: {exc}") from exc
