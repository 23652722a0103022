"""The search half of the README's main job: index a folder (by default, generated world scenes), run ten
queries, and, on the generated world, score them with the scenes' facts (precision@10); `--serve` then opens
the web page on the store.

    ./run.sh demo --search                 # generated scenes
    ./run.sh demo --search ~/Pictures --serve
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

QUERIES = (("red", "star"), ("blue", "circle"), ("green", "triangle"), ("yellow", "square"), ("purple", "heart"),
           ("orange", "cross"), ("pink", "diamond"), ("white", "hexagon"), ("red", "circle"), ("blue", "star"))


def _text(colour: str, shape: str) -> str:
    return f"{'an' if colour[0] in 'aeiou' else 'a'} {colour} {shape}"


def _facts(folder: Path) -> dict[str, dict]:
    path = folder / "facts.jsonl"
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        out[str((folder / record["image"]).resolve())] = record["facts"]
    return out


def _figure(engine, rows: list[tuple[str, list]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    cols = max(len(hits) for _, hits in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(cols * 1.6, len(rows) * 1.8), squeeze=False)
    for r, (query, hits) in enumerate(rows):
        for c in range(cols):
            ax = axes[r][c]
            ax.axis("off")
            if c < len(hits):
                if "::" not in hits[c].item.path:  # tar members are not drawn
                    ax.imshow(Image.open(hits[c].item.path))
                ax.set_title(f"{hits[c].score:.2f}", fontsize=7)
        axes[r][0].text(-0.1, 0.5, query, transform=axes[r][0].transAxes, ha="right", va="center", fontsize=8)
    fig.suptitle("clipworks search: top results per text query", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clipworks.search.demo", description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", help="a folder of images (default: write 1,000 generated scenes)")
    parser.add_argument("--out", type=Path, default=Path("outputs/search-demo"))
    parser.add_argument("--store", type=Path, help="store directory (default: OUT/store)")
    parser.add_argument("--size", type=int, default=1000, help="generated scenes when no folder is given")
    parser.add_argument("--serve", action="store_true", help="serve the page on the store afterwards")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)

    from clipworks.errors import report_errors

    return report_errors(_run, args)


def _run(args: argparse.Namespace) -> int:
    from clipworks.search.engine import SearchEngine
    from clipworks.search.indexer import index

    args.out.mkdir(parents=True, exist_ok=True)
    if args.folder:
        folder = Path(args.folder).expanduser()
    else:
        from clipworks.data.world import write_world

        folder = args.out / "world"
        if not (folder / "facts.jsonl").exists():
            write_world(folder, size=args.size, seed=7, split="all")
    store = args.store or args.out / "store"
    print(index([folder], store).summary())
    engine = SearchEngine(store)
    facts = _facts(folder)
    results, rows = [], []
    print(f"\n{'query':22s} " + ("precision@10" if facts else "top result"))
    for colour, shape in QUERIES:
        query = _text(colour, shape)
        hits = engine.search(engine.embed_text(query), k=10)
        rows.append((query, hits[:6]))
        if facts:
            relevant = [any(o["colour"] == colour and o["shape"] == shape for o in facts[h.item.path]["objects"])
                        for h in hits if h.item.path in facts]
            precision = sum(relevant) / 10
            results.append({"query": query, "precision@10": precision})
            print(f"{query:22s} {precision:.1f}")
        else:
            results.append({"query": query, "top": [h.to_json() for h in hits[:3]]})
            print(f"{query:22s} {hits[0].item.path if hits else '-'}")
    summary = {"folder": str(folder), "store": str(store), "images": len(engine.store), "queries": results}
    if facts:
        summary["mean_precision@10"] = sum(r["precision@10"] for r in results) / len(results)
        print(f"{'mean':22s} {summary['mean_precision@10']:.2f}")
    _figure(engine, rows[:5], args.out / "top_results.png")
    (args.out / "results.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"\nfigure: {args.out / 'top_results.png'}\nresults: {args.out / 'results.json'}")
    if args.serve:
        from clipworks.search.server import serve

        serve(engine, port=args.port)  # no captioner: search imports no application
    else:
        print(f"browse it: clipworks serve --store {store}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
