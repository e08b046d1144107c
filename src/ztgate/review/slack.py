"""Slack's Approve and Deny buttons: each click arrives signed by Slack, and counts only as the
identity the configuration names for that Slack user.

Slack signs ``v0:<timestamp>:<body>`` with the app's signing secret (HMAC-SHA256, header
``X-Slack-Signature: v0=<hex>``, timestamp in ``X-Slack-Request-Timestamp``). A click whose
signature does not match, or whose timestamp is older than five minutes (a replay), is refused
before its content is read.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, NamedTuple
from urllib.parse import parse_qs

import orjson

from ztgate.review.notify import TOLERANCE, is_timestamp

APPROVE = "ztgate_approve"
DENY = "ztgate_deny"


class SlackAction(NamedTuple):
    user: str  # Slack's user id
    verdict: str  # "approve" or "deny"
    review_id: str


def verify(secret: bytes, timestamp: str, signature: str, body: bytes, *, now: float) -> bool:
    if not is_timestamp(timestamp) or abs(now - int(timestamp)) > TOLERANCE:
        return False
    base = b"v0:" + timestamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret, base, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


def parse_action(body: bytes) -> SlackAction | None:
    """The click in an interaction payload (form-encoded ``payload=<json>``), or None."""
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=True)
        payload: Any = orjson.loads(form["payload"][0])
        action = payload["actions"][0]
        user = payload["user"]["id"]
    except (UnicodeDecodeError, ValueError, KeyError, IndexError, TypeError):
        return None
    verdicts = {APPROVE: "approve", DENY: "deny"}
    action_id = action.get("action_id") if isinstance(action, dict) else None
    verdict = verdicts.get(action_id) if isinstance(action_id, str) else None
    review_id = action.get("value") if isinstance(action, dict) else None
    if verdict is None or not isinstance(review_id, str) or not isinstance(user, str):
        return None
    return SlackAction(user, verdict, review_id)
