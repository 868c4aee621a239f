"""HTTP for learnt styles: upload a painting to learn, follow or cancel the run, delete a style.

POST /api/styles?name=NAME[&title=TITLE] with the picture as the body (JPEG, PNG or WebP,
at most 20 MB) starts learning (202); a second one while a run goes on gets 429. GET
/api/styles/learning is the run's progress; DELETE /api/styles/learning cancels it. DELETE
/api/styles/NAME removes a learnt style; GET /api/styles/NAME/thumbnail is a style's painting
(a shipped one's, beside its card, or a learnt one's).
Every refusal is JSON ``{"error": "..."}`` in one line; the token guards all of it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from stylecam.server.config import CONFIG, ENGINE
from stylecam.server.learning import Learning
from stylecam.server.uploads import MAX_UPLOAD_BYTES, UploadError
from stylecam.server.user_styles import SUFFIX, StyleFileError, clean_name, styles_dir

LEARNING = web.AppKey("learning", Learning)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def learning_context(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    app[LEARNING] = Learning(app[ENGINE].registry, styles_dir(config.styles_dir), config.learn_minutes, config.learn_peer)
    yield
    await app[LEARNING].close()


async def _read_body(request: web.Request) -> bytes:
    if request.content_length is not None and request.content_length > MAX_UPLOAD_BYTES:
        raise UploadError(413, f"the painting is {request.content_length / 2**20:.1f} MB; at most {MAX_UPLOAD_BYTES // 2**20} MB is taken")
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > MAX_UPLOAD_BYTES:
            raise UploadError(413, f"the painting is over {MAX_UPLOAD_BYTES // 2**20} MB, the most taken")
        chunks.append(chunk)
    return b"".join(chunks)


async def upload(request: web.Request) -> web.Response:
    name = request.query.get("name", "").strip()
    if not name:
        return _error(400, "name the style: POST /api/styles?name=NAME with the painting as the body")
    try:
        job = request.app[LEARNING].start(await _read_body(request), name, request.query.get("title"))
    except UploadError as e:
        return _error(e.status, str(e))
    return web.json_response(job.describe(), status=202)


async def progress(request: web.Request) -> web.Response:
    job = request.app[LEARNING].job
    return web.json_response(job.describe() if job else {"state": "idle"})


async def cancel(request: web.Request) -> web.Response:
    job = request.app[LEARNING].cancel()
    return web.json_response(job.describe()) if job else _error(409, "nothing is learning")


def _learnt_name(request: web.Request) -> str | None:
    name = request.match_info["name"]
    with contextlib.suppress(StyleFileError):
        if clean_name(name) == name:
            return name
    return None


async def delete(request: web.Request) -> web.Response:
    name = _learnt_name(request)
    if name is None or not request.app[LEARNING].delete(name):
        return _error(404, f"no learnt style named {request.match_info['name']!r} (shipped styles cannot be deleted)")
    return web.json_response({"deleted": name})


async def thumbnail(request: web.Request) -> web.StreamResponse:
    shipped = request.app[ENGINE].registry.painting(request.match_info["name"])
    if shipped is not None:
        return web.FileResponse(shipped, headers={"Cache-Control": "max-age=3600"})
    name = _learnt_name(request)
    folder = request.app[LEARNING].directory
    if name is None or not (folder / f"{name}{SUFFIX}").is_file() or not (folder / f"{name}.jpg").is_file():
        return _error(404, f"no style named {request.match_info['name']!r} has a painting")
    return web.FileResponse(folder / f"{name}.jpg", headers={"Cache-Control": "no-cache"})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/styles", upload)
    app.router.add_get("/api/styles/learning", progress)
    app.router.add_delete("/api/styles/learning", cancel)
    app.router.add_delete("/api/styles/{name}", delete)
    app.router.add_get("/api/styles/{name}/thumbnail", thumbnail)
