"""Why spatial-relation questions sat at chance: three measurements on a CLIP model, written as JSON and markdown.

    python -m clipworks.vqa.diagnose --out reports/vqa/diagnosis [--clip-model default]

(a) Question tokens: do the frozen text tower's per-token features tell "left of" from "right of"? Cosine of
    the features of two questions that differ only in that word, at every position; how much of the
    features' spread the relation word explains; and linear probes for the relation word.
(b) Grid: does the image tower's grid keep where an object is? Linear probes on `forward_grid` at the VQA
    input size for an object's x, its offset inside its grid cell, and which of two objects is further left;
    and how often a relation question's two objects share a grid column (or row), where cells alone cannot tell.
(c) Relation data: balance of answers per relation word, how much the question text alone predicts, and
    whether every answer agrees with where the objects are drawn (centroids of the rendered pixels).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch


OPPOSITE = {"left": "right", "right": "left", "above": "below", "below": "above"}
EXAMPLE = ("is the red circle to the left of the blue square?", "is the red circle to the right of the blue square?")


# ---------------------------------------------------------------- (a) question tokens


def _relation_word(question: str) -> str:
    return next(w for w in ("left", "right", "above", "below") if f" {w} " in question)


def _flip(question: str) -> str:
    word = _relation_word(question)
    return question.replace(f" {word} ", f" {OPPOSITE[word]} ", 1)


def _probe(x: np.ndarray, y: np.ndarray, seed: int = 0) -> float:
    """Held-out accuracy (30%) of a logistic-regression probe on standardised features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xa, xb, ya, yb = train_test_split(x, y, test_size=0.3, random_state=seed, stratify=y)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
    return float(probe.fit(xa, ya).score(xb, yb))


def _explained(x: np.ndarray, labels: np.ndarray) -> float:
    """The share of the features' total variance that lies between the label's class means."""
    total = float(((x - x.mean(0)) ** 2).sum(1).mean())
    between = sum((labels == c).mean() * float(((x[labels == c].mean(0) - x.mean(0)) ** 2).sum()) for c in np.unique(labels))
    return between / total


@torch.no_grad()
def question_token_study(clip, questions: list[str], seed: int = 0) -> dict[str, Any]:
    """(a) on relation questions: per-position cosine of a question and its left/right (above/below) flip,
    the variance share of the relation word, and probes for it (left vs right) from the frozen contextual
    features and from the raw token embeddings the tower starts from."""
    from clipworks.model.tokenizer import Tokenizer

    text = clip.text_tower
    tokenizer = Tokenizer(context_length=text.context_length)
    example_ids = tokenizer(list(EXAMPLE))
    example = text.tokens(example_ids)
    length = int((example_ids[0] != 0).sum())
    words = [tokenizer.decode([t]).strip() for t in example_ids[0, :length].tolist()]
    per_position = torch.nn.functional.cosine_similarity(example[0], example[1], dim=-1)[:length].tolist()

    flipped = [_flip(q) for q in questions]
    ids, flip_ids = tokenizer(questions), tokenizer(flipped)
    feats, flip_feats = text.tokens(ids), text.tokens(flip_ids)
    at = (ids != flip_ids).float().argmax(dim=1)  # the relation word's position
    eot = ids.argmax(dim=1)
    rows = torch.arange(len(questions))
    cos = torch.nn.functional.cosine_similarity(feats, flip_feats, dim=-1)  # [N, L]
    after = torch.stack([cos[i, at[i]:eot[i] + 1].mean() for i in range(len(questions))])
    # the same measure between questions about other objects: how different features are when words do differ
    others = torch.nn.functional.cosine_similarity(feats[rows, at], feats[rows.roll(1), at.roll(1)], dim=-1)

    relation = np.array([_relation_word(q) for q in questions])
    lr = np.isin(relation, ("left", "right"))
    word_feats = feats[rows, at].numpy()
    eot_feats = feats[rows, eot].numpy()
    mask = (ids != 0).unsqueeze(-1).float()
    mean_feats = ((feats * mask).sum(1) / mask.sum(1)).numpy()
    embeddings = text.token_embedding(ids)[rows, at].numpy()
    emb_left, emb_right = text.token_embedding(tokenizer(["left", "right"])[:, 1])
    return {
        "example": {"questions": list(EXAMPLE), "tokens": words, "cosine_per_position": per_position},
        "questions": len(questions),
        "cosine_with_flipped_question": {
            "at_relation_word": float(cos[rows, at].mean()),
            "relation_word_to_end_of_text": float(after.mean()),
            "end_of_text": float(cos[rows, eot].mean()),
        },
        "cosine_between_different_questions_at_relation_word": float(others.mean()),
        "variance_share_of_relation_word": {
            "contextual_features_at_relation_word": _explained(word_feats, relation),
            "raw_token_embeddings": _explained(embeddings, relation),
        },
        "left_right_probe_accuracy": {
            "contextual_at_relation_word": _probe(word_feats[lr], relation[lr], seed),
            "contextual_end_of_text": _probe(eot_feats[lr], relation[lr], seed),
            "contextual_mean_over_tokens": _probe(mean_feats[lr], relation[lr], seed),
            "raw_token_embedding": _probe(embeddings[lr], relation[lr], seed),
        },
        "raw_embedding_cosine_left_right": float(torch.nn.functional.cosine_similarity(emb_left, emb_right, dim=0)),
    }


def relation_questions(size: int, seed: int = 0, split: str = "train", styles: str = "classic") -> list[str]:
    """The relation questions among the first `size` VQA items (one in five), without rendering."""
    from clipworks.vqa.questions import TYPES, VQADataset

    data = VQADataset(size, seed=seed, split=split, styles=styles)
    return [data.item(i)[1].text for i in range(TYPES.index("relation"), size, len(TYPES))]


# ---------------------------------------------------------------- (b) grid position


def _cell(x: float, side: int) -> int:
    return min(int(x * side), side - 1)


def _ridge_r2(x: np.ndarray, y: np.ndarray, seed: int = 0) -> float:
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    xa, xb, ya, yb = train_test_split(x, y, test_size=0.3, random_state=seed)
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-1, 4, 12)))
    return float(model.fit(xa, ya).score(xb, yb))


@torch.no_grad()
def grid_position_study(clip, image_size: int, size: int, styles: str = "classic", seed: int = 0,
                        blocks: tuple[int | None, ...] = (None,)) -> dict[str, Any]:
    """(b) on `size` one-object and `size` two-object scenes: probes on the grid after each of `blocks` image
    tower blocks (None: all) for the object's x, its x offset inside its cell (from that cell's features), and
    which of two objects is further left (from their cells' features and the cells' columns)."""
    from clipworks.data.world import RELATION_MARGIN, WorldDataset, render
    from clipworks.vqa.data import to_input

    pre = clip.config.preprocess
    tower = clip.image_tower.eval()
    one = WorldDataset(size, seed=seed, split="train", image_size=image_size, n_objects=(1, 1), styles=styles)
    two = WorldDataset(size, seed=seed + 1, split="train", image_size=image_size, n_objects=(2, 2), styles=styles)
    scenes = {"one": [one.scene(i) for i in range(size)], "two": [two.scene(i) for i in range(size)]}
    images = {k: np.stack([np.asarray(render(s, image_size).convert("RGB")) for s in v]) for k, v in scenes.items()}
    out: dict[str, Any] = {"styles": styles, "image_size": image_size, "scenes": size}
    for b in blocks:
        rows, cols, channels = tower.grid_shape(image_size, b)
        grid = {k: torch.cat([tower.forward_grid(to_input(v[s:s + 128], pre.mean, pre.std), b)
                              for s in range(0, len(v), 128)]).numpy() for k, v in images.items()}
        xs = np.array([s.objects[0].x for s in scenes["one"]])
        ys = np.array([s.objects[0].y for s in scenes["one"]])
        own = np.stack([grid["one"][i, _cell(ys[i], rows) * cols + _cell(xs[i], cols)] for i in range(size)])
        offset = xs * cols - np.array([_cell(x, cols) for x in xs])
        # two objects further apart than the relation margin: which is further left, from their cells
        pairs, labels, same_column = [], [], []
        for i, s in enumerate(scenes["two"]):
            if len(s.objects) < 2 or abs(s.objects[0].x - s.objects[1].x) < RELATION_MARGIN:
                continue
            a, c = s.objects[0], s.objects[1]
            ca, cc = _cell(a.x, cols), _cell(c.x, cols)
            fa = grid["two"][i, _cell(a.y, rows) * cols + ca]
            fc = grid["two"][i, _cell(c.y, rows) * cols + cc]
            onehot = np.eye(cols)
            for f1, f2, c1, c2, left in ((fa, fc, ca, cc, a.x < c.x), (fc, fa, cc, ca, c.x < a.x)):
                pairs.append(np.concatenate([f1, f2, onehot[c1], onehot[c2]]))
                labels.append(bool(left))
                same_column.append(c1 == c2)
        pairs_x, labels_y, same = np.stack(pairs), np.array(labels), np.array(same_column)
        cell_only = np.where(same, 0.5, 1.0).mean()  # knowing only the cells: a guess when they share a column
        out[f"blocks={b if b is not None else 'all'}"] = {
            "grid": [rows, cols, channels],
            "x_r2_from_whole_grid": _ridge_r2(grid["one"].reshape(size, -1), xs, seed),
            "x_r2_from_mean_pooled_grid": _ridge_r2(grid["one"].mean(1), xs, seed),
            "x_offset_in_cell_r2_from_that_cell": _ridge_r2(own, offset, seed),
            "further_left_probe_accuracy": _probe(pairs_x, labels_y, seed),
            "further_left_probe_accuracy_same_column": _probe(pairs_x[same], labels_y[same], seed) if same.sum() >= 40 else None,
            "further_left_pairs_in_same_column": float(same.mean()),
            "further_left_accuracy_knowing_cells_only": float(cell_only),
        }
    return out


# ---------------------------------------------------------------- (c) relation data


def _drawn_centroids(scene, image_size: int) -> list[tuple[float, float]]:
    """Each object's centroid in [0, 1] image coordinates, from the pixels it changes when drawn alone."""
    from clipworks.data.world import render

    n = len(scene.objects)
    empty = np.asarray(render(scene, image_size, opacity=[0.0] * n).convert("RGB"), np.float32)
    centres = []
    for k in range(n):
        alone = np.asarray(render(scene, image_size, opacity=[float(j == k) for j in range(n)]).convert("RGB"), np.float32)
        weight = np.abs(alone - empty).sum(-1)
        ys, xs = np.mgrid[0:image_size, 0:image_size]
        centres.append((float((weight * (xs + 0.5)).sum() / weight.sum() / image_size),
                        float((weight * (ys + 0.5)).sum() / weight.sum() / image_size)))
    return centres


def relation_data_study(size: int, seed: int = 0, split: str = "train", styles: str = "classic",
                        rendered: int = 60, image_size: int = 128) -> dict[str, Any]:
    """(c) on the relation questions among `size` VQA items: answers per relation word, a text-only baseline
    (the majority answer of the same question text, learnt on half, scored on the other half), and for the
    first `rendered` of them whether the answer agrees with the objects' drawn centroids."""
    from clipworks.vqa.questions import TYPES, VQADataset, relation_truth

    data = VQADataset(size, seed=seed, split=split, styles=styles)
    items = [data.item(i) for i in range(TYPES.index("relation"), size, len(TYPES))]
    balance = Counter((_relation_word(q.text), q.answer) for _, q in items)
    half = len(items) // 2
    seen: dict[str, Counter] = {}
    for _, q in items[:half]:
        seen.setdefault(q.text, Counter())[q.answer] += 1
    rng = random.Random(seed)
    text_only = [(seen[q.text].most_common(1)[0][0] if q.text in seen else rng.choice(("yes", "no"))) == q.answer
                 for _, q in items[half:]]
    unseen_text = np.mean([q.text not in seen for _, q in items[half:]])
    facts_disagree = sum(relation_truth(q.text, data._world.scene(s).facts()) != q.answer for s, q in items)
    drawn_disagree, gaps = 0, []
    for s, q in items[:rendered]:
        scene = data._world.scene(s)
        centres = _drawn_centroids(scene, image_size)
        drawn = scene.facts()
        for o, (cx, cy) in zip(drawn["objects"], centres):
            gaps.append(max(abs(o["x"] - cx), abs(o["y"] - cy)))
            o["x"], o["y"] = cx, cy
        drawn_disagree += relation_truth(q.text, drawn) != q.answer
    return {
        "split": split, "styles": styles, "relation_questions": len(items),
        "answers_per_relation_word": {f"{w} {a}": n for (w, a), n in sorted(balance.items())},
        "text_only_majority_accuracy": float(np.mean(text_only)),
        "test_questions_with_text_unseen_in_first_half": float(unseen_text),
        "answers_disagreeing_with_scene_facts": int(facts_disagree),
        "rendered_questions_checked": min(rendered, len(items)),
        "answers_disagreeing_with_drawn_centroids": int(drawn_disagree),
        "largest_gap_between_fact_and_drawn_centre": float(max(gaps)) if gaps else None,
    }


# ---------------------------------------------------------------- report


def diagnose(clip_model: str = "default", image_size: int = 128, questions: int = 3000, scenes: int = 400,
             styles: tuple[str, ...] = ("classic", "train"), rendered: int = 60, seed: int = 0) -> dict[str, Any]:
    """All three studies for one CLIP model; `questions` VQA items (a fifth of them relations), `scenes` scenes
    per probe set and style set."""
    from clipworks.model.factory import create_model

    clip, _ = create_model(clip_model, device="cpu")
    clip.eval()
    tower = clip.image_tower
    finer = (tower.num_blocks() - 1,) if tower.grid_shape(image_size, tower.num_blocks() - 1)[0] > tower.grid_shape(image_size)[0] else ()
    return {
        "clip_model": clip_model,
        "question_tokens": question_token_study(clip, relation_questions(questions, seed), seed),
        "grid_position": [grid_position_study(clip, image_size, scenes, s, seed, (None, *finer)) for s in styles],
        "relation_data": [relation_data_study(questions, seed, split, s, rendered, image_size)
                          for s in styles for split in ("train", "heldout")],
    }


def _markdown(result: dict[str, Any]) -> str:
    q = result["question_tokens"]
    lines = [f"# Why relation questions were at chance (CLIP model `{result['clip_model']}`)", "",
             "## (a) Frozen question-token features", "",
             f"Example: {' / '.join(repr(s) for s in q['example']['questions'])}", "",
             "| token | " + " | ".join(q["example"]["tokens"]) + " |", "|---" * (len(q["example"]["tokens"]) + 1) + "|",
             "| cosine | " + " | ".join(f"{c:.4f}" for c in q["example"]["cosine_per_position"]) + " |", "",
             f"Over {q['questions']} generated relation questions and their flips (left<->right, above<->below):", ""]
    for k, v in q["cosine_with_flipped_question"].items():
        lines.append(f"- cosine with the flipped question, {k.replace('_', ' ')}: {v:.4f}")
    lines.append(f"- cosine between two different questions at the relation word: "
                 f"{q['cosine_between_different_questions_at_relation_word']:.4f}")
    for k, v in q["variance_share_of_relation_word"].items():
        lines.append(f"- share of the feature variance explained by the relation word, {k.replace('_', ' ')}: {100 * v:.1f}%")
    for k, v in q["left_right_probe_accuracy"].items():
        lines.append(f"- left/right linear probe (held-out accuracy), {k.replace('_', ' ')}: {100 * v:.1f}%")
    lines.append(f"- cosine of the raw token embeddings of 'left' and 'right': {q['raw_embedding_cosine_left_right']:.3f}")
    lines += ["", "## (b) Position in the grid features", ""]
    for g in result["grid_position"]:
        for key, v in g.items():
            if not key.startswith("blocks="):
                continue
            rows, cols, ch = v["grid"]
            lines.append(f"**styles {g['styles']}, {g['image_size']} px, grid after {key.split('=')[1]} blocks "
                         f"({rows}x{cols}x{ch}), {g['scenes']} scenes per probe set**")
            lines.append("")
            for name, value in v.items():
                if name != "grid" and value is not None:
                    lines.append(f"- {name.replace('_', ' ')}: {value:.3f}")
            lines.append("")
    lines += ["## (c) The relation questions themselves", "",
              "| split | styles | questions | answers per word | text-only | facts disagree | drawn disagree (checked) |",
              "|---|---|---|---|---|---|---|"]
    for r in result["relation_data"]:
        answers = ", ".join(f"{k}: {v}" for k, v in r["answers_per_relation_word"].items())
        lines.append(f"| {r['split']} | {r['styles']} | {r['relation_questions']} | {answers} | "
                     f"{100 * r['text_only_majority_accuracy']:.1f}% | {r['answers_disagreeing_with_scene_facts']} | "
                     f"{r['answers_disagreeing_with_drawn_centroids']} ({r['rendered_questions_checked']}) |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("reports/vqa/diagnosis"))
    parser.add_argument("--clip-model", default="default")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--questions", type=int, default=3000, help="VQA items per split (a fifth are relations)")
    parser.add_argument("--scenes", type=int, default=400, help="scenes per grid probe set")
    parser.add_argument("--rendered", type=int, default=60, help="relation questions checked against drawn pixels")
    parser.add_argument("--styles", default="classic,train", help="style sets, comma-separated")
    args = parser.parse_args(argv)
    result = diagnose(args.clip_model, args.image_size, args.questions, args.scenes, tuple(args.styles.split(",")),
                      args.rendered)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "diagnosis.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "diagnosis.md").write_text(_markdown(result))
    print(_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
