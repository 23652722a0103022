"""`clipworks index` (build or update a store), `clipworks search` (query it), `export`, `serve` and `duplicates`."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path

from clipworks.cli.common import add_device_arg, fraction, positive_int, tcp_port
from clipworks.errors import InputFileError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("index", help="index folders / WebDataset tars of images into a search store",
                       description="Embeds new or changed images, drops deleted ones; safe to interrupt and re-run.")
    p.add_argument("paths", nargs="+", help="folders (recursive) or .tar files")
    p.add_argument("--store", required=True, help="store directory (created if missing)")
    p.add_argument("--model", default="default", help="model for a new store (a store keeps the model it was made with)")
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--recall", type=fraction, metavar="R",
                   help="recall@10 the vector index is tuned to reach, measured on a sample of the store "
                        "(kept with the store; default 0.95)")
    p.add_argument("--thumbs", action="store_true",
                   help="also make every missing thumbnail now (else `clipworks serve` makes each when first shown)")
    add_device_arg(p)
    p.set_defaults(run=run_index)

    q = sub.add_parser("search", help="search a store by text, image or embedding",
                       description='clipworks search --store DIR "a red star" | --image FILE | --embedding FILE.npy | --like ID. '
                                   'A query adds and subtracts weighted terms: "beach" - "people", 2:"sunset" + "boat", '
                                   'img:photo.jpg + "at night", --image photo.jpg + "at night" (the vector is the weighted '
                                   'sum of the normalised term embeddings, renormalised)')
    q.add_argument("text", nargs="*", help="a query: text terms and img:PATH terms joined by + and -, each optionally "
                                           "weighted W:; after --image/--embedding/--like it modifies that query")
    q.add_argument("--store", required=True)
    what = q.add_mutually_exclusive_group()
    what.add_argument("--image", help="an image file: find similar images")
    what.add_argument("--embedding", help="a .npy vector in the store's embedding space")
    what.add_argument("--like", type=int, metavar="ID", help="an indexed item's id: more like this")
    q.add_argument("--to-text", action="store_true", help="image->text: rank captions for --image/--like instead")
    q.add_argument("--captions", help="caption bank for --to-text: a file with one caption a line (default: the store's)")
    q.add_argument("--describe", action="store_true",
                   help="write captions with the captioner: for --image/--like, and for results without a caption")
    q.add_argument("--captioner", default="default", help="captioner for --describe: 'default' or a directory")
    q.add_argument("-k", type=positive_int, default=10, help="results to show (default 10)")
    q.add_argument("--min-score", type=float)
    q.add_argument("--folder", help="only images inside this folder")
    q.add_argument("--after", help="only images modified on or after this date (YYYY-MM-DD)")
    q.add_argument("--before", help="only images modified before this date (YYYY-MM-DD)")
    q.add_argument("--ext", help="only these file types, comma-separated (jpg,png)")
    q.add_argument("--taken-after", help="only photos taken on or after this date (EXIF DateTimeOriginal, else the file time)")
    q.add_argument("--taken-before", help="only photos taken before this date")
    q.add_argument("--camera", help="only photos whose EXIF camera model contains this (any case)")
    q.add_argument("--has-gps", action=argparse.BooleanOptionalAction, default=None,
                   help="only photos with (--has-gps) or without (--no-has-gps) EXIF GPS data")
    q.add_argument("--no-collapse", action="store_true", help="keep near-duplicates")
    q.add_argument("--stats", action="store_true", help="print the store's statistics and skipped files")
    q.add_argument("--json", action="store_true", help="print JSON")
    add_device_arg(q)
    q.set_defaults(run=run_search)

    e = sub.add_parser("export", help="export a store's vectors and metadata for a vector database",
                       description="Writes ids.npy, vectors.npy (float32, L2-normalised) and items.jsonl to --out.")
    e.add_argument("--store", required=True)
    e.add_argument("--out", required=True, help="output folder")
    e.set_defaults(run=run_export)

    d = sub.add_parser("duplicates", help="find duplicate and near-duplicate images in a store",
                       description="Byte-identical files (same content hash) and near duplicates (resized, recompressed, "
                                   "slightly cropped copies): each image's nearest neighbours in the vector index whose "
                                   "cosine reaches --threshold and whose 8x8 grayscale layouts agree.")
    d.add_argument("--store", required=True)
    d.add_argument("--threshold", type=fraction, default=None, metavar="T",
                   help="cosine at or above which two images are near-duplicate candidates (default 0.90)")
    d.add_argument("--exact-only", action="store_true", help="only byte-identical files (no embeddings, no layouts)")
    d.add_argument("--json", action="store_true", help="print the report as JSON")
    d.add_argument("--out", metavar="FILE", help="also write the report as JSON to FILE")
    d.set_defaults(run=run_duplicates)

    v = sub.add_parser("serve", help="serve a store: HTTP API (OpenAPI at /openapi.json) and a search page at /")
    v.add_argument("--store", required=True)
    v.add_argument("--host", default="127.0.0.1",
                   help="interface (default: loopback only; any other needs the token printed at start)")
    v.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also accept requests for this Host name (e.g. behind a reverse proxy); repeatable")
    v.add_argument("--port", type=tcp_port, default=8000, help="TCP port (default 8000; 0: any free port)")
    add_device_arg(v)
    v.add_argument("--captioner", default="default", help="writes captions for images without one: 'default' or a directory")
    v.set_defaults(run=run_serve)


def run_export(args: argparse.Namespace) -> int:
    from clipworks.search.store import Store

    paths = Store(args.store, create=False).export(args.out)
    print("\n".join(str(p) for p in paths))
    return 0


def run_duplicates(args: argparse.Namespace) -> int:
    from clipworks.io import atomic_write
    from clipworks.search.duplicates import DEFAULT_THRESHOLD, find_duplicates
    from clipworks.search.store import Store

    store = Store(args.store, create=False)
    report = find_duplicates(store, threshold=args.threshold or DEFAULT_THRESHOLD, exact_only=args.exact_only)
    if args.out:
        atomic_write(args.out, lambda tmp: tmp.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8"))
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
        return 0
    for number, group in enumerate(report.groups, 1):
        print(f"group {number}: {len(group.items)} images, {group.kind}"
              + (f", cosine >= {group.similarity:.3f}" if group.kind == "near" else ""))
        for item in group.items:
            size = f"{item.width}x{item.height}" if item.width else "?"
            print(f"  id {item.id:<6d} {size:>11s} {item.size:>10d} B  {item.path}")
    print(report.summary())
    return 0


def run_serve(args: argparse.Namespace) -> int:
    from clipworks.search.server import serve
    from clipworks.video.index import is_video_store, video_engine

    # A quick check before the store and the model load; serve() itself binds before it says "serving on".
    free_port(args.host, args.port)
    # a video store (made by `clipworks video index`) is served the same way, by its video model, with posters
    engine = video_engine(args.store, device=args.device) if is_video_store(args.store) else _engine(args)
    serve(engine, host=args.host, port=args.port, allow_hosts=args.allow_host)
    return 0


def _engine(args: argparse.Namespace):
    """The store opened for queries, with a describer built from --captioner (loaded on first use; it shares
    the store's CLIP model when the captioner reads it)."""
    from clipworks.captioning.inference import Describer
    from clipworks.search.engine import SearchEngine

    engine = SearchEngine(args.store, device=args.device)
    engine.describer = Describer(args.captioner, device=args.device,
                                 shared=(engine.model_name, engine.model, engine.preprocess))
    return engine


def free_port(host: str, port: int) -> int:
    """Check that `host`:`port` can be listened on now (a one-line error if not); returns the port it got."""
    import socket

    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as exc:
        raise InputFileError(f"--host {host}: {exc.strerror}") from None
    with socket.socket(family, kind) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a port in TIME_WAIT is free
        try:
            s.bind(address)
        except OSError as exc:
            raise InputFileError(f"{host}:{port}: cannot serve there ({exc.strerror})") from None
        return s.getsockname()[1]


def run_index(args: argparse.Namespace) -> int:
    from clipworks.search.indexer import index

    import torch.distributed as dist

    report = index(args.paths, args.store, model_name=args.model, batch_size=args.batch_size, device=args.device)
    if not (dist.is_initialized() and dist.get_rank() != 0):
        print(report.summary())
        _build_vector_index(args.store, args.recall)
        if args.thumbs:
            from clipworks.search.thumbs import make_all

            print(make_all(args.store).summary())
    if dist.is_initialized():
        dist.destroy_process_group()
    return 0


def _build_vector_index(store_dir: str, recall: float | None) -> None:
    """Build (or keep, if current) the store's vector index, tuned to `recall` (None: the store's target)."""
    from clipworks.search.engine import RECALL_META, cached_index
    from clipworks.search.store import Store

    store = Store(store_dir)
    if recall is not None:
        store.set_meta(RECALL_META, str(recall))
    if len(store):
        s = cached_index(store).summary()
        measured = (f"recall@10 {s['recall_at_10']:.3f} on {s['sample_queries']} sample queries" if s["sample_queries"]
                    else "exact")
        params = "".join(f" {name} {value}," for name, value in s["params"].items()).rstrip(",")
        print(f"vector index: {s['index']}{params} ({measured}; target {s['target_recall']})")
    store.close()


def _date(text: str | None, flag: str) -> float | None:
    if text is None:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise InputFileError(f"{flag} {text!r}: expected a date such as 2026-11-23") from None


def run_search(args: argparse.Namespace) -> int:
    import numpy as np

    from clipworks.search.engine import DUPLICATE_COSINE, Filters

    if args.stats:
        from clipworks.search.engine import index_status
        from clipworks.search.store import Store

        store = Store(args.store, create=False)
        print(json.dumps({**store.stats(), "index": index_status(store), "skipped_files": store.skipped()}, indent=2))
        return 0
    engine = _engine(args)
    text = " ".join(args.text)  # the shell took the quotes: "a red star" - "a blue circle" arrives as 3 words
    start = None
    if args.image:
        from clipworks.model.transforms import load_image

        image = load_image(Path(args.image))
        if args.describe:
            print(engine.describe(image=image))
            return 0
        start = engine.embed_image(image)
    elif args.embedding:
        try:
            start = np.load(args.embedding)
        except (OSError, ValueError) as exc:
            raise InputFileError(f"{args.embedding}: not a .npy vector ({exc})") from None
    elif args.like is not None:
        if args.describe:
            print(engine.describe(args.like))
            return 0
        start = engine.embedding_of(args.like)
    elif text.strip():
        if args.to_text:
            raise InputFileError("--to-text ranks captions for an image: give --image or --like")
    else:
        raise InputFileError("give a text query, --image, --embedding or --like")
    query = engine.embed_query(text, start) if text.strip() else start
    if args.to_text:
        bank = None
        if args.captions:
            try:
                bank = Path(args.captions).read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise InputFileError(f"{args.captions}: cannot read ({exc.strerror})") from None
        ranked = engine.image_to_text(query, bank, k=args.k)
        if args.json:
            print(json.dumps([{"caption": c, "score": s} for c, s in ranked], indent=2))
        else:
            for c, s in ranked:
                print(f"{s:7.4f}  {c}")
        return 0
    filters = Filters(args.folder, _date(args.after, "--after"), _date(args.before, "--before"),
                      args.ext.split(",") if args.ext else None, _date(args.taken_after, "--taken-after"),
                      _date(args.taken_before, "--taken-before"), args.camera, args.has_gps)
    hits = engine.search(query, k=args.k, min_score=args.min_score, filters=filters,
                         collapse=None if args.no_collapse else DUPLICATE_COSINE, exclude={args.like} if args.like is not None else None)
    generated = {h.item.id: engine.describe(h.item.id) for h in hits if args.describe and not h.item.caption}
    if args.json:
        print(json.dumps([{**h.to_json(), **({"generated_caption": generated[h.item.id]} if h.item.id in generated else {})}
                          for h in hits], indent=2))
    else:
        for rank, h in enumerate(hits, 1):
            dup = f"  (+{h.duplicates} near-duplicates)" if h.duplicates else ""
            said = f"  [{generated[h.item.id]}]" if h.item.id in generated else ""
            print(f"{rank:3d}  {h.score:7.4f}  id {h.item.id:<6d} {h.item.path}{dup}{said}")
        if not hits:
            print("no results")
    return 0
