"""The CLIP model and its pieces: architectures as data (config.py, configs/), the image towers with their feature
API (image_tower.py: grid, intermediates, trunk/head split), the text tower, the tokenizer, preprocessing, checkpoint
reading in every supported layout (checkpoint/), published weights by tag (pretrained_tags.py) and `create_model`.

It imports only torch, its own modules and the shared `clipworks.errors` and `clipworks.io`; applications use the
towers through the feature API and never reach into their attributes."""
