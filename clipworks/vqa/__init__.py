"""Visual question answering on CLIP grid features (CLIP-ViL)."""
