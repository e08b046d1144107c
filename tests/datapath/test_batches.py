from __future__ import annotations

import orjson

from ztgate.datapath.batches import rewrite_results_urls

UPSTREAM = "https://api.anthropic.com/v1/messages/batches/msgbatch_1/results"


def test_single_batch_results_url_points_at_the_gateway() -> None:
    body = orjson.dumps({"id": "msgbatch_1", "results_url": UPSTREAM})
    out = orjson.loads(rewrite_results_urls(body, "http://gw.internal:8787"))
    assert out["results_url"] == "http://gw.internal:8787/v1/messages/batches/msgbatch_1/results"


def test_every_batch_in_a_list_is_rewritten() -> None:
    body = orjson.dumps({"data": [{"results_url": UPSTREAM}, {"results_url": None}]})
    out = orjson.loads(rewrite_results_urls(body, "https://gw.example/"))
    assert out["data"][0]["results_url"].startswith("https://gw.example/v1/messages/batches/")
    assert out["data"][1]["results_url"] is None


def test_bodies_without_results_url_are_untouched() -> None:
    body = b'{"id":"msgbatch_1",  "processing_status":"in_progress"}'
    assert rewrite_results_urls(body, "https://gw.example") is body
