"""The search server under concurrent load (real HTTP on loopback): concurrent answers equal sequential ones,
queries during an index update see the store before or after it (never in between), the text-embedding cache
follows the model, and accepted connections have Nagle's algorithm off. Nothing here is timed (see
benchmarks/serve_load.py for the figures)."""

from __future__ import annotations

import copy
import http.client
import json
import shutil
import socket
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

import clipworks
from clipworks.data.world import WorldDataset, write_world
from clipworks.evaluation.features import embed_texts
from clipworks.search.engine import SearchEngine
from clipworks.search.indexer import index
from clipworks.search.server import create_app, listening_socket
from clipworks.search.store import Store

QUERIES = [f"{n} {colour} {shape}" for n in ("a", "two") for colour in ("red", "blue", "yellow", "green")
           for shape in ("star", "circle", "square")]


@pytest.fixture(scope="module")
def model():
    model, pre = clipworks.create_model("default", device="cpu")
    return model, pre, clipworks.get_tokenizer(model)


@pytest.fixture(scope="module")
def served(tmp_path_factory, model):
    """A store of 80 scenes, served as `serve` serves it (its listening socket, uvicorn) from a thread."""
    import uvicorn

    net, pre, tokenizer = model
    tmp = tmp_path_factory.mktemp("load")
    folder = write_world(tmp / "world", size=80, seed=9, split="train")
    index([str(folder)], tmp / "store", model=net, preprocess=pre, progress=False)
    engine = SearchEngine(tmp / "store", model=net, preprocess=pre, tokenizer=tokenizer)
    engine.index()
    sock = listening_socket("127.0.0.1", 0)
    srv = uvicorn.Server(uvicorn.Config(create_app(engine), log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.05)
    yield {"port": sock.getsockname()[1], "engine": engine, "server": srv, "folder": folder, "store": tmp / "store"}
    srv.should_exit = True
    thread.join(timeout=10)


class Client:
    """One keep-alive connection, as a browser or the load benchmark keeps one."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def get(self, path: str, **params) -> tuple[int, dict]:
        self.conn.request("GET", path + "?" + urllib.parse.urlencode(params))
        response = self.conn.getresponse()
        return response.status, json.loads(response.read())


def page(body: dict) -> tuple:
    """What a search answer says: the results by path (ids change when an item is indexed again), with their
    scores, and the total."""
    return tuple((r["path"], round(r["score"], 4)) for r in body["results"]), body["total"]


def test_accepted_connections_have_nagle_off(served):
    client = Client(served["port"])
    assert client.get("/api/health") == (200, {"status": "ok"})  # the connection stays open (keep-alive)
    sockets = [c.transport.get_extra_info("socket") for c in served["server"].server_state.connections]
    assert sockets and all(s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) for s in sockets)
    client.conn.close()


def test_concurrent_queries_equal_sequential_ones(served, model):
    net, _, tokenizer = model
    engine, port = served["engine"], served["port"]
    requests = [{"q": q, "k": 5} for q in QUERIES] + [{"q": q, "k": 4, "offset": 4} for q in QUERIES[:6]] \
        + [{"q": f'"{q}" - "a green circle"', "k": 5} for q in QUERIES[:6]] + [{"q": q, "k": 5, "ext": "png"} for q in QUERIES[:3]]
    # the truth: each text embedded on its own (no cache) and ranked in this thread, one query after another
    truth = []
    for r in requests:
        terms = [t.strip().strip('"') for t in r["q"].split(" - ")]
        vecs = embed_texts(net, tokenizer, terms).numpy()
        query = vecs[0] - vecs[1] if len(vecs) == 2 else vecs[0]
        hits = engine.search(query, k=r["k"], offset=r.get("offset", 0))
        truth.append(tuple((h.item.path, round(h.score, 4)) for h in hits))
    sequential = [Client(port).get("/api/search", **r) for r in requests]
    assert [page(body)[0] for _, body in sequential] == truth
    order = np.random.default_rng(0).permutation(np.repeat(np.arange(len(requests)), 4))  # each one 4 times
    mine = threading.local()  # one keep-alive connection per client thread

    def ask(i: int) -> tuple[int, int, dict]:
        if not hasattr(mine, "client"):
            mine.client = Client(port)
        return (i, *mine.client.get("/api/search", **requests[i]))

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, order.tolist()))
    assert len(answers) == 4 * len(requests)
    for i, status, body in answers:
        assert status == 200 and page(body) == page(sequential[i][1]), requests[i]


def test_queries_during_index_updates_see_the_store_before_or_after(served, model, tmp_path):
    """Updates of the store (each one transaction) while 4 clients query: every answer is the answer of one
    version of the store, never a mix (a ranking from one version with items or a total from another)."""
    net, pre, _ = model
    engine, port, store_dir = served["engine"], served["port"], served["store"]
    query = "a red star"
    writer = Store(store_dir)
    ids, vectors = writer.vectors()
    q = engine.embed_text(query)
    top = [engine.store.items([h.item.id])[0] for h in engine.search(q, k=3)]  # removed in state B
    rng = np.random.default_rng(1)
    noise = rng.standard_normal((3, len(q))).astype(np.float32)
    noise -= np.outer(noise @ q, q)  # orthogonal to the query: each new item scores 1/sqrt(1 + 0.36) against it
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    new = []
    for j in range(3):  # state B adds 3 items close to the query (and not near-duplicates of each other)
        vec = q + 0.6 * noise[j]
        new.append({"path": str(served["folder"] / f"new{j}.png"), "root": top[0].root, "folder": str(served["folder"]),
                    "ext": "png", "size": 1, "mtime": 1.0, "sha256": f"{j:064d}", "embedding": vec / np.linalg.norm(vec)})
    old_rows = [{**it.to_json(), "embedding": vectors[np.searchsorted(ids, it.id)]} for it in top]

    def state() -> tuple:
        client = Client(port)  # a new connection: the server closes one idle for 5 s
        answer = page(client.get("/api/search", q=query, k=6)[1])
        client.conn.close()
        return answer

    before = state()
    writer.put(new, removed=[it.path for it in top])
    after = state()
    assert before != after and before[1] == after[1] and {p for p, _ in after[0][:3]} == {r["path"] for r in new}
    writer.put(old_rows, removed=[r["path"] for r in new])
    assert state() == before  # the same paths, vectors and total again (under new ids)

    stop = threading.Event()
    seen: list[tuple] = []
    failures: list[str] = []

    def ask() -> None:
        client = Client(port)
        while not stop.is_set():
            status, body = client.get("/api/search", q=query, k=6)
            if status != 200:
                failures.append(f"HTTP {status}: {body}")
            else:
                seen.append(page(body))

    def answered(count: int) -> None:
        """Wait for `count` more answers: with 4 clients, the last of 5 was asked after the update before it."""
        goal = len(seen) + len(failures) + count
        while len(seen) + len(failures) < goal and all(t.is_alive() for t in threads):
            time.sleep(0.005)

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for _ in range(10):  # back and forth: each put is one transaction, so one version step
            writer.put(new, removed=[it.path for it in top])
            answered(5)
            writer.put(old_rows, removed=[r["path"] for r in new])
            answered(5)
        # and a real incremental index run, adding scenes of red stars (one batch: one transaction)
        extra = served["folder"] / "extra"
        extra.mkdir()
        scenes = WorldDataset(6, seed=77, split="train")
        for i in range(6):
            scenes[i].image.save(extra / f"scene{i}.png")
        index([str(served["folder"])], store_dir, model=net, preprocess=pre, progress=False)
        answered(5)
    finally:
        stop.set()
        for t in threads:
            t.join()
        writer.close()
    final = state()
    assert not failures, failures[:3]
    assert final[1] == before[1] + 6  # the added scenes are counted
    unexpected = [s for s in seen if s not in (before, after, final)]
    assert not unexpected, unexpected[:2]
    assert len(seen) >= 105 and {before, after, final} <= set(seen)  # every state was seen, mid-update
    shutil.rmtree(extra)  # the next run of the indexer (none here) would drop them; the store keeps its 6 extra items


def test_text_cache_follows_the_model_and_not_the_index(served, model):
    net, pre, tokenizer = model
    engine = SearchEngine(served["store"], model=net, preprocess=pre, tokenizer=tokenizer, text_cache=2)
    text = "a red star"
    first = engine.embed_text(text)
    assert np.allclose(first, embed_texts(net, tokenizer, [text]).numpy()[0], atol=1e-6)
    assert not first.flags.writeable  # shared between queries: nobody may change it in place
    assert engine.embed_text(text) is first and (engine.texts.hits, engine.texts.misses) == (1, 1)
    # the index changing does not change a text's embedding: still answered from the cache, still right
    engine.index()
    version = engine.store.version
    writer = Store(served["store"])
    ids, vectors = writer.vectors()
    item = writer.items([int(ids[0])])[0]
    writer.put([{**item.to_json(), "embedding": vectors[0]}])
    writer.close()
    assert engine.store.version == version + 1
    assert engine.embed_text(text) is first and engine.texts.hits == 2
    # another model (other weights): a miss, and the new model's embedding
    other = copy.deepcopy(net)
    with torch.no_grad():
        other.text_tower.token_embedding.weight.mul_(-1.0)
    engine.model = other
    changed = engine.embed_text(text)
    assert engine.texts.misses == 2 and np.allclose(changed, embed_texts(other, tokenizer, [text]).numpy()[0], atol=1e-6)
    assert not np.allclose(changed, first, atol=1e-3)
    # weights changed in place are seen once the model is assigned again
    with torch.no_grad():
        other.text_tower.token_embedding.weight.mul_(-1.0)  # back to the first weights
    engine.model = other
    assert np.array_equal(engine.embed_text(text), first) and engine.texts.misses == 2  # the first entry again
    # at most `text_cache` entries, the least recently used dropped first
    for t in ("a blue circle", "a green square", "a blue circle"):
        engine.embed_text(t)
    assert len(engine.texts) == 2 and engine.texts.misses == 4
    # a query in the algebra uses the same cache for its text terms; with the cache off, the same vectors
    off = SearchEngine(served["store"], model=net, preprocess=pre, tokenizer=tokenizer, text_cache=0)
    q = '"a blue circle" - "a red star"'
    assert np.allclose(engine.embed_query(q), off.embed_query(q), atol=1e-6) and len(off.texts) == 0


def test_each_thread_reads_on_its_own_connection_and_reading_pins_a_version(served):
    reader = Store(served["store"], create=False)
    connections, versions = [], []
    writer = Store(served["store"])
    ids, vectors = writer.vectors()
    item = writer.items([int(ids[0])])[0]

    def read() -> None:
        connections.append(reader.db)
        with reader.reading():
            before = reader.version
            writer.put([{**item.to_json(), "embedding": vectors[0]}])  # committed meanwhile, by another connection
            versions.append((before, reader.version, len(reader)))
        versions.append((reader.version,))

    for _ in range(2):
        t = threading.Thread(target=read)
        t.start()
        t.join()
    writer.close()
    reader.close()
    assert len({id(c) for c in connections}) == 2 and connections[0] is not connections[1]
    (v0, pinned, _), (v1,), (v2, pinned2, _), (v3,) = versions
    assert pinned == v0 and v1 == v0 + 1 and v2 == v1 and pinned2 == v2 and v3 == v2 + 1
