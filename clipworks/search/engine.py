"""Queries over a store: text->image, image->image, embedding->image, weighted sums of text and image terms
(query.py's algebra) and image->text, with metadata filters applied before ranking, a minimum score and
near-duplicate collapsing."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from clipworks.cache import weights_hash
from clipworks.errors import InputFileError
from clipworks.evaluation.features import embed_images, embed_texts
from clipworks.io import atomic_write
from clipworks.search.ann import DEFAULT_RECALL, VectorIndex, read_index_meta
from clipworks.search.query import QueryError, combine, parse_query
from clipworks.search.store import Item, Moments, Store, read_item_bytes

INDEX_PREFIX = "index"  # <store>/index.faiss, index.json, index.ids.npy: a cache of the store's vectors
RECALL_META = "ann_recall"  # store meta key: the recall@10 target the index is tuned to
DUPLICATE_COSINE = 0.98  # results closer than this to a better one are collapsed into it
TEXT_CACHE_SIZE = 4096  # text embeddings kept for repeated queries (2 KB each at dim 512)


def recall_target(store: Store) -> float:
    """The recall@10 the store's index is tuned to: set by `clipworks index --recall`, else DEFAULT_RECALL."""
    return float(store.get_meta(RECALL_META) or DEFAULT_RECALL)


def cached_index(store: Store, ids: np.ndarray | None = None, vectors: np.ndarray | None = None) -> VectorIndex:
    """The store's vector index: its cache files when they match the store's version and recall target,
    else built from the store's embeddings (and saved, unless the store is read-only)."""
    prefix = store.directory / INDEX_PREFIX
    stamp = store.directory / f"{INDEX_PREFIX}.version"
    version, target = store.version, recall_target(store)
    index = None
    if stamp.exists() and stamp.read_text().strip() == str(version):
        try:
            index = VectorIndex.load(prefix)
        except InputFileError:
            index = None  # a damaged cache is rebuilt
        if index is not None and index.tuning.target_recall == target:
            return index
    if ids is None or vectors is None:
        ids, vectors = store.vectors()
    if index is not None:
        index.retune(vectors, target)  # the vectors are unchanged, only the target moved
    else:
        index = VectorIndex.build(vectors, ids, recall=target)
    if os.access(store.directory, os.W_OK):  # else a read-only store: the index stays in memory
        index.save(prefix)
        atomic_write(stamp, lambda tmp: tmp.write_text(str(version)))
    return index


def index_status(store: Store) -> dict[str, Any] | None:
    """The saved index's record (kind, faiss string, parameters, measured recall@10, sample size) and whether
    it is current; None when no index has been built yet."""
    prefix = store.directory / INDEX_PREFIX
    if not Path(f"{prefix}.json").exists():
        return None
    meta = read_index_meta(f"{prefix}.json")
    stamp = store.directory / f"{INDEX_PREFIX}.version"
    built_at = stamp.read_text().strip() if stamp.exists() else None
    record = {k: meta.get(k) for k in ("kind", "count", "index", "params", "recall_at_10", "sample_queries",
                                       "target_recall", "build_seconds")}
    return {**record, "current": built_at == str(store.version) and meta.get("target_recall") == recall_target(store)}


@dataclass
class Filters:
    """Metadata filters, applied before ranking: folder prefix, modification time range, extensions, and a
    photo's date taken range, camera model (a part of it, any case) and GPS data (True: has, False: has not)."""

    folder: str | None = None
    after: float | None = None
    before: float | None = None
    ext: list[str] | None = None
    taken_after: float | None = None
    taken_before: float | None = None
    camera: str | None = None
    has_gps: bool | None = None

    def any(self) -> bool:
        return any(v is not None and v != "" and v != [] for v in dataclasses.asdict(self).values())


@dataclass
class Moment:
    """Where in a video a query matches best: the sampled frame whose own embedding is nearest to it."""

    frame: int  # its number in the source
    seconds: float | None  # its time (None: a folder of frames without a frame rate)
    score: float  # cosine of the frame's embedding and the query

    def to_json(self) -> dict[str, Any]:
        return {"frame": self.frame, "seconds": None if self.seconds is None else round(self.seconds, 3),
                "score": round(self.score, 6)}


def best_moment(moments: Moments, query: np.ndarray) -> Moment:
    """The moment of `moments` (an item's frames) whose embedding best matches the unit vector `query`."""
    scores = moments.embeddings @ np.asarray(query, dtype=np.float32).reshape(-1)
    best = int(np.argmax(scores))
    seconds = float(moments.seconds[best])
    return Moment(int(moments.frames[best]), None if np.isnan(seconds) else seconds, float(scores[best]))


@dataclass
class Hit:
    item: Item
    score: float
    duplicates: int = 0  # near-duplicates collapsed into this hit
    moment: Moment | None = None  # a video's best-matching moment (None: an image, or no moments recorded)

    def to_json(self) -> dict[str, Any]:
        return {"score": round(self.score, 6), "duplicates": self.duplicates, **self.item.to_json(),
                "moment": self.moment.to_json() if self.moment else None}


@dataclass(frozen=True)
class Snapshot:
    """The vector index and the vectors of one store version; never changed once made (an update makes a new one)."""

    version: int
    index: VectorIndex
    vectors: dict[int, np.ndarray]  # by item id


class TextEmbeddings:
    """Text -> unit embedding for repeated queries, the `size` most recently used, for one model's weights:
    entries are keyed by the weights' hash with the text, so another model (or new weights) never reads them."""

    def __init__(self, size: int = TEXT_CACHE_SIZE) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # held for dict operations only, never while embedding
        self.hits = self.misses = 0

    def embed(self, model, tokenizer, weights: str, texts: Sequence[str]) -> list[np.ndarray]:
        """Embeddings of `texts` (read-only arrays), those not kept computed in one batch by `model`."""
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for text in texts:
                vec = self._entries.get((weights, text))
                if vec is not None:
                    self._entries.move_to_end((weights, text))
                    found[text] = vec
            self.hits += len(found)
        missing = list(dict.fromkeys(t for t in texts if t not in found))
        if missing:
            for text, vec in zip(missing, embed_texts(model, tokenizer, missing).numpy()):
                vec.setflags(write=False)  # shared by every query that repeats the text
                found[text] = vec
            with self._lock:
                self.misses += len(missing)
                for text in missing if self.size > 0 else ():
                    self._entries[(weights, text)] = found[text]
                while len(self._entries) > self.size:
                    self._entries.popitem(last=False)
        return [found[t] for t in texts]

    def __len__(self) -> int:
        return len(self._entries)


class SearchEngine:
    """A store opened for queries, with its model and a vector index rebuilt when the store has changed.

    Safe to query from many threads at once: each query reads the store on its own connection inside one read
    transaction and uses the immutable `Snapshot` built for that same store version, so a query during an update
    sees the store either before or after it, whole. Only rebuilding a snapshot is done by one thread at a time."""

    def __init__(self, store_dir: str | Path, device: str | None = None, model=None, preprocess=None, tokenizer=None,
                 describer: Callable[[Any], str] | None = None, poster: Callable[[str], Any] | None = None,
                 text_cache: int = TEXT_CACHE_SIZE) -> None:
        self.store = Store(store_dir, create=False)
        # describer(PIL image) -> caption, for `describe`: given by the caller (the CLI builds one from a
        # captioner), so that search needs no captioning code.
        self.describer = describer
        # poster(path) -> PIL image standing for an item that is not an image (a video's frame), for thumbnails:
        # given by the caller (the video application), so that search needs no video code; None: an image store.
        self.poster = poster
        self._descriptions: dict[tuple[int, str], str] = {}
        model_name = self.store.get_meta("model")
        if model_name is None:
            raise InputFileError(f"{store_dir}: the store is empty (run `clipworks index PATH --store {store_dir}`)")
        if model is None and model_name.startswith("video:"):
            raise InputFileError(f"{store_dir}: a video store (made by `clipworks video index`); "
                                 "query it with `clipworks video search`")
        if model is None:
            from clipworks.model.factory import create_model, get_tokenizer

            model, preprocess = create_model(model_name, device=device)
            tokenizer = get_tokenizer(model)
        self.texts = TextEmbeddings(text_cache)
        self.model, self.preprocess, self.tokenizer = model, preprocess, tokenizer
        self.model_name = model_name
        self._build_lock = threading.Lock()
        self._snapshot: Snapshot | None = None

    @property
    def model(self):
        return self._model

    @model.setter
    def model(self, model) -> None:
        """A new model: text embeddings are then kept under its weights' hash (those of the old one go unused).
        Weights changed in place are seen when the model is assigned again."""
        self._model = model
        self._weights: str | None = None  # hashed on the first text embedded

    def _weights_key(self) -> str:
        if self._weights is None:
            self._weights = weights_hash(self._model)
        return self._weights

    # ------------------------------------------------------------ the index cache

    @contextlib.contextmanager
    def reading(self) -> Iterator[Snapshot]:
        """The snapshot of the store's current version, with the store's reads in the block (on this thread)
        pinned to that same version: what one query (or a page and its total) reads together."""
        with self.store.reading():
            yield self._snapshot_of(self.store.version)

    def _snapshot_of(self, version: int) -> Snapshot:
        snapshot = self._snapshot
        if snapshot is not None and snapshot.version == version:
            return snapshot  # the common case: no lock
        with self._build_lock:  # one thread rebuilds; the others wanting this version wait for it
            snapshot = self._snapshot
            if snapshot is not None and snapshot.version == version:
                return snapshot
            ids, vectors = self.store.vectors()  # in the caller's read transaction: exactly this version
            built = Snapshot(version, cached_index(self.store, ids, vectors), dict(zip(ids.tolist(), vectors)))
            if snapshot is None or version > snapshot.version:  # a reader that began before an update keeps the newer
                self._snapshot = built
            return built

    def index(self) -> VectorIndex:
        """The vector index, loaded from its cache file or rebuilt if the store moved on since."""
        with self.reading() as snapshot:
            return snapshot.index

    # ------------------------------------------------------------ embeddings of queries

    def embed_text(self, text: str) -> np.ndarray:
        """A text's unit embedding (a read-only array; repeated texts come from the engine's cache)."""
        if not text.strip():
            raise InputFileError("empty text query")
        return self.texts.embed(self.model, self.tokenizer, self._weights_key(), [text])[0]

    def embed_image(self, image) -> np.ndarray:
        return embed_images(self.model, self.preprocess, [image]).numpy()[0]

    def embed_query(self, query: str, start: np.ndarray | None = None, read_files: bool = True) -> np.ndarray:
        """The unit vector of a query in query.py's algebra: Σ weight·(normalised term embedding), renormalised.
        `start` (an image's or an item's embedding) is a first term of weight 1, so "+ at night" modifies it;
        with `read_files=False` (a server), `img:` terms are refused instead of read from this machine's disk."""
        from clipworks.model.transforms import load_image

        terms = parse_query(query)
        dim = int(self.store.get_meta("dim") or 0)
        if start is not None and np.asarray(start).size != dim:
            raise InputFileError(f"query embedding has {np.asarray(start).size} dimensions; the store's model has {dim}")
        weights = [1.0] if start is not None else []
        vectors = [np.asarray(start, dtype=np.float32).reshape(-1)] if start is not None else []
        texts = [t for t in terms if t.kind == "text"]
        by_text = dict(zip([t.value for t in texts], self.texts.embed(self.model, self.tokenizer, self._weights_key(),
                                                                      [t.value for t in texts])))
        for number, term in enumerate(terms, 1):
            if term.kind == "image":
                if not read_files:
                    raise QueryError(f"query {query!r}: term {number} (img:{term.value}): image paths are not read here; "
                                     "upload the image and give the rest of the query with it")
                vectors.append(self.embed_image(load_image(term.value)))
            else:
                vectors.append(by_text[term.value])
            weights.append(term.weight)
        return combine(weights, np.stack(vectors), query)

    def embedding_of(self, item_id: int) -> np.ndarray:
        """The stored embedding of an indexed item ("more like this")."""
        with self.reading() as snapshot:
            if item_id not in snapshot.vectors:
                raise InputFileError(f"no indexed item with id {item_id}")
            return snapshot.vectors[item_id]

    # ------------------------------------------------------------ queries

    def search(self, query: np.ndarray, k: int = 10, min_score: float | None = None, filters: Filters | None = None,
               collapse: float | None = DUPLICATE_COSINE, exclude: set[int] | None = None, offset: int = 0) -> list[Hit]:
        """Top-k items by cosine similarity to `query`, best first; with `offset`, the k after the first `offset`
        (a page: consecutive pages are consecutive slices of one ranking). A video's hit has its best moment."""
        query = np.asarray(query, dtype=np.float32).reshape(1, -1)
        dim = int(self.store.get_meta("dim") or 0)
        if query.shape[1] != dim:
            raise InputFileError(f"query embedding has {query.shape[1]} dimensions; the store's model has {dim}")
        query = query / max(float(np.linalg.norm(query)), 1e-12)
        with self.reading() as snapshot:
            allowed = self.store.filter_ids(**dataclasses.asdict(filters)) if filters and filters.any() else None
            if allowed is not None and not len(allowed):
                return []
            depth = offset + k
            available = len(snapshot.index) if allowed is None else len(allowed)
            fetch = min(available, (depth + len(exclude or ())) * (4 if collapse else 1) + 8)
            while True:
                hits, complete = self._rank(snapshot, query, fetch, allowed, depth, min_score, collapse, exclude)
                if complete or fetch >= available:
                    hits = hits[offset:]
                    moments = self.store.moments([h.item.id for h in hits])
                    for hit in hits:
                        if hit.item.id in moments:
                            hit.moment = best_moment(moments[hit.item.id], query)
                    return hits
                fetch = min(available, fetch * 4)  # near-duplicates or deleted items used up the candidates: look deeper

    def _rank(self, snapshot: Snapshot, query: np.ndarray, fetch: int, allowed: np.ndarray | None, depth: int,
              min_score: float | None, collapse: float | None, exclude: set[int] | None) -> tuple[list[Hit], bool]:
        """The first `depth` hits among the `fetch` nearest candidates, and whether the ranking is complete
        (`depth` hits, or the rest fall below `min_score`)."""
        scores, ids = snapshot.index.search(query, fetch, allowed_ids=allowed)
        hits: list[Hit] = []
        kept = np.empty((depth, query.shape[1]), np.float32)  # vectors of the hits so far, for near-duplicate folding
        items = {it.id: it for it in self.store.items(ids[0].tolist())}
        for score, item_id in zip(scores[0].tolist(), ids[0].tolist()):
            if item_id < 0 or item_id not in items or (exclude and item_id in exclude):
                continue
            if min_score is not None and score < min_score:
                return hits, True
            vec = snapshot.vectors.get(item_id)
            if collapse and vec is not None and hits:
                sims = kept[:len(hits)] @ vec
                j = int(np.argmax(sims))
                if sims[j] >= collapse:
                    hits[j].duplicates += 1
                    continue
            kept[len(hits)] = vec if vec is not None else 0.0
            hits.append(Hit(items[item_id], float(score)))
            if len(hits) == depth:
                return hits, True
        return hits, False

    def ranked_count(self, filters: Filters | None = None, exclude: set[int] | None = None) -> int:
        """How many items a query with these filters ranks (before `min_score` and near-duplicate folding)."""
        exclude = exclude or set()
        with self.reading() as snapshot:
            if filters and filters.any():
                ranked = self.store.filter_ids(**dataclasses.asdict(filters))
                return len(ranked) - int(np.isin(np.fromiter(exclude, np.int64, len(exclude)), ranked).sum())
            return len(snapshot.vectors) - sum(1 for i in exclude if i in snapshot.vectors)

    def image_to_text(self, image_embedding: np.ndarray, captions: list[str] | None = None, k: int = 5) -> list[tuple[str, float]]:
        """The best captions for an image: from `captions`, or else from the store's own captions."""
        if captions is None:
            bank = sorted({line for _, text in self.store.captions() for line in text.splitlines() if line.strip()})
            if not bank:
                raise InputFileError("the store has no captions (.txt beside the images); give a caption list")
        else:
            bank = [c for c in captions if c.strip()]
            if not bank:
                raise InputFileError("the caption list is empty")
        scores = embed_texts(self.model, self.tokenizer, bank).numpy() @ np.asarray(image_embedding, dtype=np.float32)
        order = np.argsort(-scores)[:k]
        return [(bank[i], float(scores[i])) for i in order]

    # ------------------------------------------------------------ image -> caption

    def describe(self, item_id: int | None = None, image=None) -> str:
        """A caption written by the describer for an indexed item (remembered per file content) or a PIL image."""
        import io

        from clipworks.model.transforms import decode_image

        if self.describer is None:
            raise InputFileError("no captioner to describe images with")
        key = None
        if item_id is not None:
            found = self.store.items([item_id])
            if not found:
                raise InputFileError(f"no indexed item with id {item_id}")
            key = (item_id, found[0].sha256)
            if key in self._descriptions:
                return self._descriptions[key]
            image = decode_image(io.BytesIO(read_item_bytes(found[0].path, self.store.roots())), found[0].path)
        elif image is None:
            raise InputFileError("describe: give an item id or an image")
        caption = self.describer(image)
        if key is not None:
            self._descriptions[key] = caption
        return caption
