"""Evaluation: zero-shot classification, linear and few-shot probes, retrieval metrics, the evaluation data
sets, result reports, and the held-out figures on the generated world (world_tasks, world_report). Each task
module exposes plain functions returning dicts.

Part of the core: it imports model, data and errors, never an application, the cli or an experiment."""
