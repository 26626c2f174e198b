"""Inference, on its own floor: the device (device), the evaluation transform a model card prescribes
(transform), batch prediction over a loader (batch) and the :class:`~landslide.inference.predictor.Predictor`
that sweeps (local and Ray) and the HTTP endpoint share. Imported by training, evaluation, inventory, serve
and ray_jobs; imports none of them."""
