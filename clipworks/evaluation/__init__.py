"""Evaluation: zero-shot classification and retrieval metrics (each task module exposes plain functions)."""
