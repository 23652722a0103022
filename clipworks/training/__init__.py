"""Contrastive training: loss, schedule, deterministic batches, the trainer loop, distributed helpers."""
