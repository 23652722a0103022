"""Video: decoding, a generated video world, CLIP4Clip retrieval and ActionCLIP recognition, video search."""
