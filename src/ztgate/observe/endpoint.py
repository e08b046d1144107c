"""The metrics listener: ``GET /metrics`` on a port of its own, never the data path's.

A scrape is one small request from Prometheus, so this is a minimal HTTP/1.1 responder on
asyncio streams rather than a second web server: it reads one bounded request head, answers,
closes. Every worker binds the same port with ``SO_REUSEPORT`` (the kernel hands each scrape to
one of them) and each answers with every worker's figures (multiprocess mode).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ztgate.observe.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger("ztgate.metrics")

_MAX_HEAD = 8192
_READ_TIMEOUT = 5.0


async def serve_metrics(metrics: Metrics, host: str, port: int) -> asyncio.Server:
    """Start answering scrapes on ``host:port``; OSError when it cannot be bound."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_READ_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            status, content_type, body = _respond(metrics, head)
            writer.write(
                b"HTTP/1.1 %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n"
                b"connection: close\r\n\r\n%s"
                % (status, content_type.encode("latin-1"), len(body), body)
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass  # a scrape that did not finish its request gets nothing
        except Exception:
            log.exception("metrics scrape failed")
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    return await asyncio.start_server(
        answer, host, port, reuse_port=True, limit=_MAX_HEAD, start_serving=True
    )


def _respond(metrics: Metrics, head: bytes) -> tuple[bytes, str, bytes]:
    request_line = head.split(b"\r\n", 1)[0].split(b" ")
    if len(request_line) != 3 or request_line[0] not in (b"GET", b"HEAD"):
        return b"405 Method Not Allowed", "text/plain", b"GET /metrics only\n"
    if request_line[1].split(b"?", 1)[0] != b"/metrics":
        return b"404 Not Found", "text/plain", b"metrics are at /metrics\n"
    body = metrics.exposition()
    return b"200 OK", CONTENT_TYPE, b"" if request_line[0] == b"HEAD" else body
