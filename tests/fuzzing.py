"""How many examples the fuzz tests (``tests/*/test_*_fuzz.py``) run.

``make test`` runs each with a modest count; the long form multiplies every count by
``FUZZ_SCALE`` (docs/reliability.md, "Fuzzing")::

    FUZZ_SCALE=50 .venv/bin/python -m pytest -p no:cacheprovider tests -k fuzz \
        --hypothesis-show-statistics

Read here, not from a Hypothesis profile: ``tests/conftest.py`` belongs to everyone, and a
profile loaded there would change every property test of the suite, not only the fuzzers.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, settings


def _scale() -> float:
    raw = os.environ.get("FUZZ_SCALE", "1")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"FUZZ_SCALE must be a number, not {raw!r}") from None
    if value <= 0:
        raise ValueError(f"FUZZ_SCALE must be positive, not {raw!r}")
    return value


SCALE = _scale()


def examples(count: int) -> int:
    """``count`` in ``make test``, ``count * FUZZ_SCALE`` in the long form."""
    return max(1, round(count * SCALE))


def fuzz(count: int, **options: Any) -> settings:
    """Settings for one fuzz test: ``count`` examples (scaled), no deadline (a slow example is
    no finding: a crash or a broken invariant is), and no complaint about slow data or
    function-scoped fixtures (the fixtures here hold no per-example state)."""
    return settings(
        max_examples=examples(count),
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.function_scoped_fixture,
            HealthCheck.data_too_large,
        ],
        **options,
    )
