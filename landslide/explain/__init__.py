"""Explanations: Grad-CAM heat maps, attention statistics and TP/FP/FN/TN galleries."""
