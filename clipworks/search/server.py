"""`clipworks serve`: an HTTP API over a store (FastAPI; OpenAPI spec at /openapi.json) and a search page at /.

Images are served only from inside the store's indexed roots: the real path (symlinks resolved) must lie
under a root's real path, so `../`, absolute paths and symlinks that leave a root are refused with 403.
"""

from __future__ import annotations

import io
import os
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, Response

from clipworks.errors import InputFileError
from clipworks.search.engine import Filters, Hit, SearchEngine
from clipworks.search.store import read_item_bytes

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
MAX_K = 200
MEDIA_TYPES = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "gif": "image/gif",
               "bmp": "image/bmp", "tif": "image/tiff", "tiff": "image/tiff"}


def _date(text: str | None, name: str) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise HTTPException(422, f"{name}: expected a date such as 2026-11-23, got {text!r}") from None


def _hits(hits: list[Hit]) -> list[dict[str, Any]]:
    return [{**h.to_json(), "url": f"/api/image/{h.item.id}"} for h in hits]


def create_app(engine: SearchEngine, max_upload_bytes: int = MAX_UPLOAD_BYTES) -> FastAPI:
    """The API and page for one opened store."""
    app = FastAPI(title="clipworks search", version="1", description="Search a clipworks image store by text or image.")

    def filters(folder: str | None, after: str | None, before: str | None, ext: str | None) -> Filters:
        return Filters(folder or None, _date(after, "after"), _date(before, "before"),
                       [e for e in ext.split(",") if e] if ext else None)

    def run(query, k: int, min_score: float | None, f: Filters, exclude: set[int] | None = None) -> dict[str, Any]:
        try:
            return {"results": _hits(engine.search(query, k=k, min_score=min_score, filters=f, exclude=exclude))}
        except InputFileError as exc:
            raise HTTPException(422, str(exc)) from None

    @app.get("/api/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/stats")
    def stats() -> dict[str, Any]:
        index = engine.index()
        return {**engine.store.stats(), "index": {"kind": index.kind, "vectors": len(index)}}

    @app.get("/api/search")
    def search_text(q: str = Query(..., min_length=1, max_length=1000), k: int = Query(10, ge=1, le=MAX_K),
                    min_score: float | None = None, folder: str | None = None, after: str | None = None,
                    before: str | None = None, ext: str | None = None) -> dict[str, Any]:
        """Text -> image."""
        return run(engine.embed_text(q), k, min_score, filters(folder, after, before, ext))

    @app.post("/api/search/image")
    async def search_image(request: Request, file: UploadFile, k: int = Query(10, ge=1, le=MAX_K),
                           min_score: float | None = None, folder: str | None = None, after: str | None = None,
                           before: str | None = None, ext: str | None = None) -> dict[str, Any]:
        """Uploaded image -> similar images (multipart field `file`)."""
        declared = int(request.headers.get("content-length") or 0)
        if declared > max_upload_bytes + 64 * 1024:
            raise HTTPException(413, f"upload larger than {max_upload_bytes} bytes")
        data = await file.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise HTTPException(413, f"upload larger than {max_upload_bytes} bytes")
        from clipworks.model.transforms import decode_image

        try:
            image = decode_image(io.BytesIO(data), file.filename or "upload")
        except InputFileError as exc:
            raise HTTPException(422, str(exc)) from None
        return run(engine.embed_image(image), k, min_score, filters(folder, after, before, ext))

    @app.get("/api/similar/{item_id}")
    def similar(item_id: int, k: int = Query(10, ge=1, le=MAX_K), min_score: float | None = None,
                folder: str | None = None, after: str | None = None, before: str | None = None,
                ext: str | None = None) -> dict[str, Any]:
        """More like this indexed item (the item itself left out)."""
        try:
            query = engine.embedding_of(item_id)
        except InputFileError as exc:
            raise HTTPException(404, str(exc)) from None
        return run(query, k, min_score, filters(folder, after, before, ext), exclude={item_id})

    @app.get("/api/items/{item_id}")
    def item(item_id: int) -> dict[str, Any]:
        found = engine.store.items([item_id])
        if not found:
            raise HTTPException(404, f"no indexed item with id {item_id}")
        return {**found[0].to_json(), "url": f"/api/image/{item_id}"}

    def serve_file(path: str) -> Response:
        ext = Path(path.split("::", 1)[-1]).suffix.lower().lstrip(".")
        try:
            data = read_item_bytes(path, engine.store.roots())
        except PermissionError:
            raise HTTPException(403, "outside the indexed folders") from None
        except InputFileError:
            raise HTTPException(404, "image not found") from None
        return Response(data, media_type=MEDIA_TYPES.get(ext, "application/octet-stream"),
                        headers={"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"})

    @app.get("/api/describe/{item_id}")
    def describe(item_id: int) -> dict[str, Any]:
        """The item's own caption, or else one written by the captioner (image->text for uncaptioned images)."""
        found = engine.store.items([item_id])
        if not found:
            raise HTTPException(404, f"no indexed item with id {item_id}")
        if found[0].caption:
            return {"id": item_id, "caption": found[0].caption.splitlines()[0], "generated": False}
        try:
            return {"id": item_id, "caption": engine.describe(item_id), "generated": True}
        except InputFileError as exc:
            raise HTTPException(404, str(exc)) from None

    @app.get("/api/image/{item_id}")
    def image(item_id: int) -> Response:
        """An indexed image's bytes (only from inside the indexed roots)."""
        found = engine.store.items([item_id])
        if not found:
            raise HTTPException(404, f"no indexed item with id {item_id}")
        return serve_file(found[0].path)

    @app.get("/api/file")
    def file(path: str = Query(..., min_length=1, max_length=4096)) -> Response:
        """An image by path, absolute or relative to the first indexed root (only from inside the roots)."""
        roots = engine.store.roots()
        if not roots:
            raise HTTPException(404, "nothing indexed")
        full = path if os.path.isabs(path.split("::", 1)[0]) else os.path.join(roots[0], path)
        return serve_file(full)

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        return (resources.files("clipworks.search") / "static" / "index.html").read_text(encoding="utf-8")

    return app


def serve(store_dir: str, host: str = "127.0.0.1", port: int = 8000, device: str | None = None,
          captioner: str = "default") -> None:
    """Open the store and serve until interrupted."""
    import uvicorn

    engine = SearchEngine(store_dir, device=device, captioner=captioner)
    engine.index()  # build or load the index before the first request
    print(f"clipworks: serving {store_dir} ({len(engine.store)} images) on http://{host}:{port}/")
    uvicorn.run(create_app(engine), host=host, port=port, log_level="warning")
