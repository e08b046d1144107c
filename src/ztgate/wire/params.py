"""The fields policy reads, checked against the shapes the API accepts before anything decides.

Policy decides on ``model``, ``max_tokens``, the thinking budget, ``stream``, tools, skills
(``container``) and MCP servers, and the transform caps ``max_tokens``. A value of another type
than the API's is refused here, not skipped: ``"max_tokens": 4096.0`` would escape an integer
cap, ``"stream": "true"`` a rule on streaming, a tool without a name every tool grant. The
same field is held to the same shape on every endpoint that carries it, whether the endpoint
needs it or not: ``count_tokens`` takes no ``max_tokens``, but one that is sent is read by
policy and capped like any other. Everything else is the API's to judge.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from ztgate.core.errors import InvalidRequest

MAX_INT = 2**31 - 1
_MODEL = re.compile(r"[\x21-\x7e]{1,256}")
_CUSTOM_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_request(endpoint: str, body: Mapping[str, Any]) -> None:
    """The body of a JSON endpoint (``messages``, ``count_tokens``, ``batches``)."""
    if endpoint == "batches":
        check_batch(body)
    else:
        check_messages_request(body, counting=endpoint == "count_tokens")


def check_messages_request(body: Mapping[str, Any], *, counting: bool = False) -> None:
    """A ``/v1/messages`` body (``counting``: a ``count_tokens`` body, which needs no
    ``max_tokens``; one it carries anyway is an integer like any other)."""
    _check_params(body, "", counting=counting)


def check_batch(body: Mapping[str, Any]) -> None:
    """A batch: every request inside it is a full messages request."""
    items = body.get("requests")
    if not isinstance(items, list) or not items:
        raise InvalidRequest("requests: a batch needs a non-empty list of requests")
    for index, item in enumerate(items):
        where = f"requests.{index}"
        if not isinstance(item, dict):
            raise InvalidRequest(f"{where}: must be an object")
        custom_id = item.get("custom_id")
        if not isinstance(custom_id, str) or not _CUSTOM_ID.fullmatch(custom_id):
            raise InvalidRequest(f"{where}.custom_id: 1-64 letters, digits, '-' or '_'")
        params = item.get("params")
        if not isinstance(params, dict):
            raise InvalidRequest(f"{where}.params: must be an object")
        _check_params(params, f"{where}.params.", counting=False)
        if params.get("stream") is True:
            raise InvalidRequest(f"{where}.params.stream: a batch request cannot stream")


def _check_params(body: Mapping[str, Any], at: str, *, counting: bool) -> None:
    model = body.get("model")
    if not isinstance(model, str) or not _MODEL.fullmatch(model):
        raise InvalidRequest(f"{at}model: required, a model name")
    _integer(body, "max_tokens", at, required=not counting)
    if "stream" in body and not isinstance(body["stream"], bool):
        raise InvalidRequest(f"{at}stream: must be true or false")
    _thinking(body.get("thinking"), f"{at}thinking")
    _messages(body, at)
    _tools(body.get("tools"), f"{at}tools")
    _container(body.get("container"), f"{at}container")
    _mcp_servers(body.get("mcp_servers"), f"{at}mcp_servers")


def _integer(holder: Mapping[str, Any], key: str, at: str, *, required: bool, low: int = 1) -> None:
    if key not in holder:
        if required:
            raise InvalidRequest(f"{at}{key}: required, an integer")
        return
    value = holder[key]
    if type(value) is not int or not low <= value <= MAX_INT:
        raise InvalidRequest(f"{at}{key}: must be an integer from {low} to {MAX_INT}")


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRequest(f"{where}: must be an object")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidRequest(f"{where}: must be a list")
    return value


def _objects(value: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Each item of a list that must hold objects, with where it stands."""
    for index, item in enumerate(_list(value, where)):
        at = f"{where}.{index}"
        yield at, _object(item, at)


def _string(holder: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> None:
    value = holder.get(key)
    if (value is not None or required) and (not isinstance(value, str) or not value):
        raise InvalidRequest(f"{where}.{key}: must be a non-empty string")


def _thinking(value: Any, where: str) -> None:
    if value is None:
        return
    thinking = _object(value, where)
    _string(thinking, "type", where, required=True)
    _integer(thinking, "budget_tokens", f"{where}.", required=thinking["type"] == "enabled")


def _messages(body: Mapping[str, Any], at: str) -> None:
    for where, message in _objects(body.get("messages"), f"{at}messages"):
        _string(message, "role", where, required=True)
        content = message.get("content")
        if isinstance(content, list):
            for block_at, block in _objects(content, f"{where}.content"):
                _string(block, "type", block_at, required=True)
        elif not isinstance(content, str):
            raise InvalidRequest(f"{where}.content: must be a string or a list of blocks")
    system = body.get("system")
    if system is not None and not isinstance(system, str):
        for block_at, block in _objects(system, f"{at}system"):
            _string(block, "type", block_at, required=True)


def _tools(value: Any, where: str) -> None:
    if value is None:
        return
    for at, tool in _objects(value, where):
        _string(tool, "type", at)
        _string(tool, "name", at)
        if tool.get("type") in (None, "custom") and "name" not in tool:
            raise InvalidRequest(f"{at}.name: a custom tool needs a name")
        if "name" not in tool and "type" not in tool:
            raise InvalidRequest(f"{at}: a tool needs a name or a type")


def _container(value: Any, where: str) -> None:
    if value is None or (isinstance(value, str) and value):
        return
    container = _object(value, where)
    _string(container, "id", where)
    skills = container.get("skills")
    if skills is None:
        return
    for at, skill in _objects(skills, f"{where}.skills"):
        _string(skill, "skill_id", at, required=True)
        if skill.get("type") not in ("anthropic", "custom"):
            raise InvalidRequest(f"{at}.type: must be 'anthropic' or 'custom'")
        _string(skill, "version", at)


def _mcp_servers(value: Any, where: str) -> None:
    if value is None:
        return
    for at, server in _objects(value, where):
        _string(server, "url", at, required=True)
        _string(server, "name", at, required=True)
        _string(server, "type", at)
