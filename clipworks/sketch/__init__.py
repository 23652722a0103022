"""Sketching (CLIPasso): Bézier strokes through a differentiable rasteriser against CLIP losses, their
initialisation (saliency, masks), SVG/PNG output and the abstraction experiment.

An application: it imports the core (model, data, evaluation) and the shared modules (errors), never another
application (captioning, vqa, video) nor the cli."""
