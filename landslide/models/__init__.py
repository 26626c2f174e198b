"""Models: one registry of backbones, the baseline CNN, weight sources, freezing, the classifier, checkpoints."""
