"""The search store and the incremental indexer under hostile conditions: a damaged or empty store file, a
read-only store, sidecar edits, a sub-folder then its parent, two indexers at once, phone-sized photos."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import clipworks
from clipworks.cli.main import main
from clipworks.errors import InputFileError
from clipworks.model.transforms import decode_image
from clipworks.search.engine import SearchEngine
from clipworks.search.indexer import index
from clipworks.search.store import STORE_FILE, Store, indexing_lock

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def model():
    return clipworks.create_model("default", device="cpu")


def _index(paths, store, model, **kw):
    return index([str(p) for p in paths], store, model=model[0], preprocess=model[1], progress=False, **kw)


def _pictures(folder: Path, count: int, start: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(start, start + count):
        path = folder / f"{k}.png"
        Image.new("RGB", (40, 32), (37 * k % 256, 90 * k % 256, 200)).save(path)
        paths.append(path)
    return paths


def _rows(store_dir: Path) -> dict[str, tuple[int, bytes, str | None, str | None]]:
    """path -> (id, embedding bytes, caption, extra) straight from the file."""
    store = Store(store_dir, create=False)
    try:
        return {p: (i, e, c, x) for i, p, e, c, x in store.db.execute("SELECT id, path, embedding, caption, extra FROM items")}
    finally:
        store.close()


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line and not line.startswith("indexing:")]
    assert "Traceback" not in err and len(lines) == 1, err  # one line besides the progress bar
    return lines[0]


# ---------------------------------------------------------------- damaged, empty and read-only stores


def test_store_damaged_in_the_middle_is_one_line_saying_how_to_rebuild(tmp_path, model, capsys):
    folder = tmp_path / "pics"
    _pictures(folder, 2)
    store_dir = tmp_path / "store"
    _index([folder], store_dir, model)
    store = Store(store_dir)
    dim = model[0].config.embed_dim
    rng = np.random.default_rng(0)
    store.put([{"path": f"{folder}/fake_{i:05d}.png", "root": str(folder), "folder": str(folder), "ext": "png",
                "size": 1, "mtime": 1.0, "sha256": "0" * 64, "caption": "x" * 200, "extra": {},
                "embedding": rng.normal(size=dim)} for i in range(4000)])
    store.close()
    path = store_dir / STORE_FILE
    size = path.stat().st_size
    assert size > 1_000_000
    with path.open("r+b") as f:  # 200 KB of garbage in the middle, as a bad disk block or a bad copy leaves it
        f.seek(size // 2)
        f.write(np.random.default_rng(1).integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    for call in (lambda: Store(store_dir, create=False).vectors(), lambda: Store(store_dir).known(str(folder))):
        with pytest.raises(InputFileError, match="the store is damaged") as caught:
            call()
        assert f"delete the folder {store_dir}" in str(caught.value) and "clipworks index" in str(caught.value)
    for argv in (["search", "a red square", "--store", str(store_dir)], ["search", "--stats", "--store", str(store_dir)],
                 ["export", "--store", str(store_dir), "--out", str(tmp_path / "exp")],
                 ["index", str(folder), "--store", str(store_dir)]):
        assert main(argv) == 1, argv
        line = _one_error_line(capsys)
        assert line.startswith("clipworks: error: ") and "the store is damaged" in line, (argv, line)


def test_a_zero_byte_store_file_is_refused_not_taken_as_a_new_store(tmp_path, model, capsys):
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    (store_dir / STORE_FILE).write_bytes(b"")
    for create in (True, False):
        with pytest.raises(InputFileError, match=r"empty file \(0 bytes\), not a store"):
            Store(store_dir, create=create)
    folder = tmp_path / "pics"
    _pictures(folder, 1)
    assert main(["index", str(folder), "--store", str(store_dir)]) == 1
    assert "0 bytes" in _one_error_line(capsys)
    assert (store_dir / STORE_FILE).stat().st_size == 0  # left for the user to decide
    assert sorted(p.name for p in store_dir.iterdir()) == ["index.lock", STORE_FILE]


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


READ_ONLY_PROBE = r"""
import sys
from clipworks.errors import InputFileError
from clipworks.search.engine import SearchEngine
from clipworks.search.indexer import index
store, pics = sys.argv[1], sys.argv[2]
engine = SearchEngine(store)
hits = engine.search(engine.embed_text("a blue square"), k=3, collapse=None)
print("HITS", len(hits), len(engine.store))
try:
    index([pics], store, progress=False)
except InputFileError as exc:
    print("INDEX", exc)
"""


def test_a_store_on_a_read_only_mount_is_searched_and_indexing_says_read_only(tmp_path, model):
    """A genuinely read-only bind mount (a private mount namespace; root ignores permission bits)."""
    if not shutil.which("unshare") or subprocess.run(["unshare", "-rm", "true"], check=False, capture_output=True).returncode:
        pytest.skip("no unprivileged mount namespace here: see the forced read-only test below")
    folder = tmp_path / "pics"
    _pictures(folder, 4)
    store_dir = tmp_path / "store"
    _index([folder], store_dir, model)
    (store_dir / "index.lock").unlink()
    _pictures(folder, 1, start=10)  # something new to index
    before = _digest(store_dir)
    assert list(before) == [STORE_FILE]  # no -wal or -shm left to lean on
    script = f"mount --bind -o ro {store_dir} {store_dir} && exec {sys.executable} -c '{READ_ONLY_PROBE}' {store_dir} {folder}"
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], check=False, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "HITS 3 4" in done.stdout, done.stdout
    assert f"INDEX {store_dir}: the store is read-only (Read-only file system)" in done.stdout, done.stdout
    assert _digest(store_dir) == before


def test_queries_open_the_store_read_only_and_never_write_it(tmp_path, model):
    """The read-only path forced through the API in a writable folder (what the mount test checks for real)."""
    folder = tmp_path / "pics"
    _pictures(folder, 3)
    store_dir = tmp_path / "store"
    _index([folder], store_dir, model)
    before = (store_dir / STORE_FILE).read_bytes()
    engine = SearchEngine(store_dir, model=model[0], preprocess=model[1], tokenizer=clipworks.get_tokenizer(model[0]))
    assert len(engine.search(engine.embed_text("a blue square"), k=2, collapse=None)) == 2
    with pytest.raises(InputFileError, match="the store is read-only"):
        engine.store.put([], removed=[str(folder / "0.png")])
    engine.store.close()
    assert (store_dir / STORE_FILE).read_bytes() == before and len(_rows(store_dir)) == 3


# ---------------------------------------------------------------- change detection


def test_sidecar_edits_update_caption_and_metadata_without_re_embedding(tmp_path, model):
    folder = tmp_path / "pics"
    a, b, c = _pictures(folder, 3)
    a.with_suffix(".txt").write_text("a photo of an astronaut in a white suit\n")
    b.with_suffix(".json").write_text('{"camera": "x100"}')
    store_dir = tmp_path / "store"
    assert _index([folder], store_dir, model).added == 3
    first = _rows(store_dir)
    assert first[str(a)][2] == "a photo of an astronaut in a white suit" and first[str(b)][3] == '{"camera": "x100"}'
    later = time.time() + 10
    a.with_suffix(".txt").write_text("an updated caption\n")  # edited
    b.with_suffix(".json").unlink()  # removed
    c.with_suffix(".txt").write_text("a new caption")  # added
    os.utime(a.with_suffix(".txt"), (later, later))
    r = _index([folder], store_dir, model)
    assert (r.added, r.updated, r.unchanged, r.refreshed, r.removed) == (0, 0, 0, 3, 0)
    second = _rows(store_dir)
    assert second[str(a)][2] == "an updated caption" and second[str(b)][3] is None and second[str(c)][2] == "a new caption"
    for p in (a, b, c):  # same item, same embedding: nothing was embedded again
        assert second[str(p)][:2] == first[str(p)][:2]
    # the probe's case: the image touched (same content) and its caption edited again
    a.with_suffix(".txt").write_text("third caption")
    os.utime(a, (later + 5, later + 5))
    r = _index([folder], store_dir, model)
    assert (r.added, r.updated, r.unchanged, r.refreshed) == (0, 0, 2, 1)
    assert _rows(store_dir)[str(a)][2] == "third caption"
    assert "captions/metadata refreshed 1" in r.summary()
    r = _index([folder], store_dir, model)
    assert (r.unchanged, r.refreshed) == (3, 0)


def test_indexing_a_sub_folder_then_its_parent_embeds_nothing_again(tmp_path, model):
    parent = tmp_path / "photos"
    _pictures(parent, 2)
    sub = _pictures(parent / "trip", 3, start=5)
    store_dir = tmp_path / "store"
    assert _index([parent / "trip"], store_dir, model).added == 3
    first = _rows(store_dir)
    r = _index([parent], store_dir, model)
    assert (r.added, r.updated, r.unchanged, r.removed) == (2, 0, 3, 0)
    r = _index([parent / "trip"], store_dir, model)
    assert (r.added, r.updated, r.unchanged, r.removed) == (0, 0, 3, 0)
    r = _index([parent], store_dir, model)
    assert (r.added, r.updated, r.unchanged, r.removed) == (0, 0, 5, 0)
    rows = _rows(store_dir)
    assert all(rows[str(p)][:2] == first[str(p)][:2] for p in sub)  # same ids, same embeddings
    store = Store(store_dir, create=False)
    assert store.roots() == [str(parent.resolve())]  # the items moved to the root they were last indexed from
    store.close()
    sub[0].unlink()  # deleted under the sub-folder: re-indexing the parent drops it
    assert _index([parent], store_dir, model).removed == 1 and len(_rows(store_dir)) == 4


INDEXER = ("import sys; from clipworks.search.indexer import index; "
           "r = index([sys.argv[1]], sys.argv[2], progress=False); print('REPORT', r.added, r.unchanged)")


def test_a_second_indexer_waits_for_the_first_then_finds_everything_unchanged(tmp_path, model):
    folder = tmp_path / "pics"
    _pictures(folder, 12)
    store_dir = tmp_path / "store"
    with indexing_lock(store_dir):  # an indexer at work
        other = subprocess.Popen([sys.executable, "-c", INDEXER, str(folder), str(store_dir)], env=ENV,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        waiting = f"{store_dir}: waiting for another indexer of this store to finish\n"
        lines = iter(other.stderr.readline, "")  # the other process reaches the lock after loading its model
        assert waiting in (line for line in lines if line == waiting), "the second indexer did not wait"
    ours = _index([folder], store_dir, model)  # races the other process for the lock: either order is right
    out, err = other.communicate(timeout=300)
    assert other.returncode == 0, err
    theirs = tuple(int(v) for v in out.split("REPORT")[1].split())
    assert sorted([(ours.added, ours.unchanged), theirs]) == [(0, 12), (12, 0)]
    assert len(_rows(store_dir)) == 12


# ---------------------------------------------------------------- phone-sized photos


def test_reduced_jpeg_decode_embeds_like_the_full_decode(tmp_path, model):
    from skimage import data

    big = Image.fromarray(data.coffee()).resize((4800, 3200), Image.BICUBIC)  # a real photo at phone size
    path = tmp_path / "pics" / "coffee.jpg"
    path.parent.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways, shown turned a quarter
    big.save(path, quality=92, exif=exif)
    clip, preprocess = model
    side = clip.config.preprocess.image_size
    full = decode_image(str(path), "coffee.jpg")
    reduced = decode_image(str(path), "coffee.jpg", min_side=2 * side)
    assert full.size == (3200, 4800) and reduced.info["full_size"] == (3200, 4800)
    assert min(reduced.size) >= 2 * side and reduced.size[0] <= 3200 // 4  # decoded at 1/4 scale or less
    with torch.inference_mode():
        vectors = clip.encode_image(torch.stack([preprocess(full), preprocess(reduced)]), normalize=True)
    cosine = float(vectors[0] @ vectors[1])
    assert cosine >= 0.99, cosine
    _index([path.parent], tmp_path / "store", model)
    item = Store(tmp_path / "store", create=False).item_by_path(str(path))
    assert (item.width, item.height) == (3200, 4800)
