"""scikit-learn's handwritten digits: a fixed train/test split, consistent labels and captions, ink on paper."""

from __future__ import annotations

import re

import numpy as np
import pytest

from clipworks.data.digits import CLASS_NAMES, DigitsDataset


@pytest.fixture(scope="module")
def splits():
    return DigitsDataset("train"), DigitsDataset("test")


def test_split_is_complete_disjoint_and_fixed(splits):
    train, test = splits
    assert len(train) + len(test) == 1797 and len(test) == 359
    train_keys = {train[i].key for i in range(len(train))}
    test_keys = {test[i].key for i in range(len(test))}
    assert not train_keys & test_keys and len(train_keys | test_keys) == 1797
    assert set(train.labels.tolist()) == set(test.labels.tolist()) == set(range(10))
    again = DigitsDataset("test")
    assert again[7].key == test[7].key and np.array_equal(np.asarray(again[7].image), np.asarray(test[7].image))


def test_labels_and_captions_agree(splits):
    for data in splits:
        for i in range(0, len(data), 37):
            sample = data[i]
            label = sample.facts["label"]
            assert sample.facts["name"] == CLASS_NAMES[label] and label == int(data.labels[i])
            for caption in sample.captions:
                mentioned = set(re.findall(r"[a-z]+|\d", caption)) & (set(CLASS_NAMES) | set("0123456789"))
                assert mentioned in ({CLASS_NAMES[label]}, {str(label)}), caption
    assert "a handwritten seven" in next(
        data[i].captions for data in splits for i in range(len(data)) if data[i].facts["label"] == 7
    )


def test_images_are_dark_ink_on_light_paper(splits):
    sample = splits[0][0]
    img = np.asarray(sample.image)
    assert sample.image.mode == "RGB" and img.shape == (64, 64, 3)
    assert img[:4, :4].min() > 200 and img.min() < 80
    assert DigitsDataset("train", image_size=32)[0].image.size == (32, 32)


def test_bad_split_is_named():
    with pytest.raises(ValueError, match="split"):
        DigitsDataset("validation")
