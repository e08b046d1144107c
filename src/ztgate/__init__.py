"""ztgate: a zero-trust gateway for the Claude API."""

__version__ = "0.1.0"
