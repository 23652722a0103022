"""Video: decoding, a generated video world, CLIP4Clip retrieval and ActionCLIP recognition (models, training,
inference, evaluation), video indexing and search on the core's store, and the shipped default video model
(pretrained/).

An application: it imports the core (model, data, training, evaluation, search) and the shared modules (errors,
io, cache, weights), never another application (captioning, vqa, sketch) nor the cli."""
