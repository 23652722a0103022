"""Semantic search: the SQLite store (embeddings and metadata, the source of truth), the one incremental
indexer (images and videos), the ANN index (a rebuildable cache), queries, the server and its page.

Part of the core: it imports model, data, training (rank helpers), evaluation (feature extraction) and the
shared modules (errors, io), never an application; the video application builds video search on it."""
