"""Data sources: a generated world, scikit-learn's digits, scikit-image's photos, and readers for a user's own
image-caption collections. `open_pairs(spec)` turns a `--data` argument into a data set.

The generated world: `world` (its data sets, and the one import for all its names), `world_scenes` (vocabulary,
scene sampling), `world_render` (drawing), `world_captions` (captions, hard negatives), `styles` (drawing styles
and backdrops). One module per format: `captions` (caption text in any common encoding), `images` (image files
as samples), `folders` (the one hidden-file rule, folder walking, folders of images with .txt captions), `tables`
(.csv, .tsv, .jsonl), `shards` (WebDataset tars), `skips` (the skipped-item tally) and `sources` (the --data
registry). Part of the core: it imports only clipworks.model (image decoding) and clipworks.errors, never an
application."""

from __future__ import annotations

from clipworks.data.sources import open_pairs, register_source


def _world(size: int = 50000, seed: int = 0, split: str = "train", image_size: int = 64,
           min_objects: int = 1, max_objects: int = 3, grayscale: float = 0.0, hard_negatives: bool = False,
           styles: str = "classic", photos: str | None = None, order_focus: float = 0.0):
    """`styles`: classic, train, heldout, all, or style names joined by '+'; `photos`: names joined by '+'."""
    from clipworks.data.world import WorldDataset

    extra = {"photos": photos} if photos else {}
    return WorldDataset(size, seed=seed, split=split, image_size=image_size, n_objects=(min_objects, max_objects),
                        grayscale=grayscale, hard_negatives=hard_negatives, styles=styles, order_focus=order_focus,
                        **extra)


def _digits(split: str = "train", image_size: int = 64):
    from clipworks.data.digits import DigitsDataset

    return DigitsDataset(split=split, image_size=image_size)


register_source("world", _world)
register_source("digits", _digits)

__all__ = ["open_pairs", "register_source"]
