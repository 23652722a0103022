"""Semantic search: an image store, a vector index, queries and a server."""
