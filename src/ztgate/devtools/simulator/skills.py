"""The Skills API: Anthropic's read-only skills and custom ones uploaded as a folder holding a
SKILL.md, each with its versions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import PurePosixPath

from aiohttp import web

from ztgate.devtools.simulator.api import (
    ApiError,
    JSONObject,
    find,
    invalid,
    json_response,
    new_id,
    now,
    rfc3339,
)
from ztgate.devtools.simulator.bodies import FormPart, form_parts, form_value
from ztgate.devtools.simulator.catalogue import ANTHROPIC_SKILL_DATE, ANTHROPIC_SKILLS, Skill
from ztgate.devtools.simulator.pagination import token_page


def _frontmatter(markdown: str) -> dict[str, str]:
    """The `key: value` lines of a SKILL.md YAML front matter (enough for name/description)."""
    lines = markdown.splitlines()
    if not lines or lines[0].strip() != "---":
        return {}
    fields: dict[str, str] = {}
    for line in lines[1:]:
        if line.strip() == "---":
            break
        key, separator, value = line.partition(":")
        if separator:
            fields[key.strip()] = value.strip().strip("\"'")
    return fields


def _skill_version(skill_id: str, name: str, description: str, created: datetime) -> JSONObject:
    return {
        "id": new_id("skillver_"),
        "type": "skill_version",
        "skill_id": skill_id,
        "name": name,
        "description": description,
        "version": str(int(created.timestamp() * 1_000_000)),
        "created_at": rfc3339(created),
    }


def _skill_upload(parts: Sequence[FormPart]) -> tuple[str, str, str]:
    """Check an upload is one folder with SKILL.md at its root.

    Returns the skill's name (front matter `name`, else the folder), description and display name.
    """
    files = [part for part in parts if part.name in ("files", "files[]") and part.filename]
    if not files:
        raise invalid("files: Field required")
    folders = {PurePosixPath(part.filename or "").parts[0] for part in files}
    paths = {PurePosixPath(part.filename or "") for part in files}
    if len(folders) != 1 or any(len(path.parts) < 2 for path in paths):
        raise invalid("files: all files must be in the same top-level directory")
    folder = folders.pop()
    manifest = next(
        (p for p in files if PurePosixPath(p.filename or "") == PurePosixPath(folder, "SKILL.md")),
        None,
    )
    if manifest is None:
        raise invalid("files: SKILL.md file must be exactly in the top-level folder")
    meta = _frontmatter(manifest.data.decode("utf-8", "replace"))
    name = meta.get("name") or folder
    return name, meta.get("description", ""), form_value(parts, "display_name") or name


class SkillsApi:
    """The skills, by id in creation order, starting with Anthropic's."""

    def __init__(self) -> None:
        self._skills: dict[str, Skill] = {}
        for skill_id, display_name, description in ANTHROPIC_SKILLS:
            self._add_skill(
                skill_id,
                skill_id,
                description,
                source="anthropic",
                created=ANTHROPIC_SKILL_DATE,
                display_name=display_name,
            )

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/skills", self._create_skill),
            web.get("/v1/skills", self._list_skills),
            web.get("/v1/skills/{skill_id}", self._get_skill),
            web.delete("/v1/skills/{skill_id}", self._delete_skill),
            web.post("/v1/skills/{skill_id}/versions", self._create_skill_version),
            web.get("/v1/skills/{skill_id}/versions", self._list_skill_versions),
            web.get("/v1/skills/{skill_id}/versions/{version}", self._get_skill_version),
            web.delete("/v1/skills/{skill_id}/versions/{version}", self._delete_skill_version),
        ]

    def _add_skill(
        self,
        skill_id: str,
        name: str,
        description: str,
        *,
        source: str,
        created: datetime,
        display_name: str | None = None,
    ) -> Skill:
        version = _skill_version(skill_id, name, description, created)
        info = {
            "id": skill_id,
            "type": "skill",
            "display_name": display_name or name,
            "source": {"type": source},
            "latest_version_id": version["id"],
            "created_at": rfc3339(created),
            "updated_at": rfc3339(created),
        }
        skill = Skill(name, info, [version])
        self._skills[skill_id] = skill
        return skill

    def _skill(self, request: web.Request, *, writable: bool = False) -> Skill:
        skill = find(self._skills, request.match_info["skill_id"], "skill")
        if writable and skill.info["source"]["type"] != "custom":
            raise ApiError(403, "permission_error", f"skill {skill.info['id']} is read-only")
        return skill

    def _skill_version_of(self, request: web.Request, skill: Skill) -> JSONObject:
        wanted = request.match_info["version"]
        if wanted == "latest" and skill.versions:
            return skill.versions[0]
        by_key = {key: v for v in skill.versions for key in (v["id"], v["version"])}
        return find(by_key, wanted, "skill version")

    async def _create_skill(self, request: web.Request) -> web.StreamResponse:
        name, description, display_name = _skill_upload(await form_parts(request))
        skill = self._add_skill(
            new_id("skill_"),
            name,
            description,
            source="custom",
            created=now(),
            display_name=display_name,
        )
        return json_response(skill.info)

    async def _list_skills(self, request: web.Request) -> web.StreamResponse:
        source = request.query.get("source")
        skills = [
            skill.info
            for skill in reversed(self._skills.values())
            if source is None or skill.info["source"]["type"] == source
        ]
        return json_response(token_page(request, skills))

    async def _get_skill(self, request: web.Request) -> web.StreamResponse:
        return json_response(self._skill(request).info)

    async def _delete_skill(self, request: web.Request) -> web.StreamResponse:
        skill_id = self._skill(request, writable=True).info["id"]
        del self._skills[skill_id]
        return json_response({"id": skill_id, "type": "skill_deleted"})

    async def _create_skill_version(self, request: web.Request) -> web.StreamResponse:
        skill = self._skill(request, writable=True)
        name, description, _ = _skill_upload(await form_parts(request))
        if name != skill.name:
            raise invalid(f"files: the skill name must stay {skill.name!r}")
        created = now()
        version = _skill_version(skill.info["id"], name, description, created)
        skill.versions.insert(0, version)
        skill.info.update(latest_version_id=version["id"], updated_at=rfc3339(created))
        return json_response(version)

    async def _list_skill_versions(self, request: web.Request) -> web.StreamResponse:
        return json_response(token_page(request, self._skill(request).versions))

    async def _get_skill_version(self, request: web.Request) -> web.StreamResponse:
        skill = self._skill(request)
        return json_response(self._skill_version_of(request, skill))

    async def _delete_skill_version(self, request: web.Request) -> web.StreamResponse:
        skill = self._skill(request, writable=True)
        version = self._skill_version_of(request, skill)
        skill.versions.remove(version)
        if skill.versions:
            skill.info["latest_version_id"] = skill.versions[0]["id"]
        return json_response({"id": version["id"], "type": "skill_version_deleted"})
