"""The Files API: multipart uploads kept in memory, listed, described, downloaded and deleted."""

from __future__ import annotations

import mimetypes
from datetime import timedelta
from pathlib import PurePosixPath

from aiohttp import web

from ztgate.devtools.simulator.api import (
    JSONObject,
    find,
    invalid,
    json_response,
    new_id,
    now,
    rfc3339,
)
from ztgate.devtools.simulator.bodies import form_parts, form_value
from ztgate.devtools.simulator.catalogue import StoredFile
from ztgate.devtools.simulator.pagination import token_page


def _expires_in_seconds(raw: str | None) -> int | None:
    """The Files API's optional lifetime: one hour to ninety days."""
    if raw is None:
        return None
    try:
        seconds = int(raw)
    except ValueError:
        raise invalid("expires_in_seconds: Input should be a valid integer") from None
    if not 3600 <= seconds <= 7_776_000:
        raise invalid("expires_in_seconds: Input should be between 3600 and 7776000")
    return seconds


class FilesApi:
    """The uploaded files, by id, in upload order."""

    def __init__(self) -> None:
        self._files: dict[str, StoredFile] = {}

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/files", self._upload_file),
            web.get("/v1/files", self._list_files),
            web.get("/v1/files/{file_id}", self._get_file),
            web.delete("/v1/files/{file_id}", self._delete_file),
            web.get("/v1/files/{file_id}/content", self._file_content),
        ]

    async def _upload_file(self, request: web.Request) -> web.StreamResponse:
        parts = await form_parts(request)
        upload = next((p for p in parts if p.name == "file" and p.filename is not None), None)
        if upload is None:
            raise invalid("file: Field required")
        filename = PurePosixPath(upload.filename or "").name or "unnamed"
        mime_type = (
            upload.content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
        )
        created = now()
        expires_in = _expires_in_seconds(form_value(parts, "expires_in_seconds"))
        expires_at = created + timedelta(seconds=expires_in) if expires_in else None
        metadata: JSONObject = {
            "id": new_id("file_"),
            "type": "file",
            "filename": filename,
            "mime_type": mime_type,
            "size_bytes": len(upload.data),
            "created_at": rfc3339(created),
            "expires_at": rfc3339(expires_at) if expires_at else None,
            "downloadable": True,
        }
        self._files[metadata["id"]] = StoredFile(metadata, upload.data)
        return json_response(metadata)

    def _file(self, request: web.Request) -> StoredFile:
        return find(self._files, request.match_info["file_id"], "file")

    async def _list_files(self, request: web.Request) -> web.StreamResponse:
        newest_first = [stored.metadata for stored in reversed(self._files.values())]
        return json_response(token_page(request, newest_first))

    async def _get_file(self, request: web.Request) -> web.StreamResponse:
        return json_response(self._file(request).metadata)

    async def _delete_file(self, request: web.Request) -> web.StreamResponse:
        file_id = self._file(request).metadata["id"]
        del self._files[file_id]
        return json_response({"id": file_id, "type": "file_deleted"})

    async def _file_content(self, request: web.Request) -> web.StreamResponse:
        stored = self._file(request)
        return web.Response(
            body=stored.data, headers={"content-type": stored.metadata["mime_type"]}
        )
