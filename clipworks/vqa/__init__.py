"""Visual question answering on CLIP grid features (CLIP-ViL): generated questions about the world's scenes,
the co-attention model over a CLIP image tower's grid, training, inference (`inference.ask`), evaluation, the
relation diagnosis, the CLIP-ViL experiment and the shipped default VQA head (pretrained/).

An application: it imports the core (model, data, training, evaluation) and the shared modules (errors, io,
cache, weights), never another application (captioning, video, sketch) nor the cli."""
