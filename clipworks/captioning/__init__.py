"""ClipCap captioning: a CLIP prefix for a GPT-2-style language model."""
