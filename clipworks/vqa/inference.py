"""Answer questions about images with a trained VQA model: image files with their questions (`ask_many`, and
`ask` for one), every row of a question table (`answer_rows`), or a batch of rendered images (`predict`)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from clipworks.data.tables import IMAGE_COLUMNS, TABLE_EXTENSIONS, TableRow
from clipworks.data.types import Skipped
from clipworks.errors import ContextLengthError, InputFileError

QUESTION_COLUMNS = {"image": IMAGE_COLUMNS, "question": ("question", "text")}


def _logits(model, x: torch.Tensor, questions: Sequence[str]) -> torch.Tensor:
    device = next(model.parameters()).device
    return model(x.to(device), model.tokenize(list(questions)).to(device))


@torch.no_grad()
def predict(model, images: np.ndarray, questions: list[str], batch_size: int = 256) -> list[str]:
    """The VQA model's answers for uint8 images [N, H, W, 3] at its input size and their questions."""
    from clipworks.vqa.data import to_input

    model.eval()
    mean, std = model.normalisation()
    out: list[str] = []
    for start in range(0, len(questions), batch_size):
        logits = _logits(model, to_input(images[start:start + batch_size], mean, std), questions[start:start + batch_size])
        out += [model.config.answers[i] for i in logits.argmax(dim=-1).tolist()]
    return out


def check_question(model, question: str) -> None:
    """Raise a one-line error for a question the model cannot take: empty, or longer than its text context."""
    if not isinstance(question, str):
        raise InputFileError("no question" if question is None else f"question is not text (a {type(question).__name__})")
    if not question.strip():
        raise InputFileError("empty question")
    try:
        model.tokenize([question])
    except ContextLengthError:
        preview = question[:40] + ("..." if len(question) > 40 else "")
        raise ContextLengthError(f"question longer than the text tower's context length of "
                                 f"{model.text_tower.context_length} tokens ({preview!r})") from None


@torch.no_grad()
def ask_many(model, images: Sequence, questions: Sequence[str], top: int = 3,
             batch_size: int = 64) -> list[list[tuple[str, float]]]:
    """The model's `top` answers with probabilities, best first, for each (PIL image, question) pair, in order.
    Every question is checked before any is answered; forward passes take `batch_size` pairs at a time."""
    from clipworks.vqa.model import preprocess_for

    if len(images) != len(questions):
        raise ValueError(f"{len(images)} images but {len(questions)} questions")
    for question in questions:
        check_question(model, question)
    model.eval()
    transform = preprocess_for(model.config, model.preprocess_config)
    out: list[list[tuple[str, float]]] = []
    for start in range(0, len(questions), batch_size):
        x = torch.stack([transform(image) for image in images[start:start + batch_size]])
        probs = _logits(model, x, questions[start:start + batch_size]).softmax(dim=-1)
        best, index = probs.topk(min(top, probs.shape[-1]), dim=-1)
        out += [[(model.config.answers[i], p) for i, p in zip(row_index, row_best)]
                for row_index, row_best in zip(index.tolist(), best.tolist())]
    return out


def ask(model, image, question: str, top: int = 3) -> list[tuple[str, float]]:
    """The model's `top` answers with probabilities for a PIL image and a question."""
    return ask_many(model, [image], [question], top=top)[0]


def read_questions(path: str | os.PathLike) -> list[TableRow | Skipped]:
    """The rows of a question table: a .jsonl (one object a line) or .csv/.tsv (header row), each naming an
    image (column image, path, file, filepath or image_path) and a question (column question or text)."""
    from clipworks.data.tables import read_table_text, table_rows

    path = os.fspath(path)
    text = read_table_text(path, "question table", TABLE_EXTENSIONS)
    rows = list(table_rows(path, text, QUESTION_COLUMNS, required=("image", "question")))
    if not rows:
        raise InputFileError(f"{path}: no rows (expected one image and question a row)")
    return rows


def answer_rows(model, rows: Sequence[TableRow | Skipped], folder: str | os.PathLike, top: int = 3,
                batch_size: int = 64, report=None, progress: bool = True) -> Iterator[dict]:
    """One JSON-ready record per row, in row order: {"image", "question", "answers": [[answer, p], ...]}, or
    {"image", "question", "skipped": reason} for a row that cannot be answered (no such image, a corrupt one, an
    empty or over-long question, a missing field). Relative image paths resolve against `folder`; images are
    decoded `batch_size` rows at a time; skips go to `report` (a SkipReport) keyed "table:line (image)"."""
    from clipworks.data.images import skip_reason
    from clipworks.data.tables import map_rows, resolve_path
    from clipworks.model.transforms import load_image

    def prepare(row: TableRow | Skipped) -> tuple[dict, object]:
        if isinstance(row, Skipped):
            return {"image": None, "question": None}, row
        image, question = row.values["image"], row.values["question"]
        record = {"image": image, "question": question}
        if not isinstance(image, str) or not image.strip():
            return record, Skipped(row.key, "empty image path")
        key, path = f"{row.key} ({image})", resolve_path(image.strip(), folder)
        try:
            check_question(model, question)
            return record, (load_image(path), question)
        except InputFileError as exc:
            return record, Skipped(key, skip_reason(exc, path))
        except ContextLengthError as exc:
            return record, Skipped(key, str(exc))

    def infer(pairs: list) -> list:
        answers = ask_many(model, [image for image, _ in pairs], [q for _, q in pairs], top=top, batch_size=batch_size)
        return [[list(pair) for pair in ranked] for ranked in answers]

    return map_rows(rows, prepare, infer, "answers", batch_size=batch_size, report=report, progress=progress,
                    desc="answering", unit="question")
