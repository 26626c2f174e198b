"""Sweeps adapted to the swept region without labels (``sweep.adapt``; docs/sweeps.md).

- **AdaBN** (before scoring): the model's BatchNorm statistics re-estimated on a seeded random sample of the
  swept tiles (:func:`landslide.inference.adapt.adapt_batchnorm`); the adapted model is saved in the output
  folder as ``adapted_model/`` (its card says how it was made) and scores every tile, so the Ray actors, a
  resumed run and a reader of the inventory all see the same model and version.
- **Prior shift and calibration** (when the inventory is written): the landslide share of the swept tiles
  estimated by EM on the probabilities (Saerens et al. 2002) and the threshold moved to it; temperature-scaled
  probabilities (the card's validation fit). Both only change the decision rule and the reported
  probabilities, never the scores in the shards, so they can be switched on or off on a finished sweep.

No label is read anywhere here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import numpy as np
import pandas as pd

from landslide import storage
from landslide.config import SweepAdaptConfig
from landslide.errors import DataError
from landslide.evaluation.metrics import apply_temperature, prior_shift_threshold
from landslide.inference.adapt import adapt_batchnorm
from landslide.models.card import ModelCard
from landslide.models.checkpoint import CARD_FILE, read_card, save_checkpoint

log = logging.getLogger(__name__)

ADAPTED_MODEL = "adapted_model"
"""The AdaBN-adapted model's folder inside a sweep's output."""


def adabn_sample(tiles: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """``n`` tiles (all, if fewer) drawn at random without replacement, seeded."""
    return tiles.sample(n=min(n, len(tiles)), random_state=seed)


def adapted_model(output: str, predictor, tiles: pd.DataFrame, adapt: SweepAdaptConfig, batch_size: int,
                  read: Callable[[pd.DataFrame], dict]) -> str:
    """The URI of the model a sweep scores with: the predictor's own when ``adapt.batchnorm`` is off; else
    ``output/adapted_model``, made now (AdaBN on :func:`adabn_sample` of ``tiles``, read with ``read``, which
    returns :func:`~landslide.inventory.sweep.read_tiles` batches) or reused when an earlier run of this sweep
    made it from the same model. ``predictor`` (a :class:`~landslide.inference.predictor.Predictor`) is left
    as it was. DataError when none of the sampled tiles is readable."""
    if not adapt.batchnorm:
        return predictor.model_uri
    uri = storage.join(output, ADAPTED_MODEL)
    source = predictor.card
    if storage.exists(storage.join(uri, CARD_FILE)):
        made = read_card(uri).adaptation or {}
        if (made.get("source_version"), made.get("sample_tiles"), made.get("seed")) == \
                (source.version, adapt.batchnorm_tiles, adapt.seed):
            log.info("AdaBN: reusing %s", uri)
            return uri
    sample = adabn_sample(tiles, adapt.batchnorm_tiles, adapt.seed)

    def batches() -> Iterator[dict]:
        for start in range(0, len(sample), batch_size):
            batch = read(sample.iloc[start:start + batch_size])
            ok = batch["status"] == "ok"
            if ok.any():
                yield {"image": predictor._tensor(batch["image"][ok])}

    state = {k: v.clone() for k, v in predictor.model.state_dict().items()}
    try:
        try:
            done = adapt_batchnorm(predictor.model, batches(), predictor.device)
        except DataError:
            raise DataError(f"sweep.adapt.batchnorm: none of the {len(sample)} sampled tiles is readable; nothing "
                            "to re-estimate BatchNorm statistics on (turn it off or check the tiles)") from None
        card = ModelCard.model_validate({
            **source.model_dump(), "weights_sha256": None,
            "adaptation": {"method": "adabn", "source_model": predictor.model_uri,
                           "source_version": source.version, "layers": done["layers"], "images": done["images"],
                           "sample_tiles": adapt.batchnorm_tiles, "seed": adapt.seed}})
        save_checkpoint(predictor.model, card, uri)
    finally:
        predictor.model.load_state_dict(state)  # the caller's model stays the trained one
    log.info("AdaBN: %d BatchNorm layers re-estimated on %d tiles -> %s", done["layers"], done["images"], uri)
    return uri


def decision_rule(probabilities: np.ndarray, threshold: float, card: ModelCard, adapt: SweepAdaptConfig
                  ) -> dict:
    """How the inventory turns the shards' raw probabilities of ``ok`` tiles into labels and reported
    probabilities: ``{"threshold": on raw probabilities, "temperature": for reported probabilities or None,
    "reported_threshold": on reported probabilities, "prior": {...} or None}``. With ``adapt.prior`` the
    threshold moves to the EM estimate of the tiles' landslide share (DataError when the card does not record
    its training share, i.e. a model trained before landslide recorded it); with ``adapt.calibrated``
    reported probabilities are temperature-scaled (decisions unchanged)."""
    rule: dict = {"threshold": float(threshold), "temperature": None, "reported_threshold": float(threshold),
                  "prior": None}
    if adapt.prior and not len(probabilities):
        rule["prior"] = {"skipped": "no tile was scored, so there is nothing to estimate the landslide share from",
                         "card_threshold": float(threshold)}
    elif adapt.prior:
        pi0 = card.train_prior
        if pi0 is None:
            raise DataError(f"sweep.adapt.prior: model {card.name!r} does not record its training split's "
                            "landslide share; retrain it with this version or turn adapt.prior off")
        prior, moved = prior_shift_threshold(probabilities, threshold, pi0, card.temperature)
        rule["prior"] = {"method": "EM (Saerens et al. 2002)", "train_prior": pi0, "estimated_prior": prior,
                         "card_threshold": float(threshold), "tiles": int(len(probabilities))}
        rule["threshold"] = rule["reported_threshold"] = moved
    if adapt.calibrated:
        t = card.temperature
        rule["temperature"] = t
        rule["reported_threshold"] = float(apply_temperature(rule["threshold"], t))
    return rule


def apply_rule(frame: pd.DataFrame, rule: dict, classes: tuple[str, str]) -> pd.DataFrame:
    """A shard's rows with ``probability`` as reported and ``label`` from it and the rule's reported threshold
    (so a reported probability at or above the summary's threshold is always a landslide) (copy)."""
    frame = frame.copy()
    ok = frame["status"] == "ok"
    reported = frame["probability"].to_numpy(dtype=float)
    if rule["temperature"] is not None:
        reported = np.where(ok, apply_temperature(np.nan_to_num(reported, nan=0.5), rule["temperature"]), np.nan)
        frame["probability"] = reported
    frame.loc[ok, "label"] = np.where(reported[ok.to_numpy()] >= rule["reported_threshold"], classes[1], classes[0])
    return frame
