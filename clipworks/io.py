"""Writing files so that a reader (or a run killed mid-write) sees the old file or the new one, never half of one;
and downloading one the same way, resumable and checked against its SHA-256."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from clipworks.errors import DownloadError


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)` on a temporary file beside `path`, flush it to disk, then rename it over `path`.

    The temporary name is hidden and keeps `path`'s suffix (numpy and faiss pick the format from it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def sha256_file(path: str | os.PathLike) -> str:
    """The hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def sha256_matches(actual: str, expected: str) -> bool:
    """True when `actual` is `expected`, or starts with it where only a prefix is published (open_clip's releases)."""
    return actual == expected if len(expected) == 64 else actual.startswith(expected)


def download(url: str, target: str | os.PathLike, sha256: str | None = None, *,
             check: Callable[[Path], None] | None = None, attempts: int = 3, progress: bool = True,
             timeout: float = 60.0) -> str:
    """Fetch `url` into `target` and return the file's SHA-256.

    The bytes go to `target`.partial, which a dropped connection leaves behind and the next attempt (in this
    call or a later one) resumes with an HTTP Range request. The finished part is checked against `sha256` (full,
    or a published prefix) and by `check(part)` (raising on a bad file), then renamed over `target`; a part that
    fails either check is deleted, so `target` only ever holds a verified file."""
    import http.client
    import urllib.error
    import urllib.request

    from tqdm import tqdm

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".partial")
    size, total, reason = 0, None, "no attempt made"
    for _ in range(max(attempts, 1)):
        done = part.stat().st_size if part.is_file() else 0
        headers = {"User-Agent": "clipworks"}
        if done:
            headers["Range"] = f"bytes={done}-"
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as response:
                resumed = done > 0 and response.status == 206 and \
                    response.headers.get("Content-Range", "").startswith(f"bytes {done}-")
                done = done if resumed else 0  # a server that ignores the range sends the whole file again
                length = response.headers.get("Content-Length")
                total = done + int(length) if length is not None else None
                with open(part, "ab" if resumed else "wb") as out, \
                        tqdm(total=total, initial=done, unit="B", unit_scale=True, unit_divisor=1024,
                             desc=target.name, disable=not progress, leave=False) as bar:
                    while block := response.read(1 << 20):
                        out.write(block)
                        bar.update(len(block))
                    out.flush()
                    os.fsync(out.fileno())
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and done:  # the part is not a prefix of what the server has now
                part.unlink()
                reason = "the server refused to resume"
                continue
            raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}", status=exc.code) from None
        except (http.client.HTTPException, urllib.error.URLError, OSError) as exc:
            reason = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
        size = part.stat().st_size if part.is_file() else 0
        if size and (total is None or size == total):
            break
        reason = f"the connection closed after {size} of {total} bytes" if total else reason
    else:
        if not size:
            raise DownloadError(f"{url}: download failed ({reason})")
        raise DownloadError(f"{url}: download interrupted ({reason}); {size} bytes are kept in {part} and the next "
                            "download resumes from there")
    actual = sha256_file(part)
    if sha256 is not None and not sha256_matches(actual, sha256):
        part.unlink()
        raise DownloadError(f"{url}: the downloaded file's sha256 is {actual} but the published one is {sha256}; "
                            "the download was deleted")
    if check is not None:
        try:
            check(part)
        except Exception:
            part.unlink()
            raise
    os.replace(part, target)
    return actual
