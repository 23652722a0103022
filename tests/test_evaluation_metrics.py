"""Known answers for the metrics the README's figures rest on."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import clipworks
from clipworks.evaluation.features import embed_texts
from clipworks.evaluation.retrieval import retrieval_metrics
from clipworks.evaluation.zeroshot import accuracy, build_classifier


def test_retrieval_ranks_with_several_captions_per_image():
    images = torch.eye(3)
    # captions 0,1 describe image 0; caption 2 image 1; caption 3 image 2
    texts = torch.tensor([[1.0, 0, 0], [0, 0.9, 0.1], [0, 1.0, 0], [0.8, 0, 0.6]])
    m = retrieval_metrics(images, texts, torch.tensor([0, 0, 1, 2]), ks=(1, 2))
    # text->image ranks: caption0 ->1, caption1 -> image0 is 3rd (0 < 0.1 < 0.9), caption2 ->1, caption3 -> 2nd
    assert m["text_to_image_R@1"] == 0.5 and m["text_to_image_R@2"] == 0.75
    assert m["text_to_image_median_rank"] in (1.0, 2.0) and abs(m["text_to_image_mean_rank"] - 7 / 4) < 1e-6
    # image->text: image0 best caption rank 1 (caption0 or 3 tie at 1.0 vs 0.8 -> caption0 first);
    # image1: captions sorted 2 (1.0), 1 (0.9) -> rank 1; image2: caption3 (0.6) first -> rank 1
    assert m["image_to_text_R@1"] == 1.0


def test_accuracy_topk_and_per_class_recall():
    features = torch.eye(4)[:, :3]  # the last row scores 0 for every class
    classifier = torch.eye(3)
    labels = torch.tensor([0, 1, 2, 2])
    result = accuracy(features, classifier, labels, topk=(1, 3))
    assert result["top1"] == 0.75 and result["top3"] == 1.0
    assert abs(result["mean_per_class_recall"] - (1 + 1 + 0.5) / 3) < 1e-6


def test_classifier_is_the_normalised_mean_of_prompt_embeddings():
    torch.manual_seed(0)
    model, _ = clipworks.create_model("RN-Tiny-64", device="cpu")
    tokenizer = clipworks.get_tokenizer(model)
    templates = ["a {}.", "a photo of a {}."]
    weights = build_classifier(model, tokenizer, ["star", "heart"], templates)
    star = embed_texts(model, tokenizer, ["a star.", "a photo of a star."])
    assert torch.allclose(weights[:, 0], F.normalize(star.mean(0), dim=0), atol=1e-6)
    assert weights.shape == (model.config.embed_dim, 2)
    assert not torch.allclose(weights[:, 0], weights[:, 1])
