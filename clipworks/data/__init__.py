"""Data: sample photos that ship inside packages, and (later) generated worlds and readers."""
