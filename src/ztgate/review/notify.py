"""Telling people a review waits: a signed JSON webhook, and a Slack-compatible message with
Approve and Deny buttons.

The JSON webhook is signed like Stripe's: ``ztgate-signature: t=<unix time>,v1=<hex>`` where
the hex is HMAC-SHA256 of ``<t>.<body>`` with the webhook's secret. A receiver recomputes it,
compares in constant time and refuses a timestamp older than a few minutes, so a captured
delivery cannot be replayed later (:func:`verify` does exactly that). Deliveries run in the
background, three attempts each, and never hold up a request; what goes out is the review's
summary, which holds no value inspection found.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
import orjson

from ztgate.config.model import WebhookConfig
from ztgate.core.reviews import Review, review_document

log = logging.getLogger("ztgate.review")

SIGNATURE_HEADER = "ztgate-signature"
TOLERANCE = 300  # seconds a signed delivery stays acceptable
_ATTEMPTS = 3
_TIMEOUT = aiohttp.ClientTimeout(total=10)


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def is_timestamp(text: str) -> bool:
    """Seconds since the epoch as a signer writes them: ASCII digits, at most 12. ``isdigit``
    alone takes "²" (which ``int`` refuses) and ``int`` refuses 4,300 digits or more: either
    would turn a forged header into an exception instead of a refusal."""
    return text.isascii() and text.isdigit() and len(text) <= 12


def verify(
    secret: bytes, header: str, body: bytes, *, now: float, tolerance: float = TOLERANCE
) -> bool:
    """A delivery's signature is ours, for this body, and recent (not a replay)."""
    fields = dict(part.partition("=")[::2] for part in header.split(",") if "=" in part)
    timestamp = fields.get("t", "")
    if not is_timestamp(timestamp) or abs(now - int(timestamp)) > tolerance:
        return False
    expected = sign(secret, body, int(timestamp)).partition(",v1=")[2]
    return hmac.compare_digest(expected, fields.get("v1", ""))


def json_payload(review: Review, url: str) -> dict[str, Any]:
    return {
        "type": "review.pending",
        "review": review_document(review) | {"url": url},
        "decide": {
            "approve": f"POST {url}/approve",
            "deny": f"POST {url}/deny",
            "cli": f"ztgate reviews approve {review.id} --reason '...'",
        },
    }


def slack_payload(review: Review, url: str) -> dict[str, Any]:
    summary = review.summary
    lines = [
        f"*{review.requester}* asks for a request that needs approval ({review.id}).",
        *(f"• rule `{r['id']}`: {r['message']}" for r in summary.get("rules", [])),
        f"model: {summary.get('model') or '-'}; "
        f"tools: {', '.join(summary.get('tools', [])) or '-'}; "
        f"skills: {', '.join(summary.get('skills', [])) or '-'}",
    ]
    if summary.get("findings"):
        lines.append("found: " + ", ".join(summary["findings"]))
    if summary.get("prompt_excerpt"):
        lines.append("prompt: ```" + summary["prompt_excerpt"] + "```")
    if summary.get("tool_result_excerpt"):
        lines.append("last tool result: ```" + summary["tool_result_excerpt"] + "```")
    text = "\n".join(lines)
    return {
        "text": f"Review {review.id} waits for approval: {review.requester}",
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}},
            {
                "type": "actions",
                "block_id": review.id,
                "elements": [
                    _button("Approve", "ztgate_approve", review.id, "primary"),
                    _button("Deny", "ztgate_deny", review.id, "danger"),
                    {"type": "button", "text": _plain("Details"), "url": url},
                ],
            },
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": f"or `ztgate reviews approve {review.id}`"}
                ],
            },
        ],
    }


def _plain(text: str) -> dict[str, str]:
    return {"type": "plain_text", "text": text}


def _button(label: str, action: str, review_id: str, style: str) -> dict[str, Any]:
    return {
        "type": "button",
        "text": _plain(label),
        "action_id": action,
        "value": review_id,
        "style": style,
    }


class Notifier:
    def __init__(
        self,
        webhooks: Sequence[WebhookConfig],
        http: aiohttp.ClientSession,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._webhooks = webhooks
        self._http = http
        self._clock = clock
        self._sending: set[asyncio.Task[None]] = set()

    def review_waiting(self, review: Review, url: str) -> None:
        """Tell every webhook, in the background."""
        for webhook in self._webhooks:
            payload = (
                slack_payload(review, url) if webhook.kind == "slack" else json_payload(review, url)
            )
            task = asyncio.create_task(self._deliver(webhook, orjson.dumps(payload), review.id))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def close(self) -> None:
        """Give deliveries under way a moment, then drop them."""
        if self._sending:
            _, pending = await asyncio.wait(self._sending, timeout=2)
            for task in pending:
                task.cancel()

    async def _deliver(self, webhook: WebhookConfig, body: bytes, review_id: str) -> None:
        headers = {"content-type": "application/json"}
        for attempt in range(1, _ATTEMPTS + 1):
            if webhook.secret is not None:
                secret = webhook.secret.get_secret_value().encode()
                headers[SIGNATURE_HEADER] = sign(secret, body, int(self._clock()))
            try:
                async with self._http.post(
                    webhook.url, data=body, headers=headers, timeout=_TIMEOUT
                ) as response:
                    if response.status < 300:
                        return
                    problem = f"status {response.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                problem = type(exc).__name__
            if attempt < _ATTEMPTS:
                await asyncio.sleep(attempt)
        log.warning(
            "a review notification could not be delivered",
            extra={"event": "review_webhook_failed", "review_id": review_id, "problem": problem},
        )
