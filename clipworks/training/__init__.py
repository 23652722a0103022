"""Training: the one run loop and checkpoint schema every trainer uses (run.py), CLIP's contrastive training
(contrastive.py), its loss, schedule, deterministic batches and distributed helpers. Never imports an application."""
