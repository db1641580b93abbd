"""Ablation studies and tuning: a grid of variants × seeds under one recipe and budget, with intervals.

Shape legend: B batch, C channels, H/W image height/width, P patch size, N tokens, D embedding, h heads,
K classes.

A variant is a set of options on top of the default recipe of `Settings.model` on the data
(`vitcourse.training.recipes.default_recipe`):

* architecture options of the model: for the ViT `pos_embed`, `act`, `depth`, `num_heads`, `embed_dim`,
  `patch_size`, `pool`, `mlp_ratio`, `drop_rate`; for the CNN assignment's networks (`mish_cnn`, `bn_cnn`,
  `deep_mish_cnn`, `vgg16`) `arch` (a whole architecture: a key of `cnn.CONFIGS` or of
  `Settings.architectures`), `act`, `batch_norm`, `drop_rate`, `kernel_size`;
* training options, applied to the recipe's `TrainConfig` (`lr`, `weight_decay`, `batch_size`,
  `label_smoothing`, `epochs`, `warmup_epochs`, `optimizer`): a learning-rate grid is a tuning run;
* data options (`classes`: a class subset; `train_size`: a seeded subset of the training images, the axis of
  assignment 8's data-scaling experiment, nested or disjoint across seeds as `Settings.subsets` says:
  `data_utils.train_size_indices`). Validation and test sets stay whole.

Model 'deit' (assignment 8) is the ViT's recipe (cut to `distill.DEIT_FIELDS`) built as the student's
`deit.DistilledViT` (`Settings.implementation`) and trained against a teacher (`Settings.teacher(options, seed)`,
e.g. the ResNet-18 run of the same size and seed: `distill.teacher_from_runs`) with the student's hard- or
soft-label loss (`Settings.distillation`).

Every variant is trained on the same seeds with the same training config and budget, so the only difference
between two runs with the same seed is the variant: the seed fixes the validation split, the data order and
the augmentation draws (the initial weights differ where the architectures do). Tuning picks on validation
accuracy (`best_variant`), never on the test set, which stays for the final number.

Layout of an ablation folder (`run_grid`, `vitcourse ablate --out DIR`)::

    DIR/runs/<variant>/seed<k>.json      one finished run: options, config, accuracy, parameters, times
    DIR/runs/<variant>/seed<k>/          its checkpoints (`last.pt` to resume mid-run, `best.pt`)
    DIR/ablation.md, DIR/ablation.csv    the table (`summary_rows`) and the paired comparisons
    DIR/position_similarity.png          the trained position embeddings (`plot_position_similarity`, ViT)

Resumable: a run whose JSON exists is not redone (re-run the same command after a disconnect), and a run
that was interrupted mid-way continues from its `last.pt`. A JSON written for another architecture under
the same name (an edited `Settings.architectures` entry) or in the other mode (fast vs full) is stale:
that run is trained again.
"""
from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import math
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence, Union

import torch

from coursecore import files
from vitcourse.analysis import stats

VIT_OPTIONS = {"pos_embed": str, "act": str, "pool": str, "depth": int, "num_heads": int, "embed_dim": int,
               "patch_size": int, "mlp_ratio": float, "drop_rate": float, "drop_path_rate": float}
CNN_OPTIONS = {"arch": str, "act": str, "batch_norm": bool, "drop_rate": float, "kernel_size": int}
TRAIN_OPTIONS = {"lr": float, "weight_decay": float, "batch_size": int, "label_smoothing": float, "epochs": int,
                 "warmup_epochs": float, "optimizer": str}
DATA_OPTIONS = {"classes": "classes",  # a class subset, written 1+3+5+7+9 on the command line
                "train_size": int}  # a seeded subset of the training images (Settings.subsets: nested or disjoint)
OPTIONS = tuple(dict.fromkeys((*VIT_OPTIONS, *CNN_OPTIONS, *TRAIN_OPTIONS, *DATA_OPTIONS)))  # every model's
RUNS_DIR, TABLE_MD, TABLE_CSV, FIGURE = "runs", "ablation.md", "ablation.csv", "position_similarity.png"
CLASS_SEP = "+"
SAFE_VALUE = re.compile(r"[A-Za-z0-9_.+\-]+")  # what a value may hold to appear in a folder name
BOOLS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}
VAL_METRICS = ("best_val_acc",)  # what `best_variant` may select on: validation, never test


class AblationError(ValueError):
    """A grid that cannot be run as written (the message says which option and what to write)."""


# ---- the grid ---------------------------------------------------------------------------------------------

def options_for(model: str = "vit") -> dict:
    """The options a grid of `model` may vary, option -> type: its architecture's, training's and data's."""
    from vitcourse.training import recipes

    if model not in recipes.MODELS + recipes.DISTILLED_MODELS:
        raise AblationError(f"unknown model {model!r}: choose one of {', '.join(recipes.MODELS)}")
    arch = VIT_OPTIONS if model == "vit" else CNN_OPTIONS if model in recipes.CNN_MODELS else {}
    return {**arch, **TRAIN_OPTIONS, **DATA_OPTIONS}


def _owners(name: str) -> str:
    """Which models an option belongs to, in words (for the message of an option given to the wrong model)."""
    owners = [label for label, table in (("the ViT", VIT_OPTIONS), ("the CNNs", CNN_OPTIONS)) if name in table]
    return " and ".join(owners)


def _parse_value(name: str, text: str, kinds: Optional[dict] = None):
    kind = (kinds or options_for("vit"))[name]
    if kind == "classes":
        try:
            return tuple(int(c) for c in text.split(CLASS_SEP))
        except ValueError:
            raise AblationError(f"classes={text!r}: write a class subset as labels joined by '{CLASS_SEP}', "
                                f"e.g. classes=1+3+5+7+9") from None
    if kind is bool:
        if text.lower() not in BOOLS:
            raise AblationError(f"{name}={text!r}: {name} takes true or false, e.g. {name}=true,false")
        return BOOLS[text.lower()]
    try:
        return kind(text)
    except ValueError:
        raise AblationError(f"{name}={text!r}: {name} takes {kind.__name__} values, e.g. {name}="
                            f"{ {int: '4,6', float: '1e-3,3e-3', str: 'a,b'}[kind] }") from None


def parse_grid(specs: Iterable[str], model: str = "vit") -> dict[str, list]:
    """`["act=gelu,tanh", "depth=4,6"]` -> {"act": ["gelu", "tanh"], "depth": [4, 6]} (order kept).

    `model` says which options exist (`options_for`): `--grid lr=1e-3,3e-3` works for every model,
    `pos_embed` only for the ViT, `arch` / `batch_norm` only for the CNNs.
    """
    kinds = options_for(model)
    grid: dict[str, list] = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip()
        if not sep or not values:
            raise AblationError(f"--grid {spec!r}: write OPTION=VALUE,VALUE,... (e.g. act=gelu,relu,tanh or "
                                f"lr=1e-3,3e-3)")
        if name not in kinds:
            if name in OPTIONS:
                raise AblationError(f"--grid {spec!r}: {name} is an option of {_owners(name)}, not of model "
                                    f"{model!r}; {model} takes {', '.join(kinds)}")
            raise AblationError(f"--grid {spec!r}: unknown option {name!r}; model {model!r} takes {', '.join(kinds)}")
        if name in grid:
            raise AblationError(f"--grid {name}=... is given twice: list all its values once, comma-separated")
        grid[name] = [_parse_value(name, v.strip(), kinds) for v in values.split(",")]
    return grid


def expand(grid: dict[str, list]) -> list[dict]:
    """Every combination of the grid's values, the first option varying slowest."""
    names = list(grid)
    return [dict(zip(names, combo)) for combo in itertools.product(*(grid[n] for n in names))]


def _format(value) -> str:
    return CLASS_SEP.join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


def variant_name(options: dict) -> str:
    """A readable, file-system-safe name: 'pos_embed=cosine,act=tanh' (or 'default' for no options)."""
    return ",".join(f"{k}={_format(v)}" for k, v in options.items()) or "default"


# ---- one run ----------------------------------------------------------------------------------------------

@dataclass
class Settings:
    """What every run of the grid shares: the model, the data, the recipe's budget and the device."""

    data: str = "digits"  # a dataset of data_utils.DATASETS
    data_dir: Optional[str] = None  # CIFAR folder (see `vitcourse train --data-dir`)
    verify: bool = True  # CIFAR checksums (False for a folder like ../shared/datasets/cifar10-mini)
    epochs: Optional[int] = None  # override the recipe's epochs (the budget of every run; a grid's `epochs` wins)
    budget_minutes: Optional[float] = None  # or a wall-clock budget per run
    max_train: Optional[int] = None  # train on the first images only (pilot grids, tuning, tests)
    classes: Optional[tuple[int, ...]] = None  # a class subset for every run (a grid's `classes` wins)
    device: str = "auto"
    threads: Optional[int] = None  # torch threads per run (1 makes runs comparable on a shared machine)
    progress: bool = False
    overrides: dict = field(default_factory=dict)  # other TrainConfig fields (batch_size, lr, ...); a grid's win
    model_overrides: dict = field(default_factory=dict)  # model-config fields for every run (drop_path_rate ...)
    # train_size: 'nested' (one seed's smaller sets inside its larger ones) or 'disjoint' (seeds share no image)
    subsets: str = "nested"
    # model 'deit': teacher(options, seed) -> the trained teacher of that run; the student's loss, 'hard' or 'soft'
    teacher: Optional[Callable] = None
    distillation: str = "hard"
    # The notebooks load data their own way (`vitcourse.course.colab.load_course_data`: $VITCOURSE_DATA_ROOT, the
    # offline fallback) and train the student's module: loader(seed, classes) -> DatasetSplits.
    loader: Optional[Callable] = None
    vit: Optional[object] = None  # the module defining ViT / ViTConfig (default: the reference); = implementation
    model: str = "vit"  # a model of recipes.MODELS: its default recipe and its options (`options_for`)
    # The student's code: for 'vit' the ViT module (like `vit`), for a CNN the loaded cnn.py (default: the
    # references); resnet18 is torchvision's and takes none.
    implementation: Optional[object] = None
    # CNNs: whole architectures the grid's `arch` may name besides cnn.CONFIGS, e.g. {"my_change": cnn.ConvNetConfig(
    # ...)}. Image size, channels and classes always come from the data; every other field from the config.
    architectures: dict = field(default_factory=dict)

    def load(self, seed: int, classes):
        import data_utils

        if self.loader is not None:
            return self.loader(seed, list(classes) if classes else None)
        return data_utils.load_dataset(self.data, root=self.data_dir, classes=list(classes) if classes else None,
                                       seed=seed, verify=self.verify, download=self.verify)


def _vit_module(vit=None):
    """The ViT implementation to build and read: the one given, else the reference."""
    if vit is not None:
        return vit
    from coursecore import impl

    return impl.reference().ViT


def _is_cnn(model: str) -> bool:
    from vitcourse.training import recipes

    return model in recipes.CNN_MODELS


def _implementation(settings: Settings):
    """The module that builds the networks: the ViT module, the loaded cnn.py or deit.py, or None (ResNet-18)."""
    if settings.model == "deit":
        if settings.implementation is not None:
            return settings.implementation
        from coursecore import impl

        return impl.load(impl.solutions_dir(), modules=("deit",)).deit
    if settings.model == "vit":
        return _vit_module(settings.implementation if settings.implementation is not None else settings.vit)
    if _is_cnn(settings.model):
        if settings.implementation is not None:
            return settings.implementation
        from vitcourse.models import cnn as cnn_models

        return cnn_models.reference()
    return None


def _architectures(settings: Settings, module) -> dict:
    """Every name `arch` may take: the implementation's CONFIGS, then Settings.architectures."""
    return {**module.CONFIGS, **settings.architectures}


def _cnn_model_config(recipe_cfg: dict, options: dict, settings: Settings, module) -> dict:
    """A CNN run's model config: every ConvNetConfig field (JSON-ready) plus 'arch' (and 'resize_input').

    The architecture is `options['arch']` (default the recipe's network); the data's image size, channels and
    classes come from the recipe; the grid's other CNN options override the architecture's fields.
    """
    arch = options.get("arch", recipe_cfg["arch"])
    base = _architectures(settings, module)[arch]
    fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    fields.update({k: recipe_cfg[k] for k in ("image_size", "in_chans", "num_classes")})
    fields.update({k: v for k, v in options.items() if k in CNN_OPTIONS and k != "arch"})
    cfg = module.ConvNetConfig(**fields)  # validates (an unknown act, too many stages for the image ...)
    out = {"arch": arch, **json.loads(json.dumps(dataclasses.asdict(cfg)))}  # stages: lists, as a JSON has them
    if recipe_cfg.get("resize_input"):
        out["resize_input"] = True  # the recipe upsamples small images to the network's size (VGG-16 on digits)
    return out


def check_variants(variants: Sequence[dict], settings: Settings) -> None:
    """Refuse, before anything trains, a grid that cannot run: say which option, which model, what to write."""
    from vitcourse.training.train import TrainConfig

    model = settings.model
    kinds = options_for(model)
    module = _implementation(settings)
    if settings.subsets not in ("nested", "disjoint"):
        raise AblationError(f"Settings.subsets={settings.subsets!r}: choose 'nested' or 'disjoint'")
    if model == "deit" and settings.teacher is None:
        raise AblationError("model 'deit' trains against a teacher: pass Settings(teacher=...), e.g. "
                            "distill.teacher_from_runs(the ResNet-18 grid's folder)")
    if settings.architectures and not _is_cnn(model):
        raise AblationError(f"Settings.architectures names CNN architectures, but model {model!r} is not a CNN")
    if _is_cnn(model):
        for name in settings.architectures:
            if not SAFE_VALUE.fullmatch(str(name)):
                raise AblationError(f"architecture name {name!r} cannot name a folder: use letters, digits, "
                                    f"'_', '.' and '-' (e.g. 'my_change')")
            if name in module.CONFIGS:
                raise AblationError(f"architecture name {name!r} is already in cnn.CONFIGS: give yours another name "
                                    f"(e.g. 'my_{name}')")
    seen = {}
    for options in variants:
        name = variant_name(options)
        if name in seen:
            raise AblationError(f"variant {name!r} is listed twice (values that read the same, e.g. 1e-3 and "
                                f"0.001): list it once")
        seen[name] = options
        for key, value in options.items():
            if key not in kinds:
                owner = f" (an option of {_owners(key)})" if key in OPTIONS else ""
                raise AblationError(f"variant {name!r}: {key} is not an option of model {model!r}{owner}; "
                                    f"{model} takes {', '.join(kinds)}")
            if not SAFE_VALUE.fullmatch(_format(value)):
                raise AblationError(f"variant {name!r}: {key}={_format(value)!r} cannot name a folder: use "
                                    f"letters, digits, '_', '.' and '-' (and '+' between classes)")
        train_options = {k: v for k, v in options.items() if k in TRAIN_OPTIONS}
        try:
            TrainConfig(**train_options)  # its own checks: lr, weight decay, epochs, batch size, optimizer, ...
        except (TypeError, ValueError) as err:
            raise AblationError(f"variant {name!r} of model {model!r}: {err}") from None
        if _is_cnn(model):
            archs = _architectures(settings, module)
            arch = options.get("arch", model)
            if arch not in archs:
                raise AblationError(f"variant {name!r}: arch={arch!r} is not an architecture of model {model!r}: "
                                    f"choose one of {', '.join(archs)}, or pass yours as Settings(architectures="
                                    f"{{'{arch}': cnn.ConvNetConfig(...)}})")
            try:
                dataclasses.replace(archs[arch], **{k: v for k, v in options.items() if k in CNN_OPTIONS and k != "arch"})
            except (TypeError, ValueError) as err:
                raise AblationError(f"variant {name!r} of model {model!r}: {err}") from None


def run_path(out_dir: Path, options: dict, seed: int) -> Path:
    return Path(out_dir) / RUNS_DIR / variant_name(options) / f"seed{seed}.json"


def _load_average() -> Optional[float]:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # not on every platform
        return None


def train_variant(options: dict, seed: int, settings: Settings, out_dir: Union[str, Path]) -> dict:
    """Train one (variant, seed) with the shared recipe and write its JSON; returns the JSON's content."""
    from vitcourse.training import recipes, runtime
    from vitcourse.training.train import evaluate, load_best, train

    path = run_path(out_dir, options, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    start, cpu_start, load_before = time.perf_counter(), time.process_time(), _load_average()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    module = _implementation(settings)
    arch_options = {k: v for k, v in options.items() if k in options_for(settings.model)
                    and k not in TRAIN_OPTIONS and k not in DATA_OPTIONS}
    train_options = {k: v for k, v in options.items() if k in TRAIN_OPTIONS}
    classes = options.get("classes", settings.classes)
    splits = settings.load(seed, classes)
    if settings.max_train:
        splits = splits.subset(settings.max_train, len(splits.test_labels))
    if "train_size" in options:  # the data-scaling axis: a seeded subset of the training images only
        import data_utils

        keep = data_utils.train_size_indices(splits.train_labels, int(options["train_size"]), seed, settings.subsets)
        splits = dataclasses.replace(splits, train_images=splits.train_images[keep],
                                     train_labels=splits.train_labels[keep])
    if runtime.fast_mode():  # the trainer's own caps (grading, CI), on the test set too
        from vitcourse.training.train import FAST_MAX_EVAL, FAST_MAX_TRAIN

        splits = splits.subset(FAST_MAX_TRAIN, FAST_MAX_EVAL)
    # The recipe of the data actually loaded (a notebook's CIFAR may fall back to the offline digits).
    model_cfg, cfg = recipes.default_recipe(splits.name, settings.model, splits.num_classes, splits.in_chans)
    if settings.model == "vit":
        model_cfg = {**model_cfg, **arch_options, **settings.model_overrides}
    elif not _is_cnn(settings.model):  # ResNet-18 (another ResNet with model_overrides), the distilled ViT
        model_cfg = {**model_cfg, **settings.model_overrides}
    elif _is_cnn(settings.model):
        model_cfg = _cnn_model_config(model_cfg, arch_options, settings, module)
    # The recipe, then the shared overrides and budget, then this variant's own training options.
    changes = {**settings.overrides, **({"epochs": settings.epochs} if settings.epochs else {}), **train_options}
    cfg = dataclasses.replace(cfg, seed=seed, device=settings.device, progress=settings.progress,
                              budget_minutes=settings.budget_minutes, **changes)
    runtime.seed_everything(seed)  # the initial weights depend on the seed too
    objective, teacher_of = None, {}
    if settings.model == "vit":
        model = module.ViT(**model_cfg)
    elif settings.model == "deit":
        from vitcourse.training import distill

        model = distill.build_deit(module, model_cfg)
        objective = distill.objective_for(module, settings.teacher(options, seed), settings.distillation)
        teacher_of = {"teacher": getattr(settings.teacher, "source", repr(settings.teacher)),
                      "distillation": settings.distillation}
    else:
        model = recipes.build_model(settings.model, model_cfg, implementation=module)
    ckpt = path.with_suffix("")  # runs/<variant>/seed<k>/
    result = train(model, splits, cfg, checkpoint_dir=ckpt, objective=objective)
    if len(splits.val_labels):
        load_best(model, result)
    test = evaluate(model, splits.test_images, splits.test_labels, mean=splits.mean, std=splits.std,
                    batch_size=cfg.eval_batch_size, precision=cfg.precision)
    epoch_times = [r["epoch_time_s"] for r in result.history]
    record = {
        "variant": variant_name(options),
        "options": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
        "seed": seed,
        "model": settings.model,
        "data": splits.name,
        "classes": list(classes) if classes else None,
        "train_size": len(splits.train_labels),  # what was trained on (fast mode caps it further)
        "subsets": settings.subsets if "train_size" in options else None,
        **teacher_of,
        "model_config": model_cfg,
        "train": cfg.to_dict(),
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
        "test_accuracy": test.accuracy,
        "best_val_acc": None if math.isnan(result.best_val_acc) else result.best_val_acc,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "time_per_epoch_s": sum(epoch_times) / len(epoch_times),
        # Wall time of the whole run (data, training, test), its CPU time and the machine's load around it:
        # on a shared machine a slow run is often a busy machine, and the table of a recipe's cost needs all.
        "wall_time_s": time.perf_counter() - start,
        "cpu_time_s": time.process_time() - cpu_start,  # summed over threads; ~ a quiet machine's wall time
        "load_average_1min": [load_before, _load_average()],
        "threads": torch.get_num_threads(),
        "hardware": runtime.hardware_info(runtime.pick_device(cfg.device)),  # the same seed differs across CPUs
        "fast_mode": runtime.fast_mode(),
        "checkpoint": str(ckpt.relative_to(Path(out_dir))),
    }
    files.write_text(path, json.dumps(record, indent=2))
    return record


def stale_reason(record: dict, options: dict, settings: Settings) -> Optional[str]:
    """Why a finished run's JSON no longer answers for (options, settings), or None when it does.

    Stale: trained as another model, in the other mode (fast vs full), or — for a CNN — with an architecture
    that differs from what `options` names now (an edited `Settings.architectures` entry keeps its name).
    """
    from vitcourse.training import runtime

    if record.get("model", "vit") != settings.model:
        return f"it was trained as model {record.get('model', 'vit')!r}, not {settings.model!r}"
    if "fast_mode" in record and record["fast_mode"] != runtime.fast_mode():
        return f"it was trained in {'fast' if record['fast_mode'] else 'full'} mode"
    if settings.model == "deit" and record.get("distillation", settings.distillation) != settings.distillation:
        return f"it was distilled with the {record['distillation']} loss, not the {settings.distillation} one"
    stored = record.get("model_config", {})
    changed = sorted(k for k, v in settings.model_overrides.items() if stored.get(k) != json.loads(json.dumps(v)))
    if changed:
        return f"its model config differs from Settings.model_overrides ({', '.join(changed)})"
    if _is_cnn(settings.model):
        stored = record.get("model_config", {})
        recipe_like = {"arch": settings.model, **{k: stored.get(k) for k in ("image_size", "in_chans", "num_classes",
                                                                            "resize_input")}}
        try:
            expected = _cnn_model_config(recipe_like, options, settings, _implementation(settings))
        except (KeyError, TypeError, ValueError) as err:
            return f"its architecture cannot be rebuilt ({err})"
        if expected != stored:
            changed = sorted(k for k in set(expected) | set(stored) if expected.get(k) != stored.get(k))
            return f"architecture {options.get('arch', settings.model)!r} changed since ({', '.join(changed)})"
    return None


def run_grid(variants: Sequence[dict], seeds: Sequence[int], settings: Settings, out_dir: Union[str, Path],
             log: Callable[[str], None] = print) -> list[dict]:
    """Train every variant on every seed (skipping runs whose JSON exists and still holds) and write the table."""
    out_dir = Path(out_dir)
    check_variants(variants, settings)
    results, total = [], len(variants) * len(seeds)
    for i, (options, seed) in enumerate(itertools.product(variants, seeds), start=1):
        path = run_path(out_dir, options, seed)
        if path.is_file():
            record = json.loads(path.read_text())
            reason = stale_reason(record, options, settings)
            if reason is None:
                results.append(record)
                log(f"[{i}/{total}] {variant_name(options)} seed {seed}: done before, kept "
                    f"({results[-1]['test_accuracy']:.2%})")
                continue
            log(f"[{i}/{total}] {variant_name(options)} seed {seed}: trained again: {reason}")
            path.unlink()
            shutil.rmtree(path.with_suffix(""), ignore_errors=True)  # its checkpoints belong to the old run
        t0 = time.perf_counter()
        results.append(train_variant(options, seed, settings, out_dir))
        log(f"[{i}/{total}] {variant_name(options)} seed {seed}: {results[-1]['test_accuracy']:.2%} "
            f"in {time.perf_counter() - t0:.1f} s")
    write_outputs(out_dir, results, baseline=variant_name(variants[0]) if variants else None)
    return results


def load_results(out_dir: Union[str, Path]) -> list[dict]:
    """Every finished run's JSON under `out_dir/runs/`."""
    return [json.loads(p.read_text()) for p in sorted((Path(out_dir) / RUNS_DIR).glob("*/seed*.json"))]


# ---- the table --------------------------------------------------------------------------------------------

def _by_variant(results: Iterable[dict]) -> dict[str, dict[int, dict]]:
    grouped: dict[str, dict[int, dict]] = {}
    for r in results:
        grouped.setdefault(r["variant"], {})[r["seed"]] = r
    return grouped


def summary_rows(results: Iterable[dict]) -> list[dict]:
    """One row per variant: mean validation accuracy; test accuracy mean, std and 95% interval over its seeds;
    parameters, time per epoch."""
    rows = []
    for name, runs in _by_variant(results).items():
        seeds = sorted(runs)
        acc = stats.summarize([runs[s]["test_accuracy"] for s in seeds])
        val = [runs[s].get("best_val_acc") for s in seeds]
        rows.append({"variant": name, "seeds": len(seeds),
                     # what tuning selects on (best_variant); None without a validation split
                     "mean_val_acc": None if None in val else sum(val) / len(val),
                     "mean_acc": acc.mean, "std_acc": acc.std,
                     "ci_low": acc.low, "ci_high": acc.high,
                     "num_parameters": runs[seeds[0]]["num_parameters"],
                     "time_per_epoch_s": sum(runs[s]["time_per_epoch_s"] for s in seeds) / len(seeds)})
    return rows


def comparisons(results: Iterable[dict], baseline: Optional[str] = None) -> list[dict]:
    """Each variant against `baseline` (default the first variant): the paired difference over common seeds."""
    grouped = _by_variant(results)
    if not grouped:
        return []
    baseline = baseline or next(iter(grouped))
    if baseline not in grouped:
        raise AblationError(f"baseline {baseline!r} is not a variant of this grid: {', '.join(grouped)}")
    base, out = grouped[baseline], []
    for name, runs in grouped.items():
        if name == baseline:
            continue
        common = sorted(set(runs) & set(base))
        if not common:
            continue
        diff = stats.paired_difference([runs[s]["test_accuracy"] for s in common],
                                       [base[s]["test_accuracy"] for s in common])
        out.append({"variant": name, "baseline": baseline, "seeds": len(common), "diff": diff.mean,
                    "ci_low": diff.low, "ci_high": diff.high, "sentence": stats.verdict(name, baseline, diff)})
    return out


def best_variant(results: Iterable[dict], metric: str = "best_val_acc") -> dict:
    """The variant with the highest mean validation accuracy over the seeds every variant has: the tuning pick.

    Selecting on the test set would make its accuracy an optimistic estimate of new data (the choice was fit
    to it), so only validation metrics (VAL_METRICS) are accepted; report the pick's test accuracy afterwards.

    Returns:
        dict: variant (name), options (as in its JSON), metric, value (its mean), seeds (those compared) and
        ranking (every variant's (name, mean), best first; ties keep the grid's order).
    """
    if metric not in VAL_METRICS:
        raise AblationError(f"best_variant selects on validation ({', '.join(VAL_METRICS)}), not {metric!r}: a "
                            f"choice made on the test set makes its test accuracy an optimistic estimate; keep "
                            f"the test set for the final number")
    grouped = _by_variant(results)
    if not grouped:
        raise AblationError("best_variant: no finished runs to choose from")
    common = sorted(set.intersection(*(set(runs) for runs in grouped.values())))
    if not common:
        raise AblationError("best_variant: the variants share no seed; run every variant on the same seeds")
    ranking = []
    for name, runs in grouped.items():
        values = [runs[s][metric] for s in common]
        if any(v is None for v in values):
            raise AblationError(f"best_variant: {name} has no {metric} (its data had no validation split): give "
                                f"the data a validation split to tune on")
        ranking.append((name, sum(values) / len(values)))
    order = sorted(range(len(ranking)), key=lambda i: (-ranking[i][1], i))  # stable: ties keep the grid's order
    best = ranking[order[0]][0]
    return {"variant": best, "options": grouped[best][common[0]]["options"], "metric": metric,
            "value": ranking[order[0]][1], "seeds": common, "ranking": [ranking[i] for i in order]}


def edge_of_grid(grid: dict, options: dict) -> Optional[str]:
    """A sentence when the chosen `options` sit at the end of a numeric axis of `grid` ({axis: [values]}): the best
    value may lie beyond it, so the grid should be widened on that side before the choice is trusted; else None."""
    for axis, values in grid.items():
        numeric = sorted(v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool))
        chosen = options.get(axis)
        if len(numeric) < 3 or chosen not in (numeric[0], numeric[-1]):
            continue
        side, (a, b) = ("largest", numeric[-2:]) if chosen == numeric[-1] else ("smallest", numeric[:2][::-1])
        if all(isinstance(v, int) for v in numeric):  # one more step of the grid's own spacing: even for counts,
            beyond = f"{b + (b - a)}"
        else:  # geometric for rates and the like, rounded as one would write it
            beyond = f"{b * (b / a):.1g}" if a else f"{2 * b:.1g}"
        return (f"{axis} = {chosen:g} is the {side} value of the grid {numeric}: the best {axis} may lie beyond it. "
                f"Add {beyond} to the grid and re-run the cell (the finished runs are reused) before trusting it.")
    return None


def _pct(x: Optional[float]) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f}"


def to_markdown(rows: list[dict], comps: list[dict]) -> str:
    lines = ["| variant | seeds | val acc. mean (%) | test acc. mean (%) | std | 95% interval | parameters | s / epoch |",
             "|---|---:|---:|---:|---:|---|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['seeds']} | {_pct(r.get('mean_val_acc'))} | {_pct(r['mean_acc'])} | "
                     f"{_pct(r['std_acc'])} | "
                     f"[{_pct(r['ci_low'])}, {_pct(r['ci_high'])}] | {r['num_parameters']:,} | "
                     f"{r['time_per_epoch_s']:.2f} |")
    if comps:
        lines += ["", f"Paired differences against `{comps[0]['baseline']}` (same seeds):", ""]
        lines += [f"- {c['sentence']}" for c in comps]
    return "\n".join(lines) + "\n"


def write_outputs(out_dir: Union[str, Path], results: list[dict], baseline: Optional[str] = None) -> list[Path]:
    """`ablation.md` (table + sentences) and `ablation.csv` (one row per variant) in `out_dir`."""
    out_dir = Path(out_dir)
    rows, comps = summary_rows(results), comparisons(results, baseline)
    md, csv_path = out_dir / TABLE_MD, out_dir / TABLE_CSV
    files.write_text(md, to_markdown(rows, comps))
    with files.replacing(csv_path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["variant"])
        writer.writeheader()
        writer.writerows(rows)
    return [md, csv_path]


# ---- what the position embeddings learned -----------------------------------------------------------------

def position_similarity(table: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Cosine similarity of each patch's position embedding with every other, on the patch grid.

    Args:
        table: the patches' rows of the position table, of shape (N, D) with N = gh·gw, row-major.
        grid: (gh, gw).
    Returns:
        of shape (gh, gw, gh, gw): [i, j] is the map of patch (i, j) against every patch.
    """
    gh, gw = grid
    sims = torch.nn.functional.cosine_similarity(table[:, None, :], table[None, :, :], dim=-1)  # (N, N)
    return sims.reshape(gh, gw, gh, gw)


def mosaic(sim: torch.Tensor) -> torch.Tensor:
    """Tile the (gh, gw, gh, gw) maps into one (gh·(gh+1), gw·(gw+1)) image, NaN-separated (as in the ViT paper)."""
    gh, gw = sim.shape[:2]
    out = torch.full((gh * (gh + 1), gw * (gw + 1)), float("nan"))
    for i in range(gh):
        for j in range(gw):
            out[i * (gh + 1):i * (gh + 1) + gh, j * (gw + 1):j * (gw + 1) + gw] = sim[i, j]
    return out


def trained_patch_table(record: dict, out_dir: Union[str, Path], vit=None) -> Optional[torch.Tensor]:
    """The patches' rows (N, D) of a finished run's position table (None for pos_embed 'none')."""
    from vitcourse.training.train import BEST_CHECKPOINT

    model = _vit_module(vit).ViT(**record["model_config"])
    if model.pos_embed is None:
        return None
    state = torch.load(Path(out_dir) / record["checkpoint"] / BEST_CHECKPOINT, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    prefix = model.config.num_prefix_tokens
    return model.pos_embed.detach()[0, prefix:]  # (N, D): the class token's row is not on the grid


def plot_position_similarity(results: list[dict], out_dir: Union[str, Path], seed: Optional[int] = None, vit=None):
    """One similarity mosaic per variant (trained model of `seed`, default the lowest), beside the fixed tables."""
    import matplotlib.pyplot as plt

    from vitcourse.analysis.plots import similarity_limits

    ref = _vit_module(vit)
    chosen = {}
    for r in sorted(results, key=lambda r: r["seed"]):
        if (seed is None or r["seed"] == seed) and r["variant"] not in chosen:
            chosen[r["variant"]] = r
    panels = []
    for name, r in chosen.items():
        table = trained_patch_table(r, out_dir, vit)
        if table is not None:
            cfg = ref.ViTConfig(**r["model_config"])
            panels.append((f"{name}\n(trained, seed {r['seed']})", position_similarity(table, cfg.grid_size)))
    if chosen:
        cfg = ref.ViTConfig(**next(iter(chosen.values()))["model_config"])
        gh, gw = cfg.grid_size
        panels.append(("fixed 1-D sin-cos\n(patches row by row)",
                       position_similarity(ref.sincos_1d_embedding(gh * gw, cfg.embed_dim), (gh, gw))))
        panels.append(("fixed 2-D sin-cos", position_similarity(ref.sincos_2d_embedding(gh, gw, cfg.embed_dim), (gh, gw))))
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(3.2 * max(len(panels), 1), 3.6), squeeze=False)
    for ax, (title, sim) in zip(axes[0], panels):
        # Each panel spans its similarities between different patches (with itself a patch is always 1):
        # on a fixed [-1, 1] scale the sin-cos tables' values (0.3 to 1) look alike and the cross vanishes.
        vmin, vmax = similarity_limits(sim.reshape(sim.shape[0] * sim.shape[1], -1))
        ax.imshow(mosaic(sim).numpy(), cmap="viridis", vmin=vmin, vmax=vmax)
        ax.set_title(f"{title}\ncolour {vmin:.2f} to {vmax:.2f}", fontsize=8)
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle("Position-embedding similarity: tile (i, j) compares patch (i, j) with every patch", fontsize=9)
    path = Path(out_dir) / FIGURE
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig, path
