"""Training: the one run loop and checkpoint schema every trainer uses (run.py), CLIP's contrastive training
(contrastive.py), its loss, schedule, deterministic batches and distributed helpers, and the default model's
recipe (make_default.py).

Part of the core: it imports model, data, evaluation (the recipe's closing report) and the shared modules
(errors, io), never an application, the cli or an experiment."""
