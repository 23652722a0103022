"""Sketching (CLIPasso): Bézier strokes through a differentiable rasteriser against CLIP losses."""
