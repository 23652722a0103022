"""Experiments that measure the core's claims by training and evaluating models (`python -m
clipworks.experiments.NAME`): the CLIP paper's claims (claims.py, also `clipworks eval claims`) and effective
robustness (robustness.py).

An entry point, like the cli and `clipworks.demo`: nothing imports it but the cli. Its experiments import the
core (model, data, training, evaluation) and the shared modules, never an application."""
