"""Planning experiments: the runs (:class:`Variant`) one config asks for, in the order they must run.

Kinds (``experiment.kind``), after the study's experiments:

- ``single``: one run in ``output_dir``.
- ``compare``: the same data, splits and budget for several backbones.
- ``finetune``: a grid over freezing strategy and depth (last N blocks / last N layers).
- ``transfer``: stages in order; each later stage starts from the previous stage's model (weight transfer).
- ``data_size``: growing training subsets (fractions or named sets) against fixed val/test splits.
- ``modality``: image-only vs. the multi-modal model on the same splits.
- ``regions``: the train x test region matrix (each region alone, all but one, all; tested on every region).
- ``variants``: named variants, each with its own overrides (input size, decoder, loss, ...).
- ``study``: several of the above (``parts``) on the same data, with one report
  (:mod:`landslide.experiments.study`).

``repeats`` runs every variant once per cross-validation fold and/or seed (``<variant>/fold-i``). Each variant
is a plain :class:`RunConfig` with its own folder ``output_dir/variants/<name>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from landslide import storage
from landslide.config import (CompareExperiment, DataSizeExperiment, FinetuneExperiment, ModalityExperiment,
                              PartConfig, RegionsExperiment, RunConfig, SingleExperiment, StudyExperiment,
                              TransferExperiment, VariantsExperiment, parse_config)
from landslide.errors import ConfigError
from landslide.models.registry import get_spec


@dataclass
class Variant:
    name: str
    cfg: RunConfig
    params: dict[str, Any] = field(default_factory=dict)
    depends_on: str | None = None
    base: str | None = None
    """Repeated experiments: the variant this run repeats (one fold or seed of it); None when not repeated."""
    part: str | None = None
    """Studies: the part this variant belongs to."""
    follows_previous: bool = False
    """Transfer: the run starts from the model of ``depends_on`` (so each fold starts from the same fold)."""


def task_of(variants: list[Variant]) -> str:
    """The task (``classification`` or ``segmentation``) of an experiment's runs; ConfigError when they mix
    (a comparison of chip metrics with pixel metrics means nothing)."""
    tasks = {v.cfg.model.task for v in variants} or {"classification"}
    if len(tasks) > 1:
        raise ConfigError(f"the experiment's variants mix model.task {sorted(tasks)}; chip and pixel metrics "
                          "cannot be compared in one table (set model.task for the whole experiment)")
    return tasks.pop()


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in str(text)).strip("-") or "variant"


def _derive(cfg: RunConfig, name: str, overrides: dict[str, Any]) -> RunConfig:
    raw = cfg.model_dump(mode="json")
    raw.pop("experiment")
    raw["name"] = f"{cfg.name}-{name}"
    raw["output_dir"] = storage.join(cfg.output_dir, "variants", name)
    return parse_config(raw, f"experiment variant {name!r}", overrides)


def part_config(cfg: RunConfig, part: PartConfig) -> RunConfig:
    """A study part as an experiment of its own: the study's settings with the part's ``set`` overrides, its
    own folder, and the study's repeats unless the part has its own."""
    raw = cfg.model_dump(mode="json")
    exp = part.model_dump(mode="json", exclude={"name", "set"})
    if exp.get("repeats") is None:
        exp["repeats"] = raw["experiment"]["repeats"]
    raw["experiment"] = exp
    raw["name"] = f"{cfg.name}-{part.name}"
    raw["output_dir"] = storage.join(cfg.output_dir, _slug(part.name))
    return parse_config(raw, f"study part {part.name!r}", part.set)


def repeat_tags(cfg: RunConfig) -> list[tuple[str, int | None, int | None]]:
    """(folder tag, fold, seed) of each repeat of a variant; empty when the experiment is not repeated."""
    rep = cfg.experiment.repeats
    if rep is None or (not rep.folds and not rep.seeds):
        return []
    out = []
    for seed in rep.seeds or [None]:
        for fold in range(rep.folds) if rep.folds else [None]:
            tag = "-".join(([f"fold-{fold}"] if fold is not None else []) + ([f"seed-{seed}"] if seed is not None
                                                                              else []))
            out.append((tag, fold, seed))
    return out


def plan(cfg: RunConfig) -> list[Variant]:
    """The runs an experiment consists of, in the order they must run."""
    exp = cfg.experiment
    variants = PLANNERS[exp.kind](cfg, exp)
    if exp.kind == "study":  # its parts plan (and repeat) themselves
        return variants
    task_of(variants)  # one task per experiment, refused now rather than after every variant has trained
    tags = repeat_tags(cfg)
    if tags:
        variants = _repeat(cfg, variants, tags)
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ConfigError(f"experiment {exp.kind!r}: variant names repeat ({names}); make them unique")
    return variants


def _repeat(cfg: RunConfig, variants: list[Variant], tags: list[tuple[str, int | None, int | None]]
            ) -> list[Variant]:
    """Each variant once per fold/seed, in folders ``<variant folder>/<fold-i[-seed-s]>``."""
    rep = cfg.experiment.repeats
    by_name = {v.name: v for v in variants}
    out = []
    for v in variants:
        for tag, fold, seed in tags:
            overrides: dict[str, Any] = {}
            if fold is not None:
                overrides.update({"data.split.folds": rep.folds, "data.split.fold": fold})
            if seed is not None:
                overrides.update({"train.seed": seed, "data.split.seed": seed})
            if v.follows_previous:
                overrides["train.init_from"] = storage.join(by_name[v.depends_on].cfg.output_dir, tag, "model")
            raw = v.cfg.model_dump(mode="json")
            raw.pop("experiment")
            raw["name"], raw["output_dir"] = f"{v.cfg.name}-{tag}", storage.join(v.cfg.output_dir, tag)
            params = {**v.params, **({"fold": fold} if fold is not None else {}),
                      **({"seed": seed} if seed is not None else {})}
            out.append(Variant(f"{v.name}/{tag}", parse_config(raw, f"experiment run {v.name}/{tag}", overrides),
                               params, f"{v.depends_on}/{tag}" if v.depends_on else None, base=v.name))
    return out


def _plan_single(cfg: RunConfig, exp: SingleExperiment) -> list[Variant]:
    if repeat_tags(cfg):
        return [Variant("run", _derive(cfg, "run", {}))]
    return [Variant(cfg.name, cfg)]


def _plan_compare(cfg: RunConfig, exp: CompareExperiment) -> list[Variant]:
    extra = {get_spec(k).name: v for k, v in exp.model_overrides.items()}
    unknown = set(extra) - set(exp.backbones)
    if unknown:
        raise ConfigError(f"experiment.model_overrides names backbones not in experiment.backbones: "
                          f"{sorted(unknown)}")
    variants = []
    for backbone in exp.backbones:
        overrides = {"model.backbone": backbone, **{f"model.{k}": v for k, v in extra.get(backbone, {}).items()}}
        variants.append(Variant(_slug(backbone), _derive(cfg, _slug(backbone), overrides), {"backbone": backbone}))
    return variants


def _plan_finetune(cfg: RunConfig, exp: FinetuneExperiment) -> list[Variant]:
    variants = []
    for entry in exp.freeze:
        depths = [0] if entry.strategy in ("head", "all") else entry.n
        for n in depths:
            name = entry.strategy if entry.strategy in ("head", "all") else f"{entry.strategy}-{n}"
            overrides = {"model.freeze.strategy": entry.strategy, "model.freeze.n": n}
            variants.append(Variant(name, _derive(cfg, name, overrides), {"strategy": entry.strategy, "n": n}))
    return variants


def _plan_transfer(cfg: RunConfig, exp: TransferExperiment) -> list[Variant]:
    variants: list[Variant] = []
    previous: Variant | None = None
    for i, stage in enumerate(exp.stages):
        name = _slug(stage.name)
        overrides = dict(stage.set)
        follows = previous is not None and "train.init_from" not in overrides
        if follows:
            overrides["train.init_from"] = storage.join(previous.cfg.output_dir, "model")
        variant = Variant(name, _derive(cfg, name, overrides), {"stage": i + 1, "stage_name": stage.name},
                          previous.name if previous else None, follows_previous=follows)
        variants.append(variant)
        previous = variant
    return variants


def _plan_data_size(cfg: RunConfig, exp: DataSizeExperiment) -> list[Variant]:
    variants = []
    for f in exp.fractions:
        name = f"fraction-{f:g}"
        variants.append(Variant(name, _derive(cfg, name, {"data.train_fraction": f}), {"fraction": f}))
    for subset in exp.subsets:
        name = _slug(subset.name)
        variants.append(Variant(name, _derive(cfg, name, {"data.train_filter": subset.filter}),
                                {"subset": subset.name}))
    return variants


def _plan_modality(cfg: RunConfig, exp: ModalityExperiment) -> list[Variant]:
    return [Variant("image-only", _derive(cfg, "image-only", {"model.tags": None}), {"inputs": "image"}),
            Variant("multimodal", _derive(cfg, "multimodal", {}), {"inputs": "image + tags"})]


def _plan_regions(cfg: RunConfig, exp: RegionsExperiment) -> list[Variant]:
    sets: dict[str, tuple[str, list[str]]] = {}  # name -> (kind of set, regions); a set already planned is skipped
    for kind in exp.train_sets:
        if kind == "each":
            candidates = [(f"only-{r}", [r]) for r in exp.regions]
        elif kind == "all_but_one":
            candidates = [(f"without-{r}", [x for x in exp.regions if x != r]) for r in exp.regions]
        else:
            candidates = [("all", list(exp.regions))]
        for name, regions in candidates:
            if all(set(regions) != set(r) for _, r in sets.values()):  # two regions: without-a is only-b
                sets[_slug(name)] = (kind, regions)
    return [Variant(name, _derive(cfg, name, {"data.train_regions": regions}),
                    {"train_set": kind, "train_regions": "+".join(regions)})
            for name, (kind, regions) in sets.items()]


def _plan_variants(cfg: RunConfig, exp: VariantsExperiment) -> list[Variant]:
    return [Variant(_slug(v.name), _derive(cfg, _slug(v.name), dict(v.set)),
                    {k: (x if isinstance(x, (int, float, str, bool)) else str(x)) for k, x in v.set.items()})
            for v in exp.variants]


def _plan_study(cfg: RunConfig, exp: StudyExperiment) -> list[Variant]:
    variants = []
    for part in exp.parts:
        pcfg = part_config(cfg, part)
        if pcfg.model.task != "classification":
            raise ConfigError(f"study part {part.name!r}: a study's report is about chip classifiers; run footprint "
                              "models as experiments of their own (compare, finetune, transfer, data_size, regions)")
        for v in plan(pcfg):
            v.name, v.part = f"{part.name}/{v.name}", part.name
            v.depends_on = f"{part.name}/{v.depends_on}" if v.depends_on else None
            v.base = f"{part.name}/{v.base}" if v.base else None
            variants.append(v)
    return variants


PLANNERS: dict[str, Callable[[RunConfig, Any], list[Variant]]] = {
    "single": _plan_single, "compare": _plan_compare, "finetune": _plan_finetune, "transfer": _plan_transfer,
    "data_size": _plan_data_size, "modality": _plan_modality, "regions": _plan_regions, "study": _plan_study,
    "variants": _plan_variants}
"""The planner of each experiment kind (:data:`landslide.config.EXPERIMENT_KINDS`): config -> runs, before
repeats. A new kind is its config class plus one entry here."""
