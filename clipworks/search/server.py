"""`clipworks serve`: an HTTP API over a store (FastAPI; OpenAPI spec at /openapi.json) and a search page at /.

Security model: the server hands out indexed images (a video store's videos) only, by id or by the path one was
indexed under, streamed from inside the store's indexed roots; the real path (symlinks resolved) must lie under a
root's real path, so `../`, absolute paths and symlinks that leave a root get 403. Requests must name an allowed Host
(loopback names by default), so a web page the user visits cannot reach the server through DNS rebinding; bound
to anything but loopback, every request also needs the token printed at start. Uploads are limited in bytes and
pixels, and decoded and embedded in worker threads, a few at a time, so other requests stay prompt. Thumbnails
and browser-ready copies (`thumbs.py`) are made under the same pixel budget, a few at a time, and cached.
"""

from __future__ import annotations

import asyncio
import io
import os
import secrets
import socket
import sys
import tarfile
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import numpy as np

from clipworks.errors import ImageTooLargeError, InputFileError, require_extra

require_extra("serve", "the search server (clipworks serve)")  # one line naming the extra, not an ImportError

from fastapi import Depends, FastAPI, HTTPException, Query, Request, UploadFile
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.middleware.body_limit import RequestBodyLimitMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware

from clipworks.search import thumbs
from clipworks.search.duplicates import DEFAULT_THRESHOLD, DuplicateReport, find_duplicates
from clipworks.search.engine import Filters, Hit, SearchEngine
from clipworks.search.store import GONE, Item, inside_roots

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_UPLOAD_PIXELS = thumbs.MAX_PIXELS  # 120 MB decoded as RGB; decided from the image header, before decoding
UPLOAD_WORKERS = 2  # uploads decoded and embedded at once; more wait their turn without holding a thread
THUMB_WORKERS = 2  # thumbnails and converted images made at once; cached ones are served without waiting
MAX_K = 200  # results in one page
MAX_GROUPS = 100  # duplicate groups in one page
MAX_OFFSET = 1000  # how deep paging goes: a page starts at most this many results down the ranking
MAX_ID = 2**63 - 1  # SQLite's largest integer: larger ids cannot be indexed items
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")  # as they appear in a Host header
TOKEN_COOKIE = "clipworks_token"
Filter = Annotated[str | None, Query(max_length=4096)]  # a filter's query parameter
Modifier = Annotated[str | None, Query(max_length=1000, description='terms added to the image\'s query, e.g. + "at night"')]
MEDIA_TYPES = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "gif": "image/gif",
               "bmp": "image/bmp", "tif": "image/tiff", "tiff": "image/tiff", "heic": "image/heic", "heif": "image/heif"}
VIDEO_TYPES = {"mp4": "video/mp4", "m4v": "video/mp4", "mov": "video/quicktime", "mkv": "video/x-matroska",
               "webm": "video/webm", "avi": "video/x-msvideo", "mpg": "video/mpeg", "mpeg": "video/mpeg",
               "ogv": "video/ogg", "gif": "image/gif"}  # a video store's files; a folder of frames has none
MAX_UNREADABLE_LISTED = 20  # unreadable videos named in /api/stats (all are counted)


def _short(text: str, limit: int = 80) -> str:
    """User input quoted back in an error, cut to `limit` characters."""
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def _date(text: str | None, name: str) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise HTTPException(422, f"{name}: expected a date such as 2026-11-23, got {_short(text)!r}") from None


def _links(item: Item, video: bool) -> dict[str, str | None]:
    """The item's full image (converted for the browser when its format needs it), or its video file (None for a
    folder of frames), and its thumbnail (a video's poster frame)."""
    if not video:
        return {"url": f"/api/image/{item.id}", "thumb": f"/api/thumb/{item.id}"}
    return {"url": f"/api/video/{item.id}" if item.ext in VIDEO_TYPES else None, "thumb": f"/api/thumb/{item.id}"}


def filters(folder: Filter = None, after: Filter = None, before: Filter = None, ext: Filter = None,
            taken_after: Filter = None, taken_before: Filter = None, camera: Filter = None,
            has_gps: bool | None = None) -> Filters:
    """The metadata filters of a query's parameters (see Filters); every search route takes them."""
    return Filters(folder or None, _date(after, "after"), _date(before, "before"),
                   [e for e in ext.split(",") if e] if ext else None, _date(taken_after, "taken_after"),
                   _date(taken_before, "taken_before"), camera or None, has_gps)


Filtered = Annotated[Filters, Depends(filters)]


def _hits(hits: list[Hit], video: bool) -> list[dict[str, Any]]:
    """Hits as JSON with their links; a video's `play` starts it at its best moment (a #t= media fragment)."""
    out = []
    for h in hits:
        record = {**h.to_json(), **_links(h.item, video)}
        if video:
            at = h.moment.seconds if h.moment else None
            record["play"] = record["url"] and (record["url"] + (f"#t={at:.3f}" if at is not None else ""))
        out.append(record)
    return out


def is_exposed(host: str) -> bool:
    """Bound to anything but the loopback names, other machines (or other users' programs) can connect."""
    return host not in ("localhost", "127.0.0.1", "::1")


def allowed_hosts_for(host: str, extra: Sequence[str] = ()) -> list[str]:
    """The Host headers accepted when bound to `host`: the loopback names, the bound address and `extra`;
    any when bound to every interface (the machine's names are not known; the token guards it then)."""
    if host in ("0.0.0.0", "::", ""):
        return ["*"]
    return list(dict.fromkeys([*LOOPBACK_HOSTS, f"[{host}]" if ":" in host else host, *extra]))


class _HeadAsGet:
    """Answer HEAD like GET (FastAPI routes take GET only); uvicorn sends the headers without the body."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "HEAD":
            scope = {**scope, "method": "GET"}  # a copy: uvicorn still sees HEAD and drops the body
        await self.app(scope, receive, send)


def _stream_item(item: Item, roots: Sequence[str], types: dict[str, str] = MEDIA_TYPES) -> Response:
    """An indexed image's (or, with VIDEO_TYPES, video's) bytes, streamed from its file or tar member (never read
    whole into memory); a file answers Range requests, so a video can start anywhere."""
    outer, _, member = item.path.partition("::")
    if not inside_roots(outer, roots):
        raise HTTPException(403, "outside the indexed folders")
    media_type = types.get(item.ext)
    if media_type is None:
        raise HTTPException(404, "not a video" if types is VIDEO_TYPES else "not an image")
    headers = {"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"}
    if not member:
        if not os.path.isfile(outer):
            raise HTTPException(404, GONE)
        return FileResponse(os.path.realpath(outer), media_type=media_type, headers=headers)
    try:
        tar = tarfile.open(outer)
        info = tar.getmember(member)
    except (OSError, KeyError, tarfile.TarError):
        raise HTTPException(404, GONE) from None
    if not info.isfile():  # a link member could point anywhere
        tar.close()
        raise HTTPException(404, GONE)

    def chunks() -> Iterator[bytes]:
        with tar, tar.extractfile(info) as f:
            while block := f.read(1 << 16):
                yield block

    return StreamingResponse(chunks(), media_type=media_type, headers={**headers, "Content-Length": str(info.size)})


def create_app(engine: SearchEngine, max_upload_bytes: int = MAX_UPLOAD_BYTES, max_upload_pixels: int = MAX_UPLOAD_PIXELS,
               allowed_hosts: Sequence[str] = LOOPBACK_HOSTS, token: str | None = None) -> FastAPI:
    """The API and page for one opened store: only requests naming one of `allowed_hosts` (`*`: any) are
    answered, and with a `token`, only those carrying it (header, `?token=` or the cookie that sets). A video
    store (an engine with a `poster`) is served the same way: thumbnails are poster frames, a text query's hits
    carry their best moment, and the videos are served at /api/video/{id}."""
    app = FastAPI(title="clipworks search", version="1",
                  description="Search a clipworks image store by text or image, or a video store by text.")
    uploads = asyncio.Semaphore(UPLOAD_WORKERS)
    copies = asyncio.Semaphore(THUMB_WORKERS)
    video = engine.poster is not None
    unreadable: dict[int, tuple[str, str]] = {}  # id -> (path, why): videos that no longer decode, seen so far
    # middleware added last runs first: Host check, then token, then the body limit
    app.add_middleware(RequestBodyLimitMiddleware, max_body_size=max_upload_bytes + 64 * 1024)  # + multipart framing
    if token:
        @app.middleware("http")
        async def require_token(request: Request, call_next):
            from_query = request.query_params.get("token")
            given = (request.headers.get("authorization", "").removeprefix("Bearer ") or from_query
                     or request.cookies.get(TOKEN_COOKIE, ""))
            if not secrets.compare_digest(given.encode(), token.encode()):
                return JSONResponse({"detail": "a token is required: open the URL `clipworks serve` printed"}, 401)
            response = await call_next(request)
            if from_query:  # the page's own requests and <img> URLs then carry the cookie
                response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
            return response
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts), www_redirect=False)
    app.add_middleware(_HeadAsGet)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        """FastAPI's 422, with long inputs cut short instead of echoed back whole."""
        errors = [{**e, "input": _short(e["input"])} if isinstance(e.get("input"), str) else e for e in exc.errors()]
        return JSONResponse({"detail": jsonable_encoder(errors)}, 422)

    def query_vector(q: str | None, start: np.ndarray | None = None) -> np.ndarray:
        """A query in the algebra (query.py), added to `start`; img: terms are refused (no reading server paths)."""
        if not q or not q.strip():
            return start
        try:
            return engine.embed_query(q, start, read_files=False)
        except InputFileError as exc:
            raise HTTPException(422, _short(str(exc), 300)) from None

    def run(query, k: int, offset: int, min_score: float | None, f: Filters,
            exclude: set[int] | None = None) -> dict[str, Any]:
        """One page of results: `k` hits from `offset`, the number of items ranked, and where the next page starts."""
        try:
            with engine.reading():  # the page and its total from one version of the store
                hits = engine.search(query, k=k, min_score=min_score, filters=f, exclude=exclude, offset=offset)
                total = engine.ranked_count(f, exclude)
        except InputFileError as exc:
            raise HTTPException(422, str(exc)) from None
        more = len(hits) == k and offset + k < total and offset + k <= MAX_OFFSET
        return {"results": _hits(hits, video), "offset": offset, "total": total, "next": offset + k if more else None}

    def found(item_id: int) -> Item:
        items = engine.store.items([item_id]) if 0 <= item_id <= MAX_ID else []
        if not items:
            raise HTTPException(404, f"no indexed item with id {item_id}")
        return items[0]

    def embed_upload(data: bytes, name: str) -> np.ndarray:
        """Decode and embed an upload (in a worker thread); the pixel budget is checked from the header first."""
        from clipworks.model.transforms import decode_image

        try:
            return engine.embed_image(decode_image(io.BytesIO(data), name, max_pixels=max_upload_pixels))
        except ImageTooLargeError as exc:
            raise HTTPException(413, str(exc)) from None
        except InputFileError as exc:
            raise HTTPException(422, str(exc)) from None

    duplicates_lock = threading.Lock()
    duplicates_cache: dict[tuple[int, float, bool], DuplicateReport] = {}

    def duplicates_of(threshold: float, exact_only: bool) -> DuplicateReport:
        """The store's duplicate groups, found once per store version and setting (one search at a time)."""
        with duplicates_lock:
            key = (engine.store.version, threshold, exact_only)
            if key not in duplicates_cache:
                report = find_duplicates(engine.store, threshold=threshold, exact_only=exact_only,
                                         index=None if exact_only else engine.index())
                duplicates_cache.clear()  # only the latest setting is kept: a report can be large
                duplicates_cache[key] = report
            return duplicates_cache[key]

    def copy_of(item_id: int, side: int | None, make: bool) -> Path | bytes | None:
        """An indexed image's JPEG copy (thumbnail, or full size), or a video's poster frame: cached path, bytes,
        or None if not cached yet. A video that no longer decodes gets the placeholder, and is counted."""
        item, roots = found(item_id), engine.store.roots()
        try:
            if make:
                copy = thumbs.make_copy(engine.store.directory, item, roots, side, max_upload_pixels, engine.poster)
                unreadable.pop(item_id, None)
                return copy
            return thumbs.cached_copy(engine.store.directory, item, roots, side)
        except PermissionError:
            raise HTTPException(403, "outside the indexed folders") from None
        except FileNotFoundError:
            raise HTTPException(404, GONE) from None
        except ImageTooLargeError as exc:
            raise HTTPException(413, str(exc)) from None
        except InputFileError as exc:  # changed since indexing into something that does not decode
            if not video:
                raise HTTPException(422, str(exc)) from None
            unreadable[item_id] = (item.path, str(exc).removeprefix(item.path + ": "))
            return thumbs.placeholder()

    async def browser_copy(item_id: int, side: int | None) -> Response:
        """The cached JPEG copy, made first (a few at a time, in worker threads) if need be."""
        copy = await run_in_threadpool(copy_of, item_id, side, False)
        if copy is None:
            async with copies:
                copy = await run_in_threadpool(copy_of, item_id, side, True)
        headers = {"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"}
        if copy is thumbs.placeholder():  # the one placeholder object: not to be kept, the video may be mended
            return Response(copy, media_type="image/jpeg", headers={**headers, "Cache-Control": "no-store",
                                                                     "X-Clipworks-Placeholder": "unreadable video"})
        if isinstance(copy, bytes):  # a read-only store: made for this request only
            return Response(copy, media_type="image/jpeg", headers=headers)
        return FileResponse(copy, media_type="image/jpeg", headers=headers)

    @app.get("/api/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/stats")
    def stats() -> dict[str, Any]:
        """The store's counts, model and index; `kind` (images or videos) and, for videos, those found unreadable
        since the server started (their thumbnails are the placeholder)."""
        listed = [{"id": i, "path": p, "reason": why} for i, (p, why) in list(unreadable.items())[:MAX_UNREADABLE_LISTED]]
        with engine.reading() as snapshot:
            return {**engine.store.stats(), "index": snapshot.index.summary(), "kind": "videos" if video else "images",
                    **({"unreadable": len(unreadable), "unreadable_videos": listed} if video else {})}

    @app.get("/api/search")
    def search_text(f: Filtered, q: str = Query(..., min_length=1, max_length=1000),
                    k: int = Query(10, ge=1, le=MAX_K), offset: int = Query(0, ge=0, le=MAX_OFFSET),
                    min_score: float | None = None) -> dict[str, Any]:
        """Text -> image; `q` adds and subtracts weighted terms: "beach" - "people", 2:"sunset" + "boat";
        `k` results from `offset` in the ranking (`next`: the next page's offset, or null)."""
        if not q.strip():
            raise HTTPException(422, "empty text query")
        return run(query_vector(q), k, offset, min_score, f)

    @app.post("/api/search/image")
    async def search_image(file: UploadFile, f: Filtered, k: int = Query(10, ge=1, le=MAX_K),
                           offset: int = Query(0, ge=0, le=MAX_OFFSET), min_score: float | None = None,
                           q: Modifier = None) -> dict[str, Any]:
        """Uploaded image -> similar images (multipart field `file`), modified by the terms in `q` if given."""
        if video:
            raise HTTPException(422, "a video store is searched by text (or by a video's \"more like this\")")
        data = await file.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise HTTPException(413, f"upload larger than {max_upload_bytes} bytes")
        async with uploads:  # waiting uploads hold no worker thread, so text searches keep theirs
            query = await run_in_threadpool(embed_upload, data, _short(file.filename or "upload"))
        query = await run_in_threadpool(query_vector, q, query)
        return await run_in_threadpool(run, query, k, offset, min_score, f)

    @app.get("/api/similar/{item_id}")
    def similar(item_id: int, f: Filtered, k: int = Query(10, ge=1, le=MAX_K),
                offset: int = Query(0, ge=0, le=MAX_OFFSET), min_score: float | None = None,
                q: Modifier = None) -> dict[str, Any]:
        """More like this indexed item (the item itself left out), modified by the terms in `q` if given."""
        try:
            query = engine.embedding_of(item_id)
        except InputFileError as exc:
            raise HTTPException(404, str(exc)) from None
        return run(query_vector(q, query), k, offset, min_score, f, exclude={item_id})

    @app.get("/api/duplicates")
    def duplicates(offset: int = Query(0, ge=0), limit: int = Query(20, ge=1, le=MAX_GROUPS),
                   threshold: float = Query(DEFAULT_THRESHOLD, gt=0, le=1), exact_only: bool = False) -> dict[str, Any]:
        """Groups of duplicate images (byte-identical, or near: resized, recompressed, cropped copies), largest
        first: `limit` groups from `offset` (`next`: the next page's offset, or null); each image with its links."""
        try:
            report = duplicates_of(threshold, exact_only)
        except InputFileError as exc:
            raise HTTPException(422, str(exc)) from None
        page = report.groups[offset:offset + limit]
        groups = [{**g.to_json(), "items": [{**it.to_json(), **_links(it, video)} for it in g.items]} for g in page]
        more = offset + limit < len(report.groups)
        return {"groups": groups, "offset": offset, "total": len(report.groups), "next": offset + limit if more else None,
                "images": report.images, "threshold": report.threshold, "exact_only": report.exact_only,
                "candidates": report.candidates, "rejected": report.rejected, "skipped": len(report.skipped),
                "skipped_files": [{"path": p, "reason": r} for p, r in report.skipped[:MAX_GROUPS]]}

    @app.get("/api/items/{item_id}")
    def item(item_id: int) -> dict[str, Any]:
        found_item = found(item_id)
        return {**found_item.to_json(), **_links(found_item, video)}

    @app.get("/api/describe/{item_id}")
    def describe(item_id: int) -> dict[str, Any]:
        """The item's own caption, or else one written by the captioner (image->text for uncaptioned images)."""
        caption = found(item_id).caption
        if caption:
            return {"id": item_id, "caption": caption.splitlines()[0], "generated": False}
        try:
            return {"id": item_id, "caption": engine.describe(item_id), "generated": True}
        except InputFileError as exc:
            raise HTTPException(404, str(exc)) from None

    @app.get("/api/image/{item_id}")
    async def image(item_id: int) -> Response:
        """An indexed image at full size: its file's bytes, or a JPEG of it for formats browsers cannot show (TIFF)."""
        item = await run_in_threadpool(found, item_id)
        if item.ext in thumbs.BROWSER_FORMATS or item.ext not in MEDIA_TYPES:
            return await run_in_threadpool(_stream_item, item, engine.store.roots())
        return await browser_copy(item_id, None)

    @app.get("/api/thumb/{item_id}")
    async def thumb(item_id: int) -> Response:
        """An indexed image's thumbnail, or a video's poster frame: a JPEG whose longest side is at most
        THUMB_SIDE pixels, made once."""
        return await browser_copy(item_id, thumbs.THUMB_SIDE)

    @app.get("/api/video/{item_id}")
    def video_file(item_id: int) -> Response:
        """An indexed video's file, as it is (Range requests answered: `#t=SECONDS` plays it from there)."""
        return _stream_item(found(item_id), engine.store.roots(), VIDEO_TYPES)

    @app.get("/api/file")
    def file(path: str = Query(..., min_length=1, max_length=4096)) -> Response:
        """An indexed image by the path it was indexed under: absolute, or relative to the first indexed root;
        `shard.tar::key.jpg` for a tar member."""
        roots = engine.store.roots()
        if not roots:
            raise HTTPException(404, "nothing indexed")
        if "\0" in path:
            raise HTTPException(400, "a path cannot contain a NUL character")
        outer, sep, member = path.partition("::")
        outer = os.path.normpath(os.path.join(roots[0], outer))  # an absolute path replaces the root
        if not inside_roots(outer, roots):
            raise HTTPException(403, "outside the indexed folders")
        indexed = engine.store.item_by_path(outer + sep + member)
        if indexed is None:
            raise HTTPException(404, "not an indexed video" if video else "not an indexed image")
        return _stream_item(indexed, roots, VIDEO_TYPES if video else MEDIA_TYPES)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return (resources.files("clipworks.search") / "static" / "index.html").read_text(encoding="utf-8")

    return app


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound and listening on `host`:`port` (0: any free port), or one line saying why not.

    Made as a TCP socket by name (IPPROTO_TCP), so that asyncio turns Nagle's algorithm off on every connection
    it accepts (it checks the protocol number): a response's headers and body are written separately, and with
    Nagle on, the body waited for the client's delayed ACK, about 40 ms a request on Linux loopback."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:  # bind first, so a busy port is one line and --port 0 prints the port it got
        sock.bind((host, port))
        sock.listen(2048)
    except (OSError, OverflowError) as exc:
        sock.close()
        raise InputFileError(f"cannot listen on {host}:{port}: {getattr(exc, 'strerror', None) or exc}") from None
    return sock


def serve(engine: SearchEngine, host: str = "127.0.0.1", port: int = 8000, allow_hosts: Sequence[str] = ()) -> None:
    """Serve an opened store until interrupted; bound to anything but loopback, with a token it prints."""
    import uvicorn

    engine.index()  # build or load the index before the first request
    sock = listening_socket(host, port)
    token = secrets.token_urlsafe(24) if is_exposed(host) else None
    app = create_app(engine, allowed_hosts=allowed_hosts_for(host, allow_hosts), token=token)
    url = f"http://{f'[{host}]' if ':' in host else host}:{sock.getsockname()[1]}/"
    if token:
        print(f"clipworks: WARNING: bound to {host}, not loopback: anyone who can reach it and has the token can "
              "search and view the indexed images; put it behind a TLS reverse proxy to leave this machine",
              file=sys.stderr)
        url += f"?token={token}"
    kind = "videos" if engine.poster is not None else "images"
    print(f"clipworks: serving {engine.store.directory} ({len(engine.store)} {kind}) on {url}", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
