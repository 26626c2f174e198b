"""landslide: find landslides in aerial and satellite imagery.

The library imports no Ray; ``ray_jobs/`` and ``serve/`` wrap it.
"""

__version__ = "0.1.0"

CLASSES = ("non_landslide", "landslide")
"""Class names by index: the model's single logit is the score of index 1 (landslide)."""
