"""Data: safe image decoding, manifests, splits, transforms, datasets, preprocessing, synthetic demo data."""
