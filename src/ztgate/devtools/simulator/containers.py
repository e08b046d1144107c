"""Code-execution containers: made for requests that load skills or use code execution, and
named again by id in later requests (only ids made here)."""

from __future__ import annotations

from datetime import timedelta
from typing import Final

from ztgate.devtools.simulator.api import JSONObject, invalid, new_id, now, rfc3339

_CONTAINER_LIFETIME: Final = timedelta(days=30)


def _uses_code_execution(body: JSONObject) -> bool:
    tools = body.get("tools")
    return any(
        isinstance(tool, dict) and str(tool.get("type", "")).startswith("code_execution_")
        for tool in (tools if isinstance(tools, list) else [])
    )


def _container_skills(spec: object) -> list[JSONObject]:
    """The skills a `container` object asks for, as the response lists them."""
    skills = spec.get("skills") if isinstance(spec, dict) else None
    return [
        {
            "type": skill.get("type"),
            "skill_id": skill.get("skill_id"),
            "version": skill.get("version", "latest"),
        }
        for skill in (skills if isinstance(skills, list) else [])
        if isinstance(skill, dict)
    ]


class Containers:
    """The containers made so far, by id."""

    def __init__(self) -> None:
        self._containers: dict[str, JSONObject] = {}

    def with_container(self, message: JSONObject, body: JSONObject) -> JSONObject:
        """Add the container the request runs in, like the API: the one it names by id (which
        must be ours), else a new one when it loads skills or uses code execution."""
        requested = body.get("container")
        if requested is not None and not isinstance(requested, str | dict):
            raise invalid("container: Input should be a valid string or object")
        reused = requested.get("id") if isinstance(requested, dict) else requested
        skills = _container_skills(requested)
        if reused is not None:
            container = self._containers.get(str(reused))
            if container is None:
                raise invalid(f"container: container {reused} not found")
            if skills:
                container["skills"] = skills
        elif skills or _uses_code_execution(body):
            expires = rfc3339(now() + _CONTAINER_LIFETIME)
            container = {"id": new_id("container_"), "expires_at": expires, "skills": skills}
            self._containers[container["id"]] = container
        else:
            return message
        return {**message, "container": dict(container)}
