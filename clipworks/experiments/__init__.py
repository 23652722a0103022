"""Experiments that measure the core's claims by training and evaluating models (`python -m
clipworks.experiments.NAME`). They may import the core (model, data, training, evaluation), never an application."""
