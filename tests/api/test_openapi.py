"""The API documents itself: every endpoint, the streamed upload body, the problem codes."""

from __future__ import annotations

import httpx


async def test_openapi_describes_the_files_api(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    files = "/api/v1/media/files"
    assert set(paths[files]) == {"get", "post"}
    assert set(paths[files + "/{file_id}"]) == {"get", "patch", "delete"}
    assert {"get", "head"} <= set(paths[files + "/{file_id}/content"])
    assert "post" in paths[files + "/{file_id}/signed-url"]
    upload = paths[files]["post"]
    body = upload["requestBody"]["content"]
    assert body["multipart/form-data"]["schema"]["required"] == ["file"]
    assert "application/octet-stream" in body
    assert {"201", "200", "413", "415"} <= set(upload["responses"])
    assert upload["summary"]  # endpoint docstrings become summaries
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
