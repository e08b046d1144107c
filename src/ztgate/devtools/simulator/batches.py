"""The Message Batches API: batches end as soon as they are created, with their results ready."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import orjson
from aiohttp import web

from ztgate.devtools.simulator.api import (
    REQUEST_ID,
    JSONObject,
    error_body,
    find,
    invalid,
    json_response,
    new_id,
    now,
    rfc3339,
)
from ztgate.devtools.simulator.bodies import json_object, validate_message_params
from ztgate.devtools.simulator.catalogue import Batch
from ztgate.devtools.simulator.pagination import cursor_page
from ztgate.devtools.simulator.replies import build_message
from ztgate.devtools.simulator.scenarios import model_scenario, scenario_error


class BatchesApi:
    """The batches, by id in creation order.

    `base_url` gives the simulator's own base URL once it listens (empty before), for the
    absolute `results_url`.
    """

    def __init__(self, base_url: Callable[[], str]) -> None:
        self._base_url = base_url
        self._batches: dict[str, Batch] = {}

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/messages/batches", self._create_batch),
            web.get("/v1/messages/batches", self._list_batches),
            web.get("/v1/messages/batches/{batch_id}", self._get_batch),
            web.delete("/v1/messages/batches/{batch_id}", self._delete_batch),
            web.post("/v1/messages/batches/{batch_id}/cancel", self._cancel_batch),
            web.get("/v1/messages/batches/{batch_id}/results", self._batch_results),
        ]

    async def _create_batch(self, request: web.Request) -> web.StreamResponse:
        """Validate, then end the batch at once so results can be fetched immediately."""
        body = await json_object(request)
        requests = body.get("requests")
        if not isinstance(requests, list) or not requests:
            raise invalid("requests: Field required (a non-empty list)")
        seen: set[str] = set()
        for index, item in enumerate(requests):
            if not isinstance(item, dict) or not isinstance(item.get("custom_id"), str):
                raise invalid(f"requests.{index}.custom_id: Field required")
            if item["custom_id"] in seen:
                raise invalid(f"requests.{index}.custom_id: duplicate custom_id")
            seen.add(item["custom_id"])
            if not isinstance(item.get("params"), dict):
                raise invalid(f"requests.{index}.params: Field required")
            validate_message_params(item["params"], prefix=f"requests.{index}.params.")
        lines = [self._batch_line(item, request[REQUEST_ID]) for item in requests]
        succeeded = sum(line["result"]["type"] == "succeeded" for line in lines)
        batch_id = new_id("msgbatch_")
        created = now()
        info = {
            "id": batch_id,
            "type": "message_batch",
            "processing_status": "ended",
            "request_counts": {
                "processing": 0,
                "succeeded": succeeded,
                "errored": len(lines) - succeeded,
                "canceled": 0,
                "expired": 0,
            },
            "created_at": rfc3339(created),
            "ended_at": rfc3339(created),
            "expires_at": rfc3339(created + timedelta(hours=24)),
            "archived_at": None,
            "cancel_initiated_at": None,
            "results_url": f"{self._own_base_url(request)}/v1/messages/batches/{batch_id}/results",
        }
        results = b"".join(orjson.dumps(line) + b"\n" for line in lines)
        self._batches[batch_id] = Batch(info, results)
        return json_response(info)

    @staticmethod
    def _batch_line(item: JSONObject, request_id: str) -> JSONObject:
        params = item["params"]
        failure = scenario_error(model_scenario(params["model"]))
        if failure is not None:
            error = error_body(failure.error_type, failure.message, request_id)
            return {"custom_id": item["custom_id"], "result": {"type": "errored", "error": error}}
        message = build_message(params, None)
        return {"custom_id": item["custom_id"], "result": {"type": "succeeded", "message": message}}

    def _own_base_url(self, request: web.Request) -> str:
        """Absolute like api.anthropic.com's, and ours even when a gateway forwards the call."""
        return self._base_url() or f"{request.scheme}://{request.host}"

    def _batch(self, request: web.Request) -> Batch:
        return find(self._batches, request.match_info["batch_id"], "message batch")

    async def _list_batches(self, request: web.Request) -> web.StreamResponse:
        newest_first = [batch.info for batch in reversed(self._batches.values())]
        return json_response(cursor_page(request, newest_first))

    async def _get_batch(self, request: web.Request) -> web.StreamResponse:
        return json_response(self._batch(request).info)

    async def _cancel_batch(self, request: web.Request) -> web.StreamResponse:
        """Batches end at creation, so cancelling one changes nothing, as for an ended batch."""
        return json_response(self._batch(request).info)

    async def _delete_batch(self, request: web.Request) -> web.StreamResponse:
        batch = self._batch(request)
        del self._batches[batch.info["id"]]
        return json_response({"id": batch.info["id"], "type": "message_batch_deleted"})

    async def _batch_results(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=self._batch(request).results, content_type="application/binary")
