"""Readers for users' own image-caption data, on real files written into tmp_path."""

from __future__ import annotations

import io
import json
import tarfile
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from torch.utils.data import DataLoader

from clipworks.data import shards as shard_reader
from clipworks.data import sources
from clipworks.data.captions import read_caption_file
from clipworks.data.folders import ImageTextFolder
from clipworks.data.shards import WebDatasetShards, expand_braces
from clipworks.data.skips import SkipReport, collate_samples
from clipworks.data.sources import open_pairs, register_source
from clipworks.data.tables import CaptionTable
from clipworks.data.types import Sample, Skipped
from clipworks.errors import InputFileError


def image_bytes(fmt: str, seed: int = 0, size: int = 48) -> bytes:
    # Noise, so the encoded file is large enough to cut in the middle of its data.
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt)
    return buf.getvalue()


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    return path


def by_key(items) -> dict[str, Sample | Skipped]:
    return {Path(item.key).name: item for item in items}


# ----------------------------------------------------------------------------------------------
# Caption files


def test_read_caption_file_encodings(tmp_path):
    assert read_caption_file(write(tmp_path / "u8.txt", "a dog\r\n\n  a cat  \n")) == ["a dog", "a cat"]
    assert read_caption_file(write(tmp_path / "bom.txt", b"\xef\xbb\xbfna\xc3\xafve")) == ["naïve"]
    assert read_caption_file(write(tmp_path / "u16.txt", "crème brûlée\nsecond".encode("utf-16"))) == [
        "crème brûlée", "second"]
    assert read_caption_file(write(tmp_path / "u16be.txt", b"\xfe\xff" + "Zoë".encode("utf-16-be"))) == ["Zoë"]
    assert read_caption_file(write(tmp_path / "cp.txt", b"caf\xe9 \x93quoted\x94")) == ["café “quoted”"]
    # 0x81 is undefined in cp1252, so only latin-1 can read it.
    assert read_caption_file(write(tmp_path / "l1.txt", b"x\x81y\xe9")) == ["x\x81yé"]


def test_read_caption_file_errors(tmp_path):
    with pytest.raises(InputFileError, match=r"nul\.txt: contains NUL bytes"):
        read_caption_file(write(tmp_path / "nul.txt", b"abc\x00def"))
    with pytest.raises(InputFileError, match=r"blank\.txt: no captions"):
        read_caption_file(write(tmp_path / "blank.txt", " \n\t\n"))
    with pytest.raises(InputFileError, match=r"gone\.txt: cannot read"):
        read_caption_file(tmp_path / "gone.txt")


# ----------------------------------------------------------------------------------------------
# ImageTextFolder


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "photos"
    write(root / "a.png", image_bytes("PNG", 1))
    write(root / "a.txt", "a red square\n\na second caption\n")
    write(root / "sub" / "b.JPG", image_bytes("JPEG", 2))
    write(root / "sub" / "b.txt", "a blue circle".encode("utf-16"))
    write(root / "sub" / "deeper" / "c.png", image_bytes("PNG", 3))
    write(root / "sub" / "deeper" / "c.txt", b"caf\xe9 au lait")
    write(root / "d.jpeg", image_bytes("JPEG", 4))
    write(root / "d.txt", b"\xef\xbb\xbf\xc3\xbcber")
    jpeg = image_bytes("JPEG", 5)
    write(root / "broken.jpg", jpeg[: len(jpeg) // 2])
    write(root / "broken.txt", "cut in half")
    write(root / "fake.jpg", "I am a text file")
    write(root / "fake.txt", "not really an image")
    write(root / "e.png", image_bytes("PNG", 6))
    write(root / "e.txt", b"\x00\x01\x02binary")
    write(root / "nocap.png", image_bytes("PNG", 7))
    write(root / "notes.md", "not data")
    write(root / ".hidden" / "h.png", image_bytes("PNG", 8))
    write(root / ".hidden" / "h.txt", "ignored")
    return root


def test_folder_items_and_captions(folder):
    data = ImageTextFolder(folder)
    assert len(data) == 7
    assert [Path(p).name for p in data.missing_captions] == ["nocap.png"]
    items = by_key(data[i] for i in range(len(data)))
    assert items["a.png"].captions == ["a red square", "a second caption"]
    assert items["b.JPG"].captions == ["a blue circle"]
    assert items["c.png"].captions == ["café au lait"]
    assert items["d.jpeg"].captions == ["über"]
    for name in ("a.png", "b.JPG", "c.png", "d.jpeg"):
        assert isinstance(items[name], Sample)
        assert items[name].image.mode == "RGB" and items[name].image.size == (48, 48)
        assert items[name].key.startswith(str(folder)) and items[name].key.endswith(name)
    assert isinstance(items["broken.jpg"], Skipped)
    assert items["broken.jpg"].reason.startswith("corrupt or truncated image (")
    assert items["fake.jpg"].reason == "not a recognised image file"
    assert items["e.png"].reason.startswith("unreadable caption file (") and "NUL" in items["e.png"].reason


def test_skip_report_summary(folder):
    data = ImageTextFolder(folder)
    report = SkipReport()
    for i in range(len(data)):
        report.add(data[i])
    assert report.count == 3
    assert report.by_reason() == {
        "corrupt or truncated image": 1, "unreadable caption file": 1, "not a recognised image file": 1}
    summary = report.summary()
    assert summary.startswith("skipped 3 of 7 samples: 1 corrupt or truncated image, 1 unreadable caption file, "
                              "1 not a recognised image file; e.g. ")
    assert "broken.jpg" in summary and "e.png" in summary and "fake.jpg" in summary
    assert [Path(s.key).name for s in report.examples(2)] == ["broken.jpg", "e.png"]


def test_skip_report_counts_and_order():
    report = SkipReport(total=1000)
    for key, reason in [("a.jpg", "corrupt or truncated image (bad)"), ("b.png", "no such file"),
                        ("c.jpg", "corrupt or truncated image (worse)")]:
        report.add(Skipped(key, reason))
    assert report.summary() == ("skipped 3 of 1000 samples: 2 corrupt or truncated image, 1 no such file; "
                                "e.g. a.jpg, b.png")
    assert [s.key for s in report.examples()] == ["a.jpg", "b.png", "c.jpg"]
    assert SkipReport().summary() == "skipped 0 samples"
    untotalled = SkipReport()
    untotalled.add(Skipped("x", "no such file"))
    assert untotalled.summary() == "skipped 1 sample: 1 no such file; e.g. x"


def test_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileError, match=r"empty: no images with \.txt captions \(found no jpg/.* among 0 files\)"):
        ImageTextFolder(tmp_path / "empty")
    for i in range(3):
        write(tmp_path / "uncaptioned" / f"{i}.png", image_bytes("PNG", i))
    with pytest.raises(InputFileError, match=r"uncaptioned: no images with \.txt captions "
                                             r"\(found 3 images without captions\)"):
        ImageTextFolder(tmp_path / "uncaptioned")
    with pytest.raises(InputFileError, match=r"nowhere: no such folder"):
        ImageTextFolder(tmp_path / "nowhere")


def test_dataloader_with_collate_never_crashes(folder):
    loader = DataLoader(ImageTextFolder(folder), batch_size=4, collate_fn=collate_samples)
    samples, skipped = [], []
    for good, bad in loader:
        samples += good
        skipped += bad
    assert len(samples) == 4 and len(skipped) == 3


# ----------------------------------------------------------------------------------------------
# CaptionTable


@pytest.fixture
def images(tmp_path) -> Path:
    for i, name in enumerate(["one.png", "two.png", "three.png"]):
        write(tmp_path / "img" / name, image_bytes("PNG", i, size=16))
    return tmp_path


def test_csv_comma_merges_rows(images):
    table = write(images / "captions.csv",
                  'Image,Score,CAPTION\nimg/one.png,1,"a dog, running"\nimg/two.png,2,a cat\n'
                  'img/one.png,3,  a dog again  \nimg/missing.png,4,nothing\n,5,no path\n')
    data = CaptionTable(table)
    assert len(data) == 4
    items = [data[i] for i in range(len(data))]
    assert items[0].captions == ["a dog, running", "a dog again"]
    assert Path(items[0].key) == images / "img" / "one.png"
    assert items[1].captions == ["a cat"]
    assert items[2] == Skipped(str(images / "img" / "missing.png"), "no such file")
    assert items[3] == Skipped(f"{table}:6", "empty image path")


def test_tab_and_semicolon_tables(images):
    tsv = write(images / "c.tsv", "filepath\ttext\nimg/one.png\tone, two, three commas\nimg/two.png\tcat; dog\n")
    assert [CaptionTable(tsv)[i].captions for i in range(2)] == [["one, two, three commas"], ["cat; dog"]]
    tabbed_csv = write(images / "tabbed.csv", "path\tcaption\nimg/three.png\ta, b, c\n")
    assert CaptionTable(tabbed_csv)[0].captions == ["a, b, c"]
    semi = write(images / "semi.csv", "image_path;title\nimg/two.png;a cat, sitting\n")
    assert CaptionTable(semi)[0].captions == ["a cat, sitting"]


def test_table_image_root_and_errors(images, tmp_path):
    elsewhere = write(tmp_path / "tables" / "t.csv", "file,captions\none.png,x\n")
    sample = CaptionTable(elsewhere, image_root=images / "img")[0]
    assert isinstance(sample, Sample) and sample.image.size == (16, 16)
    bad = write(images / "bad.csv", "filename,description\nimg/one.png,x\n")
    with pytest.raises(InputFileError, match=r"bad\.csv: the header row has no an image column \(path, .*\) and no "
                                             r"a caption column .* columns found: 'filename', 'description'"):
        CaptionTable(bad)
    no_caption_col = write(images / "nocap.csv", "path,label\nimg/one.png,1\n")
    with pytest.raises(InputFileError, match=r"has no a caption column .*columns found: 'path', 'label'"):
        CaptionTable(no_caption_col)
    with pytest.raises(InputFileError, match=r"absent\.csv: no such file"):
        CaptionTable(images / "absent.csv")
    with pytest.raises(InputFileError, match="empty file"):
        CaptionTable(write(images / "empty.csv", ""))


def test_jsonl_with_malformed_line(images):
    lines = [
        json.dumps({"image": "img/one.png", "caption": "first"}),
        "{not json",
        "",
        json.dumps({"File": "img/two.png", "Captions": ["a", " ", "b"]}),
        json.dumps(["a", "list"]),
        json.dumps({"caption": "no image"}),
        json.dumps({"image": "img/one.png", "text": "second"}),
    ]
    table = write(images / "c.jsonl", "\n".join(lines) + "\n")
    data = CaptionTable(table)
    items = [data[i] for i in range(len(data))]
    samples = [it for it in items if isinstance(it, Sample)]
    skipped = {it.key: it.reason for it in items if isinstance(it, Skipped)}
    assert [s.captions for s in samples] == [["first", "second"], ["a", "b"]]
    assert set(skipped) == {f"{table}:2", f"{table}:5", f"{table}:6"}
    assert skipped[f"{table}:2"].startswith("malformed JSON line (")
    assert skipped[f"{table}:6"].startswith("no image field (")


# ----------------------------------------------------------------------------------------------
# WebDataset shards


def write_shard(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


GOOD_KEYS = {"0000", "0001", "0100", "dir/0103", "0200", "0201", "0202"}


@pytest.fixture
def shards(tmp_path) -> Path:
    write_shard(tmp_path / "shard-000.tar", [
        ("0000.jpg", image_bytes("JPEG", 0)), ("0000.txt", b"a noisy photo"),
        ("0001.png", image_bytes("PNG", 1)), ("0001.json", json.dumps({"caption": "from json"}).encode()),
        ("0002.jpg", b"\xff\xd8\xff\xe0 definitely not a jpeg"), ("0002.txt", b"bad image"),
    ])
    write_shard(tmp_path / "shard-001.tar", [
        ("0100.png", image_bytes("PNG", 2)), ("0100.txt", "caf\u00e9".encode()),
        ("0101.txt", b"caption without image"),
        ("0102.jpg", image_bytes("JPEG", 3)),
        ("dir/0103.png", image_bytes("PNG", 4)), ("dir/0103.json", json.dumps({"text": ["x", "y"]}).encode()),
    ])
    last = write_shard(tmp_path / "shard-002.tar", [
        item for k in range(200, 205)
        for item in ((f"{k:04d}.png", image_bytes("PNG", k)), (f"{k:04d}.txt", f"caption {k}".encode()))
    ])
    # Cut the last shard in the middle of 0203.png's data.
    data = last.read_bytes()
    offset = data.index(b"0203.png") + 512 + 1000
    last.write_bytes(data[:offset])
    return tmp_path


def sample_key(item) -> str:
    return item.key.split(":", 1)[1]


def test_expand_braces():
    assert expand_braces("s-{000..002}.tar") == ["s-000.tar", "s-001.tar", "s-002.tar"]
    assert expand_braces("{a,b}-{8..10}") == ["a-8", "a-9", "a-10", "b-8", "b-9", "b-10"]
    assert expand_braces("plain.tar") == ["plain.tar"]


def test_shards_single_process(shards):
    data = WebDatasetShards(str(shards / "shard-{000..002}.tar"))
    assert [Path(s).name for s in data.shards] == ["shard-000.tar", "shard-001.tar", "shard-002.tar"]
    items = list(data)
    good = [it for it in items if isinstance(it, Sample)]
    bad = [it for it in items if isinstance(it, Skipped)]
    assert sorted(sample_key(s) for s in good) == sorted(GOOD_KEYS)
    captions = {sample_key(s): s.captions for s in good}
    assert captions["0001"] == ["from json"] and captions["0100"] == ["café"] and captions["dir/0103"] == ["x", "y"]
    assert all(s.image.mode == "RGB" for s in good)
    reasons = {(it.key if it.key.endswith(".tar") else sample_key(it)): it.reason for it in bad}
    assert reasons["0002"].startswith("corrupt or truncated image (")
    assert reasons["0101"].startswith("no image member (found: txt)")
    assert reasons["0102"].startswith("no caption (")
    assert reasons[str(shards / "shard-002.tar")].startswith("corrupt or truncated tar (")
    assert len(bad) == 4
    report = SkipReport()
    for it in items:
        report.add(it)
    assert report.summary().startswith("skipped 4 of 11 samples: ")


def test_shards_glob_and_list(shards):
    by_glob = WebDatasetShards(str(shards / "shard-*.tar"))
    by_list = WebDatasetShards([str(shards / "shard-000.tar"), str(shards / "shard-00[12].tar")])
    assert by_glob.shards == by_list.shards and len(by_glob.shards) == 3
    with pytest.raises(InputFileError, match=r"1 shard\(s\) not found: .*shard-003\.tar"):
        WebDatasetShards(str(shards / "shard-{000..003}.tar"))
    with pytest.raises(InputFileError, match="matched nothing"):
        WebDatasetShards(str(shards / "nope-*.tar"))


def test_shards_dataloader_workers(shards):
    data = WebDatasetShards(str(shards / "shard-*.tar"))
    loader = DataLoader(data, batch_size=3, num_workers=2, collate_fn=collate_samples)
    keys = []
    for good, _ in loader:
        keys += [sample_key(s) for s in good]
    assert sorted(keys) == sorted(GOOD_KEYS)


def test_shard_split_rule(shards, monkeypatch):
    data = WebDatasetShards(str(shards / "shard-*.tar"))
    data.shards = [f"s{i}" for i in range(7)]
    parts = [data.shards_for(r, 2, w, 2) for r in range(2) for w in range(2)]
    assert parts == [["s0", "s4"], ["s2", "s6"], ["s1", "s5"], ["s3"]]
    data.shuffle_shards = True
    data.set_epoch(1)
    shuffled = [s for r in range(2) for w in range(2) for s in data.shards_for(r, 2, w, 2)]
    assert sorted(shuffled) == sorted(data.shards) and len(shuffled) == 7
    # As rank 1 of 2 with one process: only shard 1 (the middle one) is read.
    real = WebDatasetShards(str(shards / "shard-*.tar"))
    monkeypatch.setattr(shard_reader, "_rank_and_world_size", lambda: (1, 2))
    assert {sample_key(s) for s in real if isinstance(s, Sample)} == {"0100", "dir/0103"}


def test_idle_workers_warn(shards, monkeypatch):
    data = WebDatasetShards(str(shards / "shard-*.tar"))
    monkeypatch.setattr(shard_reader, "get_worker_info", lambda: SimpleNamespace(id=0, num_workers=4))
    with pytest.warns(UserWarning, match="3 shards for 1 rank.* 4 worker.*1 reader"):
        list(data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        list(data)  # once per data set


# ----------------------------------------------------------------------------------------------
# open_pairs


def test_open_pairs_dispatch(folder, images, shards):
    assert isinstance(open_pairs(str(folder), seed=3), ImageTextFolder)  # seed is not a folder option
    write(images / "t.csv", "path,caption\none.png,x\n")
    table = open_pairs(str(images / "t.csv"), image_root=str(images / "img"))
    assert isinstance(table, CaptionTable) and isinstance(table[0], Sample)
    wds = open_pairs(str(shards / "shard-{000..002}.tar"), shuffle_shards=True, seed=7)
    assert isinstance(wds, WebDatasetShards) and wds.seed == 7 and wds.shuffle_shards
    assert isinstance(open_pairs(str(shards / "shard-000.tar")), WebDatasetShards)
    assert isinstance(open_pairs(str(shards / "*.tar")), WebDatasetShards)


def test_open_pairs_registry(monkeypatch):
    calls = []

    def toy(split: str = "train", size: int = 10, seed: int = 0, scale: float = 1.0):
        calls.append(dict(split=split, size=size, seed=seed, scale=scale))
        return ["dataset"]

    monkeypatch.setattr(sources, "SOURCES", {})
    register_source("toy", toy)
    assert open_pairs("toy") == ["dataset"]
    open_pairs("toy:split=val,size=50000,seed=0,scale=0.5")
    open_pairs("toy:size=5", seed=9, image_root="ignored")
    assert calls == [dict(split="train", size=10, seed=0, scale=1.0),
                     dict(split="val", size=50000, seed=0, scale=0.5),
                     dict(split="train", size=5, seed=9, scale=1.0)]
    with pytest.raises(InputFileError, match=r"source 'toy' does not take these options"):
        open_pairs("toy:colour=red")
    with pytest.raises(InputFileError, match=r"option 'size' is not key=value"):
        open_pairs("toy:size")
    with pytest.raises(InputFileError, match=r"'nothing-here': no such file or folder; tried .*registered: toy"):
        open_pairs("nothing-here")
    with pytest.raises(ValueError):
        register_source("bad:name", toy)


# ----------------------------------------------------------------------------------------------
# One reader per format: training and search read the same bytes the same way


CAPTION_BYTES = {  # a caption file as Windows Notepad saves it (cp1252), and as UTF-16 with its BOM
    "cp": (b"caf\xe9 \x93quoted\x94\r\nsecond line", ["café “quoted”", "second line"]),
    "u16": ("crème brûlée\nZoë".encode("utf-16"), ["crème brûlée", "Zoë"]),
}


def test_captions_in_cp1252_and_utf16_read_the_same_by_training_and_by_indexing(tmp_path):
    from clipworks.search.indexer import walk as index_walk

    members = []
    for k, (stem, (data, _)) in enumerate(CAPTION_BYTES.items()):
        write(tmp_path / "photos" / f"{stem}.png", image_bytes("PNG", k))
        write(tmp_path / "photos" / f"{stem}.txt", data)
        members += [(f"{stem}.png", image_bytes("PNG", k)), (f"{stem}.txt", data)]
    write_shard(tmp_path / "shard.tar", members)
    expected = {stem: captions for stem, (_, captions) in CAPTION_BYTES.items()}

    def stem(key: str) -> str:
        return Path(key.split("::")[-1].split(":")[-1]).stem

    trained_folder = {stem(s.key): s.captions for s in ImageTextFolder(tmp_path / "photos")}
    trained_shard = {stem(s.key): s.captions for s in WebDatasetShards(str(tmp_path / "shard.tar"))}
    indexed_folder = {stem(e.path): e.metadata()["caption"] for e in index_walk(tmp_path / "photos")}
    indexed_shard = {stem(e.path): e.metadata()["caption"] for e in index_walk(tmp_path / "shard.tar")}
    assert trained_folder == trained_shard == expected
    assert indexed_folder == indexed_shard == {k: "\n".join(v) for k, v in expected.items()}


def test_hidden_files_and_appledouble_forks_are_ignored_everywhere(tmp_path):
    """`._x.png` (a macOS resource fork, not an image) and dot-folders are not data for any reader,
    so nothing counts them as corrupt."""
    from clipworks.data.folders import is_hidden, list_files
    from clipworks.evaluation.datasets import image_folder
    from clipworks.search.indexer import walk as index_walk
    from clipworks.video.data import list_videos
    from clipworks.video.decode import frame_files

    fork = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        "  # an AppleDouble header
    assert is_hidden("._x.png") and is_hidden(".git/a.png") and is_hidden("a/.b/c.png")
    assert not is_hidden("x.png") and not is_hidden("./a/x.png") and not is_hidden("a..b.png")

    # Training's folder reader and the indexer's walk.
    photos = tmp_path / "photos"
    write(photos / "a.png", image_bytes("PNG", 1))
    write(photos / "a.txt", "a photo")
    write(photos / "._a.png", fork)
    write(photos / "._a.txt", fork)
    write(photos / ".thumbs" / "b.png", image_bytes("PNG", 2))
    write(photos / ".thumbs" / "b.txt", "a thumbnail")
    assert [Path(p).name for p, _ in ImageTextFolder(photos).items] == ["a.png"]
    assert [Path(e.path).name for e in index_walk(photos)] == ["a.png"]
    assert [p.name for p in list_files(photos)] == ["a.png", "a.txt"]

    # Tar shards: the training reader and the indexer's tar walk.
    write_shard(tmp_path / "s.tar", [("0.png", image_bytes("PNG", 3)), ("0.txt", b"zero"),
                                     ("._0.png", fork), ("._0.txt", fork), (".x/1.png", image_bytes("PNG", 4))])
    assert [(sample_key(s), type(s)) for s in WebDatasetShards(str(tmp_path / "s.tar"))] == [("0", Sample)]
    assert [e.path.split("::")[1] for e in index_walk(tmp_path / "s.tar")] == ["0.png"]

    # Evaluation's class folders: the fork is not an unreadable image.
    classes = tmp_path / "classes"
    for k, name in enumerate(["cat", "dog"]):
        write(classes / name / f"{name}.png", image_bytes("PNG", 10 + k))
        write(classes / name / f"._{name}.png", fork)
    write(classes / ".Trashes" / "old.png", image_bytes("PNG", 12))
    evaluated = image_folder(classes)
    assert evaluated.classnames == ["cat", "dog"] and len(evaluated.images) == 2 and evaluated.skipped == {}

    # Video folders: hidden videos, hidden frame files and hidden folders are not videos or frames.
    videos = tmp_path / "videos"
    write(videos / "clip.mp4", b"")
    write(videos / "._clip.mp4", fork)
    write(videos / ".cache" / "old.mp4", b"")
    for name in ("f2.png", "f10.png"):
        write(videos / "frames" / name, image_bytes("PNG", 5))
    write(videos / "frames" / "._f1.png", fork)
    write(videos / "forks" / "._f1.png", fork)  # a folder of forks only is not a frame folder
    assert [p.relative_to(videos).as_posix() for p in list_videos(videos)] == ["clip.mp4", "frames"]
    assert [p.name for p in frame_files(videos / "frames")] == ["f2.png", "f10.png"]
