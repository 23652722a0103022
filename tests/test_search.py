"""Semantic search: indexing is incremental, crash-safe and skips bad files; queries, filters, image->text."""

from __future__ import annotations

import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import clipworks
from clipworks.data.world import write_world
from clipworks.errors import InputFileError
from clipworks.search.engine import Filters, SearchEngine
from clipworks.search.indexer import index
from clipworks.search.store import STORE_FILE, Store

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model():
    m, pre = clipworks.create_model("default", device="cpu")
    return m, pre


def _index(paths, store, model, **kw):
    return index([str(p) for p in paths], store, model=model[0], preprocess=model[1], progress=False, **kw)


def _facts(folder: Path) -> dict[str, dict]:
    out = {}
    for line in (folder / "facts.jsonl").read_text().splitlines():
        r = json.loads(line)
        out[str((folder / r["image"]).resolve())] = r["facts"]
    return out


def test_index_search_and_skip_corrupt_files(tmp_path, model):
    folder = write_world(tmp_path / "world", size=300, seed=11, split="train")
    (folder / "images" / "broken.png").write_bytes(b"\x89PNG not really")
    (folder / "images" / "empty.jpg").write_bytes(b"")
    report = _index([folder], tmp_path / "store", model)
    assert report.added == 300 and len(report.skipped) == 2
    assert {Path(p).name for p, _ in report.skipped} == {"broken.png", "empty.jpg"}
    store = Store(tmp_path / "store")
    assert len(store) == 300 and len(store.skipped()) == 2
    engine = SearchEngine(tmp_path / "store", model=model[0], preprocess=model[1],
                          tokenizer=clipworks.get_tokenizer(model[0]))
    # image -> image: an indexed image finds itself first, with cosine 1
    some = store.items([5])[0]
    hits = engine.search(engine.embed_image(Image.open(some.path)), k=3, collapse=None)
    assert hits[0].item.id == 5 and hits[0].score == pytest.approx(1.0, abs=1e-4)
    # text -> image: precision@5 on colour-shape queries (the default model, a fixed world)
    facts = _facts(folder)
    precision = []
    for colour, shape in (("yellow", "square"), ("pink", "diamond"), ("blue", "circle")):
        top = engine.search(engine.embed_text(f"a {colour} {shape}"), k=5)
        precision.append(np.mean([any(o["colour"] == colour and o["shape"] == shape for o in facts[h.item.path]["objects"])
                                  for h in top]))
    # ~9 of the 300 scenes hold each pair, so a random top-5 scores about 0.03
    assert np.mean(precision) >= 0.4, precision
    # min score: exactly the unfiltered hits scoring at least it, cut at a score that splits them
    query = engine.embed_text("a yellow square")
    unfiltered = [(h.item.id, h.score) for h in engine.search(query, k=50)]
    threshold = unfiltered[len(unfiltered) // 2][1]
    kept = [(h.item.id, h.score) for h in engine.search(query, k=50, min_score=threshold)]
    assert 0 < len(kept) < len(unfiltered) and kept == [(i, s) for i, s in unfiltered if s >= threshold]
    # image -> text against the store's captions: the image's own caption ranks near the top
    captions = engine.image_to_text(engine.embedding_of(5), k=10)
    assert any(c in some.caption.splitlines() for c, _ in captions)


def test_filters_apply_before_ranking(tmp_path, model):
    for sub in ("a", "b"):
        for k in range(6):
            shade = 40 * min(k, 4)  # b/4 and b/5 hold the same picture (one as png, one as jpg)
            Image.new("RGB", (40, 40), (shade, 200, 30 if sub == "a" else 220)).save(
                _mk(tmp_path / sub / f"{k}.{'png' if k % 2 else 'jpg'}"), quality=100)
    old = time.time() - 10 * 86400
    for p in (tmp_path / "a").iterdir():
        os.utime(p, (old, old))
    _index([tmp_path / "a", tmp_path / "b"], tmp_path / "store", model)
    engine = SearchEngine(tmp_path / "store", model=model[0], preprocess=model[1], tokenizer=clipworks.get_tokenizer(model[0]))
    q = engine.embed_text("a green square")
    in_b = engine.search(q, k=20, filters=Filters(folder=str(tmp_path / "b")), collapse=None)
    assert len(in_b) == 6 and all(Path(h.item.path).parent.name == "b" for h in in_b)
    pngs = engine.search(q, k=20, filters=Filters(ext=["png"]), collapse=None)
    assert len(pngs) == 6 and all(h.item.path.endswith(".png") for h in pngs)
    recent = engine.search(q, k=20, filters=Filters(after=time.time() - 86400), collapse=None)
    assert {Path(h.item.path).parent.name for h in recent} == {"b"}
    # filtered results are the exact top-k among the allowed items
    every = engine.search(q, k=20, collapse=None)
    assert [h.item.id for h in every if Path(h.item.path).parent.name == "b"][:6] == [h.item.id for h in in_b]
    # near-duplicate collapsing: the same picture twice folds into one hit
    collapsed = engine.search(q, k=20, filters=Filters(folder=str(tmp_path / "b")))
    assert len(collapsed) < 6 and sum(h.duplicates for h in collapsed) == 6 - len(collapsed)


def _mk(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_incremental_add_modify_touch_delete(tmp_path, model):
    folder = tmp_path / "pics"
    for k in range(5):
        Image.new("RGB", (32, 32), (50 * k, 0, 0)).save(_mk(folder / f"{k}.png"))
    store_dir = tmp_path / "store"
    assert _index([folder], store_dir, model).added == 5
    Image.new("RGB", (32, 32), (0, 0, 255)).save(folder / "new.png")
    Image.new("RGB", (32, 32), (0, 255, 0)).save(folder / "1.png")  # changed content
    data = (folder / "2.png").read_bytes()
    (folder / "2.png").write_bytes(data)  # new mtime, same content
    os.utime(folder / "2.png", (time.time() + 5, time.time() + 5))
    (folder / "3.png").unlink()
    r = _index([folder], store_dir, model)
    assert (r.added, r.updated, r.unchanged, r.removed) == (1, 1, 3, 1)
    store = Store(store_dir)
    paths = sorted(Path(i.path).name for i in store.items(store.filter_ids()))
    assert paths == ["0.png", "1.png", "2.png", "4.png", "new.png"]
    # the changed file's embedding is its new content's
    pre = model[1]
    import torch

    with torch.inference_mode():
        direct = model[0].encode_image(pre(Image.open(folder / "1.png").convert("RGB"))[None], normalize=True)[0].numpy()
    ids, vectors = store.vectors()
    row = [i for i, it in zip(ids, store.items(ids)) if it.path.endswith("/1.png")][0]
    assert np.allclose(vectors[list(ids).index(row)], direct, atol=1e-5)
    assert _index([folder], store_dir, model).unchanged == 5


def test_kill_minus_nine_then_resume_indexes_every_image_once(tmp_path):
    folder = write_world(tmp_path / "world", size=600, seed=3, split="train")
    store_dir = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "clipworks.cli.main", "index", str(folder), "--store", str(store_dir), "--batch-size", "8"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    count = 0
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (store_dir / STORE_FILE).exists():
            try:
                with sqlite3.connect(store_dir / STORE_FILE, timeout=1) as db:
                    count = db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
            except sqlite3.OperationalError:
                count = 0
            if count >= 40:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 0 < count < 600, f"the kill should land mid-run (count {count})"
    with sqlite3.connect(store_dir / STORE_FILE) as db:
        partial = db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
    assert 0 < partial < 600 and partial % 8 == 0  # whole batches only
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"added {600 - partial}, updated 0, unchanged {partial}" in done.stdout
    with sqlite3.connect(store_dir / STORE_FILE) as db:
        paths = [r[0] for r in db.execute("SELECT path FROM items")]
    assert len(paths) == len(set(paths)) == 600
    assert set(paths) == {str(p.resolve()) for p in (folder / "images").glob("*.png")}


def test_tar_shards_and_model_mismatch(tmp_path, model):
    shard = tmp_path / "shard.tar"
    with tarfile.open(shard, "w") as tar:
        for k in range(3):
            buf = io.BytesIO()
            Image.new("RGB", (32, 32), (80 * k, 10, 10)).save(buf, format="PNG")
            for name, data in ((f"{k:04d}.png", buf.getvalue()), (f"{k:04d}.txt", f"caption {k}".encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    report = _index([shard], tmp_path / "store", model)
    assert report.added == 3
    store = Store(tmp_path / "store")
    item = store.item_by_path(f"{shard.resolve()}::0001.png")
    assert item is not None and item.caption == "caption 1" and item.ext == "png"
    with pytest.raises(InputFileError, match="default"):
        store.bind_model("RN-Tiny-64", 128)
    # export for a vector database: the same vectors, ids and metadata, in the same order
    store.export(tmp_path / "export")
    ids, vectors = store.vectors()
    assert np.array_equal(np.load(tmp_path / "export" / "ids.npy"), ids)
    assert np.array_equal(np.load(tmp_path / "export" / "vectors.npy"), vectors)
    lines = [json.loads(x) for x in (tmp_path / "export" / "items.jsonl").read_text().splitlines()]
    assert [x["id"] for x in lines] == ids.tolist() and lines[1]["caption"] == "caption 1"


def test_search_cli_errors_are_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "clipworks.cli.main", "search", "--store", str(tmp_path / "none"), "a cat"],
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 1 and "no clipworks store" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "clipworks.cli.main", "index", str(tmp_path / "missing"), "--store",
                           str(tmp_path / "s")], env=env, capture_output=True, text=True)
    assert proc.returncode == 1 and "missing: no such file or folder" in proc.stderr


def test_torchrun_two_ranks_build_the_same_store(tmp_path, free_port):
    folder = write_world(tmp_path / "world", size=150, seed=9, split="train")
    (folder / "images" / "bad.png").write_bytes(b"nope")
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    args = ["-m", "clipworks.cli.main", "index", str(folder), "--batch-size", "16"]
    one = subprocess.run([sys.executable, *args, "--store", str(tmp_path / "one")], env=env, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    port = str(free_port())
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port", port, *args,
                          "--store", str(tmp_path / "two")], env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[:3000]
    assert "added 150, updated 0, unchanged 0, removed 0, skipped 1" in two.stdout
    a, b = Store(tmp_path / "one"), Store(tmp_path / "two")
    ia, va = a.vectors()
    ib, vb = b.vectors()
    pa = {it.path: v for it, v in zip(a.items(ia), va)}
    pb = {it.path: v for it, v in zip(b.items(ib), vb)}
    assert pa.keys() == pb.keys() and len(pa) == 150
    assert max(float(np.abs(pa[p] - pb[p]).max()) for p in pa) < 1e-5
    assert len(b.skipped()) == 1


def test_search_demo_scores_ten_queries_on_generated_scenes(tmp_path):
    from clipworks.search.demo import main as search_demo

    assert search_demo(["--out", str(tmp_path), "--size", "200"]) == 0
    result = json.loads((tmp_path / "results.json").read_text())
    assert len(result["queries"]) == 10 and result["images"] == 200
    # each colour-shape pair is in about 3% of scenes: ten random results would score about 0.03
    assert result["mean_precision@10"] > 0.2
    assert (tmp_path / "top_results.png").stat().st_size > 10_000


def test_describe_uncaptioned_images_from_the_cli_and_through_another_clip(tmp_path, model):
    from clipworks.captioning.inference import Describer, caption_images
    from clipworks.captioning.model import load_captioner
    from clipworks.data.world import WorldDataset

    scenes = WorldDataset(3, seed=41, split="train")
    folder = tmp_path / "photos"
    folder.mkdir()
    shard = tmp_path / "shard.tar"
    with tarfile.open(shard, "w") as tar:
        for i in range(3):
            scenes[i].image.save(folder / f"s{i}.png")
            buf = io.BytesIO()
            scenes[i].image.save(buf, format="PNG")
            info = tarfile.TarInfo(f"s{i}.png")
            info.size = len(buf.getvalue())
            tar.addfile(info, io.BytesIO(buf.getvalue()))
    expected = caption_images([scenes[i].image for i in range(3)], load_captioner("default"))
    # a store of the default CLIP: the captioner shares the store's model
    _index([folder], tmp_path / "store", model)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    item = Store(tmp_path / "store").item_by_path(str((folder / "s1.png").resolve()))
    proc = subprocess.run([sys.executable, "-m", "clipworks.cli.main", "search", "--store", str(tmp_path / "store"),
                           "--like", str(item.id), "--describe"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == expected[1], proc.stderr
    proc = subprocess.run([sys.executable, "-m", "clipworks.cli.main", "search", "--store", str(tmp_path / "store"),
                           "a shape", "--describe", "--json", "-k", "3", "--no-collapse"], env=env, capture_output=True, text=True)
    hits = json.loads(proc.stdout)
    assert sorted(h["generated_caption"] for h in hits) == sorted(expected)
    # a store of another CLIP model (random weights): the captioner embeds the files (here tar members) itself
    other, pre = clipworks.create_model("RN-Tiny-64", device="cpu")
    index([str(shard)], tmp_path / "other", model_name="RN-Tiny-64", model=other, preprocess=pre, progress=False)
    engine = SearchEngine(tmp_path / "other", model=other, preprocess=pre, tokenizer=clipworks.get_tokenizer(other),
                          describer=Describer("default", shared=("RN-Tiny-64", other, pre)))
    ids = {Path(it.path.split("::")[1]).stem: it.id for it in engine.store.items(engine.store.vectors()[0].tolist())}
    assert [engine.describe(ids[f"s{i}"]) for i in range(3)] == expected
    shard.unlink()
    engine._descriptions.clear()
    with pytest.raises(InputFileError, match="image not found"):
        engine.describe(ids["s0"])


def test_index_recall_flag_is_kept_with_the_store_and_shown_by_stats(tmp_path, capsys):
    from clipworks.cli.main import main

    folder = write_world(tmp_path / "world", size=20, seed=3, split="train")
    store = str(tmp_path / "store")
    assert main(["index", str(folder), "--store", store, "--recall", "0.9"]) == 0
    assert "vector index: Flat (exact; target 0.9)" in capsys.readouterr().out
    assert main(["search", "--stats", "--store", store]) == 0
    shown = json.loads(capsys.readouterr().out)["index"]
    assert shown == {"kind": "exact", "count": 20, "index": "Flat", "params": {}, "recall_at_10": 1.0,
                     "sample_queries": 0, "target_recall": 0.9, "build_seconds": shown["build_seconds"],
                     "current": True}
    assert main(["index", str(folder), "--store", store]) == 0  # a re-run keeps the store's target
    assert "target 0.9)" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["index", str(folder), "--store", store, "--recall", "1.5"])
