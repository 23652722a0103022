"""Answer questions about images with a trained VQA model: one image (`ask`) or a batch of rendered ones
(`predict`)."""

from __future__ import annotations

import numpy as np
import torch

from clipworks.errors import InputFileError


@torch.no_grad()
def predict(model, images: np.ndarray, questions: list[str], batch_size: int = 256) -> list[str]:
    """The VQA model's answers for uint8 images [N, H, W, 3] at its input size and their questions."""
    from clipworks.vqa.data import to_input

    model.eval()
    mean, std = model.normalisation()
    out: list[str] = []
    for start in range(0, len(questions), batch_size):
        x = to_input(images[start:start + batch_size], mean, std)
        logits = model(x, model.tokenize(questions[start:start + batch_size]))
        out += [model.config.answers[i] for i in logits.argmax(dim=-1).tolist()]
    return out


@torch.no_grad()
def ask(model, image, question: str, top: int = 3) -> list[tuple[str, float]]:
    """The model's `top` answers with probabilities for a PIL image and a question."""
    from clipworks.vqa.model import preprocess_for

    if not question.strip():
        raise InputFileError("empty question")
    model.eval()
    x = preprocess_for(model.config, model.preprocess_config)(image).unsqueeze(0)
    probs = model(x, model.tokenize([question])).softmax(dim=-1)[0]
    order = probs.argsort(descending=True)[:top].tolist()
    return [(model.config.answers[i], float(probs[i])) for i in order]
