"""The Models API: the fixed list of models in the catalogue, listed and looked up by id."""

from __future__ import annotations

from aiohttp import web

from ztgate.devtools.simulator.api import JSONObject, find, json_response
from ztgate.devtools.simulator.catalogue import MODELS
from ztgate.devtools.simulator.pagination import cursor_page


def routes() -> list[web.RouteDef]:
    return [
        web.get("/v1/models", _list_models),
        web.get("/v1/models/{model_id}", _get_model),
    ]


def _model_info(model_id: str, name: str, line: str, released: str, max_tokens: int) -> JSONObject:
    return {
        "id": model_id,
        "type": "model",
        "display_name": name,
        "line": line,
        "created_at": f"{released}T00:00:00Z",
        "lifecycle": "active",
        "max_input_tokens": 200000,
        "max_tokens": max_tokens,
    }


async def _list_models(request: web.Request) -> web.StreamResponse:
    return json_response(cursor_page(request, [_model_info(*model) for model in MODELS]))


async def _get_model(request: web.Request) -> web.StreamResponse:
    models = {model[0]: model for model in MODELS}
    return json_response(_model_info(*find(models, request.match_info["model_id"], "model")))
