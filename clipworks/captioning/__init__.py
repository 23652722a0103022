"""Captioning (ClipCap): a CLIP prefix for a GPT-2-style language model; its tokenizer, training, decoding,
caption metrics and evaluation, and the shipped default captioner (pretrained/).

An application: it imports the core (model, data, training, evaluation) and the shared modules (errors, io,
cache, weights), never another application (vqa, video, sketch) nor the cli."""
