"""Assignment 8's measurements: accuracy against training-set size, distillation, attention distance, positions.

Shape legend: B batch, C channels, H/W image height/width, P patch size, N tokens, D embedding, h heads,
K classes; L layers (blocks).

* **Data scaling** (`run_scaling`): ResNet-18, the plain ViT and the distilled ViT through `ablate`, with the
  training-set size as the grid's axis (seeded subsets, `Settings.subsets`), several seeds, one folder per model
  (resumable: a re-run after a disconnect skips the finished runs). The ResNet-18 runs are the teachers: the
  distilled ViT of size n and seed s learns from the ResNet-18 trained on the same n images with seed s.
  Every size trains for the full-size recipe's number of optimiser steps (`epochs_for_size`, capped), so a
  small set is not also a short training. `scaling_table` / `plot_scaling`: means and 95% intervals over the
  seeds; `scaling_verdicts`: the paired difference at every size, in the words of `stats.verdict`.
* **Attention distance** (`attention_distances`): the student's `mean_attention_distance` applied to every
  layer's maps (`interpret.attention_maps`, the library's hooks), for any ViT (timm's, the student's
  DistilledViT); `plot_attention_distance` puts every head as a point per layer.
* **Position embeddings** (`position_table`, `plot_position_similarities`): the cosine similarity of each patch's
  position embedding with every other (the ViT paper's Fig. 7, left), via `ablate.position_similarity`.
* **Budgets** (`measure_rates`, `budget_rows`, `plan_for_budget`): what a grid costs, from the images it trains
  and evaluates and each model's throughput measured on this device (or counted FLOPs at a stated TFLOP/s); the
  longest training that fits a budget; `budget_check`: the plan beside what the runs took.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import torch
from torch import nn

from coursecore import counts
from vitcourse.analysis import ablate, stats

SCALING_MODELS = ("resnet18", "vit", "deit")  # the teacher first: the distilled runs read its checkpoints
LABELS = {"resnet18": "ResNet-18", "vit": "ViT", "deit": "ViT distilled from ResNet-18"}
# Offline on the 8×8 digits, ResNet-18 costs ~35M multiply-adds per image (its CIFAR form keeps 8×8 maps in its
# first stage), ~5 ms per image on 2 shared CPU cores: a scaling grid would take an hour. There the CNN (and the
# teacher) is the same design one block per stage and 16-128 wide, assignment 6's offline CNN (~1M multiply-adds,
# 0.17M parameters): `run_scaling(..., cnn=SMALL_RESNET)`.
SMALL_RESNET = {"arch": "resnet_cifar", "blocks": [1, 1, 1, 1], "widths": [16, 32, 64, 128]}
SMALL_LABELS = {"resnet18": "ResNet (1 block/stage)", "vit": "ViT", "deit": "ViT distilled from the ResNet"}
MAX_STEP_FACTOR = 5  # a small set trains for at most 5× its recipe's epochs (equal steps would be 20× at 1/20)
COMPARISONS = (("deit", "vit"), ("resnet18", "vit"))  # (a, b): a − b at every size
# a8's grid on Colab's T4 (CIFAR-10), the notebook's and the GPU check's: its sizes and seeds, and the training
# length of its on-paper budget (the recipes' epochs × 0.3 at an assumed 5 TFLOP/s)
COLAB_SIZES, COLAB_SEEDS, PAPER_EPOCHS_SCALE = (1000, 5000, 20000, 45000), (0, 1), 0.3
CPU_MEASURE_BATCH = 64  # measure_rates on a CPU: three timed steps up to this batch, one above it
CHECKPOINT_INTERVAL_S = 60.0  # a run's checkpoints are written at most once a minute (and at its end)


# ---- the grid ----------------------------------------------------------------------------------------------

def epochs_for_size(size: int, full_size: int, epochs_at_full: int, max_factor: float = MAX_STEP_FACTOR) -> int:
    """Epochs for a training set of `size` images: the full set's steps (epochs_at_full · full_size / size),
    at most `max_factor` × epochs_at_full."""
    if size < 1 or full_size < 1:
        raise ValueError(f"sizes must be positive, got size {size} of {full_size}")
    return int(min(math.ceil(epochs_at_full * full_size / size), max_factor * epochs_at_full))


def size_variants(sizes: Sequence[int], full_size: int, epochs_at_full: int,
                  max_factor: float = MAX_STEP_FACTOR) -> list[dict]:
    """The ablation variants of one model: {'train_size': n, 'epochs': epochs_for_size(n)} per size."""
    return [{"train_size": int(n), "epochs": epochs_for_size(int(n), full_size, epochs_at_full, max_factor)}
            for n in sorted(sizes)]


@dataclass
class Scaling:
    """What `run_scaling` measured: every run's JSON, by model, and where each model's folder is."""

    results: dict  # model -> list of run records (ablate.run_grid)
    folders: dict  # model -> its ablation folder
    sizes: list
    seeds: list
    labels: dict = dataclasses.field(default_factory=lambda: dict(LABELS))  # model -> what tables call it

    def runs(self, model: str, size: int) -> dict:
        """seed -> record of `model` at training-set size `size`."""
        return {r["seed"]: r for r in self.results.get(model, []) if r["options"]["train_size"] == size}

    def merged(self, other: "Scaling") -> "Scaling":
        """This grid and another's models (e.g. the distilled ViT, run in a cell of its own), in one."""
        return Scaling({**self.results, **other.results}, {**self.folders, **other.folders},
                       sorted(set(self.sizes) | set(other.sizes)), list(dict.fromkeys(self.seeds + other.seeds)),
                       {**self.labels, **other.labels})

    def model(self, model: str, size: int, seed: int, deit=None) -> nn.Module:
        """The trained network of one run (eval mode, CPU); the distilled ViT needs the student's `deit`."""
        from vitcourse.training import distill

        record = self.runs(model, size).get(seed)
        if record is None:
            raise KeyError(f"no finished {model} run of {size} images with seed {seed} in {self.folders.get(model)}")
        build = (lambda c: distill.build_deit(deit, c)) if model == "deit" else None
        return distill.load_run_model(record, self.folders[model], build)


def run_scaling(sizes: Sequence[int], seeds: Sequence[int], out_dir: Union[str, Path], *, loader: Callable,
                deit=None, full_size: Optional[int] = None, models: Sequence[str] = SCALING_MODELS,
                subsets: str = "nested", distillation: str = "hard", max_factor: float = MAX_STEP_FACTOR,
                epochs_scale: float = 1.0, cnn: Optional[dict] = None, device: str = "auto",
                log: Callable[[str], None] = print, **settings) -> Scaling:
    """Train `models` at every training-set size on every seed, one `ablate` folder per model under `out_dir`.

    Args:
        sizes: training-set sizes (images); each at most `full_size`.
        seeds: the seeds (each fixes the validation split, the subset, the data order and the initial weights).
        loader: loader(seed, classes) -> DatasetSplits (the notebook's `load_course_data`).
        deit: the student's deit module (the distilled ViT and its loss); needed for model 'deit'.
        full_size: the training images the recipes' epochs are for (default: what the loader gives).
        subsets: 'nested' or 'disjoint' (`data_utils.train_size_indices`).
        epochs_scale: the recipes' epochs at the full size are multiplied by it (a shorter budget, e.g. Colab's).
        cnn: model-config fields replacing ResNet-18's (SMALL_RESNET offline), with its recipe; None: ResNet-18.
        settings: further `ablate.Settings` fields for every model (threads, overrides, ...).
    """
    from vitcourse.training import distill, recipes

    out_dir = Path(out_dir)
    results, folders = {}, {}
    labels = dict(SMALL_LABELS if cnn == SMALL_RESNET else LABELS)
    first = loader(seeds[0], None)
    data, full_size = first.name, full_size or len(first.train_labels)
    too_big = [n for n in sizes if n > full_size]
    if too_big:
        raise ValueError(f"training-set sizes {too_big} exceed the {full_size:,} training images of {data}")
    for model in models:
        # the soft loss's runs in a folder of their own, beside the hard ones
        folder = out_dir / (model if model != "deit" or distillation == "hard" else f"deit_{distillation}")
        extra = {}
        if model == "vit":  # assignment 3's ViT built by timm, the distilled ViT's config (no stochastic depth)
            extra = dict(implementation=distill.COURSE_VIT, model_overrides={"drop_path_rate": 0.0})
        elif model == "resnet18" and cnn:
            extra = dict(model_overrides=dict(cnn))
        elif model == "deit":
            if deit is None:
                raise ValueError("model 'deit' needs the student's module: run_scaling(..., deit=deit)")
            if "resnet18" not in results and not (out_dir / "resnet18").is_dir():
                raise ValueError("the distilled ViT learns from the ResNet-18 runs: put 'resnet18' first in models")
            extra = dict(implementation=deit, teacher=distill.teacher_from_runs(out_dir / "resnet18"),
                         distillation=distillation)
            if distillation != "hard":
                labels["deit"] = f"{labels['deit']} ({distillation})"
        epochs = max(1, round(recipes.default_recipe(data, model)[1].epochs * epochs_scale))
        shared = dict(settings)
        # Small sets make many tiny epochs: checkpoints once a minute, not every epoch (a disconnect loses <= 1 min).
        shared["overrides"] = {"checkpoint_interval_s": CHECKPOINT_INTERVAL_S, **shared.get("overrides", {})}
        cfg = ablate.Settings(model=model, loader=loader, subsets=subsets, device=device, **extra, **shared)
        log(f"== {labels[model]}: sizes {', '.join(map(str, sorted(sizes)))} x seeds {', '.join(map(str, seeds))} "
            f"in {folder}")
        results[model] = ablate.run_grid(size_variants(sizes, full_size, epochs, max_factor), list(seeds), cfg,
                                         folder, log=log)
        folders[model] = folder
    return Scaling(results, folders, sorted(int(n) for n in sizes), list(seeds), labels)


# ---- tables, verdicts, the plot ------------------------------------------------------------------------------------

def scaling_rows(scaling: Scaling) -> list[dict]:
    """One row per (model, size): test accuracy mean, 95% interval over the seeds (`stats.summarize`), seeds."""
    rows = []
    for model, records in scaling.results.items():
        for size in scaling.sizes:
            runs = scaling.runs(model, size)
            if not runs:
                continue
            acc = stats.summarize([runs[s]["test_accuracy"] for s in sorted(runs)])
            first = runs[min(runs)]
            rows.append(dict(model=model, size=size, seeds=acc.n, mean=acc.mean, low=acc.low, high=acc.high,
                             std=acc.std, epochs=first["train"]["epochs"], trained_on=first.get("train_size", size),
                             values=[runs[s]["test_accuracy"] for s in sorted(runs)]))
    return rows


def scaling_verdicts(scaling: Scaling, pairs: Sequence[tuple[str, str]] = COMPARISONS) -> list[dict]:
    """For each pair (a, b) and size: the paired difference a − b over the common seeds and its sentence
    (`stats.verdict`: better / worse / not distinguishable at this budget)."""
    out = []
    for a, b in pairs:
        for size in scaling.sizes:
            ra, rb = scaling.runs(a, size), scaling.runs(b, size)
            common = sorted(set(ra) & set(rb))
            if not common:
                continue
            diff = stats.paired_difference([ra[s]["test_accuracy"] for s in common],
                                           [rb[s]["test_accuracy"] for s in common])
            out.append(dict(a=a, b=b, size=size, diff=diff,
                            sentence=stats.verdict(f"{scaling.labels[a]} ({size} images)", scaling.labels[b], diff)))
    return out


def _pct(x: float) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{100 * x:.1f}"


def scaling_table(scaling: Scaling) -> str:
    """Markdown: test accuracy (mean and 95% interval over the seeds) of every model at every size, then the
    verdict sentences."""
    rows = scaling_rows(scaling)
    models = list(dict.fromkeys(r["model"] for r in rows))
    cell = {(r["model"], r["size"]): r for r in rows}
    lines = ["| training images | " + " | ".join(f"{scaling.labels[m]} (%)" for m in models) + " |",
             "|---:|" + "---|" * len(models)]
    for size in scaling.sizes:
        cells = []
        for m in models:
            r = cell.get((m, size))
            cells.append("" if r is None else f"{_pct(r['mean'])} [{_pct(r['low'])}, {_pct(r['high'])}]"
                         f" ({r['epochs']} ep.)")
        lines.append(f"| {size:,} | " + " | ".join(cells) + " |")
    seeds = max((r["seeds"] for r in rows), default=0)
    lines += ["", f"Mean test accuracy over {seeds} seed(s), 95% t interval in brackets (n/a with one seed), epochs "
                  "per run in parentheses.", ""]
    lines += [f"- {v['sentence']}" for v in scaling_verdicts(scaling)]
    return "\n".join(lines) + "\n"


def plot_scaling(scaling: Scaling, title: Optional[str] = None):
    """Test accuracy against training-set size (log scale): each model's mean with its 95% interval as a band,
    every seed as a faint point. Returns the figure."""
    import matplotlib.pyplot as plt

    rows = scaling_rows(scaling)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, model in enumerate(dict.fromkeys(r["model"] for r in rows)):
        mine = [r for r in rows if r["model"] == model]
        x = [r["size"] for r in mine]
        colour = f"C{i}"
        ax.plot(x, [100 * r["mean"] for r in mine], "o-", color=colour, label=scaling.labels[model])
        if all(r["seeds"] >= 2 for r in mine):
            ax.fill_between(x, [100 * r["low"] for r in mine], [100 * r["high"] for r in mine], color=colour,
                            alpha=0.2, linewidth=0)
        for r in mine:
            ax.scatter([r["size"]] * len(r["values"]), [100 * v for v in r["values"]], color=colour, s=8, alpha=0.4)
    ax.set_xscale("log")
    ax.set_xlabel("training images (log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title or f"accuracy against training-set size: mean and 95% interval over {len(scaling.seeds)} "
                          f"seed(s)", fontsize=9)
    return fig


# ---- attention distance -----------------------------------------------------------------------------------------

def vit_layout(model: nn.Module) -> tuple[int, tuple[int, int], int]:
    """(prefix tokens, patch grid (H', W'), patch size P) of a timm ViT or of a DistilledViT (the student's)."""
    from vitcourse.models.pretrained import unwrap

    net = unwrap(model)
    cfg = getattr(net, "config", None)
    if cfg is not None and hasattr(cfg, "grid_size"):  # deit.DistilledViT (and the course's ViT)
        return int(cfg.num_prefix_tokens), tuple(int(g) for g in cfg.grid_size), int(cfg.patch_size)
    if hasattr(net, "patch_embed") and hasattr(net, "num_prefix_tokens"):  # timm
        patch = net.patch_embed.patch_size
        return (int(net.num_prefix_tokens), tuple(int(g) for g in net.patch_embed.grid_size),
                int(patch[0] if isinstance(patch, (tuple, list)) else patch))
    raise ValueError(f"{type(net).__name__} is not a ViT with a patch grid: no attention distance")


@torch.no_grad()
def attention_distances(model: nn.Module, images: torch.Tensor, distance: Callable, batch_size: int = 64
                        ) -> torch.Tensor:
    """Mean attention distance of every head of every layer, in pixels: (L, h).

    images: normalised as the model expects (B, C, H, W). `distance` is the student's
    `deit.mean_attention_distance(attn, grid, patch_size, num_prefix_tokens) -> (h,)`, applied to each layer's
    maps from `interpret.attention_maps`; batches are weighted by their size, so the result is the mean over
    all images whatever the batch size.
    """
    from vitcourse.analysis import interpret

    prefix, grid, patch = vit_layout(model)
    total, seen = None, 0
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size]
        maps = interpret.attention_maps(model, x)  # L × (B, h, N, N)
        per_layer = torch.stack([distance(a.float().cpu(), grid, patch, prefix).float() for a in maps])  # (L, h)
        total = per_layer * len(x) if total is None else total + per_layer * len(x)
        seen += len(x)
    return total / seen


def plot_attention_distance(distances: dict, image_sizes: Optional[dict] = None):
    """One panel per model: each head's mean attention distance (pixels) against its layer, every head a point.

    distances: name -> (L, h) from `attention_distances`; image_sizes: name -> the image side in pixels (a dotted
    line at half of it: roughly what uniform attention over the image gives). Returns the figure.
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(distances), figsize=(3.6 * len(distances), 3.4), squeeze=False)
    for ax, (name, d) in zip(axes[0], distances.items()):
        d = torch.as_tensor(d).float()
        L, h = d.shape
        layers = torch.arange(1, L + 1).repeat_interleave(h)  # (L·h,): layer of each point
        ax.scatter(layers.numpy(), d.reshape(-1).numpy(), s=14, alpha=0.7)
        if image_sizes and name in image_sizes:
            ax.axhline(image_sizes[name] / 2, ls=":", color="grey", lw=1)
        ax.set_xticks(range(1, L + 1))
        ax.set_xlabel("layer")
        ax.set_ylabel("mean attention distance (pixels)")
        ax.set_title(f"{name}\n{h} heads per layer", fontsize=9)
        ax.grid(alpha=0.3)
    fig.suptitle("How far each head looks: mean attention distance, every head a point", fontsize=9)
    fig.tight_layout()
    return fig


def distance_summary(distances: dict) -> str:
    """Markdown: per model, the first and the last layer's smallest, mean and largest head distance (pixels)."""
    lines = ["| model | layer 1: min / mean / max (px) | last layer: min / mean / max (px) |", "|---|---|---|"]
    for name, d in distances.items():
        d = torch.as_tensor(d).float()
        fmt = lambda row: f"{row.min():.1f} / {row.mean():.1f} / {row.max():.1f}"  # noqa: E731
        lines.append(f"| {name} | {fmt(d[0])} | {fmt(d[-1])} |")
    return "\n".join(lines)


# ---- position embeddings ----------------------------------------------------------------------------------------

def position_table(model: nn.Module) -> tuple[torch.Tensor, tuple[int, int]]:
    """The patches' rows (H'·W', D) of a ViT's learned position table (prefix tokens' rows dropped), and the grid."""
    from vitcourse.models.pretrained import unwrap

    net = unwrap(model)
    prefix, grid, _ = vit_layout(net)
    table = net.pos_embed.detach().float().cpu()[0]  # (N, D) or (H'·W', D) when the prefix has no position
    if table.shape[0] == grid[0] * grid[1] + prefix:
        table = table[prefix:]
    return table, grid


def plot_position_similarities(models: dict):
    """One mosaic per model: tile (i, j) is the cosine similarity of patch (i, j)'s position embedding with every
    patch's (`ablate.position_similarity`, `ablate.mosaic`). Returns the figure."""
    import matplotlib.pyplot as plt

    from vitcourse.analysis.plots import similarity_limits

    fig, axes = plt.subplots(1, len(models), figsize=(3.4 * len(models), 3.6), squeeze=False)
    for ax, (name, model) in zip(axes[0], models.items()):
        table, grid = position_table(model)
        sim = ablate.position_similarity(table, grid)  # (H', W', H', W')
        vmin, vmax = similarity_limits(sim.reshape(grid[0] * grid[1], -1))
        ax.imshow(ablate.mosaic(sim).numpy(), cmap="viridis", vmin=vmin, vmax=vmax)
        ax.set_title(f"{name}\n{grid[0]}x{grid[1]} patches, colour {vmin:.2f} to {vmax:.2f}", fontsize=8)
        ax.set_xticks([]), ax.set_yticks([])
    fig.suptitle("Position-embedding similarity: tile (i, j) compares patch (i, j) with every patch", fontsize=9)
    return fig


# ---- budgets ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _ViTShape:
    """What `coursecore.counts` reads of a ViT config, for a model built by timm or deit.py."""

    image_size: int
    patch_size: int
    in_chans: int
    num_classes: int
    embed_dim: int
    depth: int
    mlp_ratio: float
    prefix: int = 1

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @property
    def num_tokens(self) -> int:
        return self.num_patches + self.prefix

    @property
    def patch_dim(self) -> int:
        return self.in_chans * self.patch_size ** 2

    @property
    def mlp_hidden_dim(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)


def _vit_shape(model: str, model_config: dict) -> _ViTShape:
    fields = {k: model_config[k] for k in ("image_size", "patch_size", "in_chans", "num_classes", "embed_dim", "depth",
                                           "mlp_ratio")}
    return _ViTShape(**fields, prefix=2 if model == "deit" else 1)


def training_flops_per_image(model: str, model_config: dict, image_size: int = 32, in_chans: int = 3,
                             num_classes: int = 10) -> float:
    """Forward + backward FLOPs of one training image (closed form, `coursecore.counts`), matrix products only.

    'deit' adds its second prefix token and head, and the teacher's forward pass (a CIFAR ResNet-18)."""
    resnet_forward = counts.count_resnet18_macs("cifar", num_classes, image_size, in_chans)["total"]
    if model == "resnet18":
        return counts.FLOPS_PER_MAC * 3 * resnet_forward
    shape = _vit_shape(model, model_config)
    macs = counts.count_training_macs(shape)
    if model == "deit":
        macs += 3 * shape.embed_dim * shape.num_classes + resnet_forward  # the second head; the teacher's forward
    return float(counts.FLOPS_PER_MAC * macs)


def eval_flops_per_image(model: str, model_config: dict, image_size: int = 32, in_chans: int = 3,
                         num_classes: int = 10) -> float:
    """Forward FLOPs of one evaluated image (validation after every epoch, the test set once): no teacher."""
    if model == "resnet18":
        return float(counts.FLOPS_PER_MAC * counts.count_resnet18_macs("cifar", num_classes, image_size,
                                                                        in_chans)["total"])
    shape = _vit_shape(model, model_config)
    extra = shape.embed_dim * shape.num_classes if model == "deit" else 0  # the distillation head
    return float(counts.FLOPS_PER_MAC * (counts.count_macs(shape)["total"] + extra))


def _recipe_flops(model: str, data: str, evaluated: bool = False) -> float:
    """Counted FLOPs of one of `data`'s images in `model` as its recipe builds it: a training step's
    (`training_flops_per_image`) or, `evaluated`, a forward pass's (`eval_flops_per_image`)."""
    from vitcourse.training import recipes

    vit_cfg = recipes.default_recipe(data, "vit")[0]
    count = eval_flops_per_image if evaluated else training_flops_per_image
    return count(model, vit_cfg, image_size=vit_cfg["image_size"], in_chans=vit_cfg["in_chans"],
                 num_classes=vit_cfg["num_classes"])


@dataclass
class Rates:
    """Images per second of each model's training step and evaluation on one device, and where they come from.

    `measure_rates` times them on this machine's device; `assumed_rates` derives them from counted FLOPs and an
    assumed sustained TFLOP/s. `budget_rows` turns either into minutes."""

    train: dict  # model -> training images/s (the distilled ViT's step includes its teacher's forward pass)
    evaluate: dict  # model -> evaluated images/s (forward only)
    source: str  # what a table says about them: "measured on Tesla T4 (bf16)", "assumed 5 TFLOP/s"
    measured: bool = True
    notes: list = dataclasses.field(default_factory=list)  # e.g. a rate derived because the model did not run yet

    def achieved_tflops(self, model: str, data: str = "cifar10") -> float:
        """What the training rate means in counted FLOPs per second (TFLOP/s) for ResNet-18 and the two ViTs of
        `data`'s recipes: comparable across GPUs."""
        return self.train[model] * _recipe_flops(model, data) / 1e12


def assumed_rates(tflops: float, data: str = "cifar10", models: Sequence[str] = SCALING_MODELS) -> Rates:
    """Rates at a sustained `tflops` (an assumption, said in `source`) from the closed-form counts."""
    train = {model: tflops * 1e12 / _recipe_flops(model, data) for model in models}
    evaluate = {model: tflops * 1e12 / _recipe_flops(model, data, evaluated=True) for model in models}
    return Rates(train, evaluate, f"an assumed sustained {tflops:g} TFLOP/s (counted FLOPs), not a measurement",
                 measured=False)


def measure_rates(splits, models: Sequence[str] = SCALING_MODELS, *, deit=None, cnn: Optional[dict] = None,
                  device: str = "auto", timed_steps: Optional[int] = None, batch_size: Optional[int] = None,
                  log: Callable[[str], None] = print) -> Rates:
    """Time each model's training step and evaluation on this machine's device, as `run_scaling` trains it.

    The networks are built from the recipes of `splits`' data as the grid builds them (assignment 3's ViT by
    timm, ResNet-18 or `cnn`, the student's DistilledViT with the hard-label loss and the ResNet as its teacher),
    in the training loop's precision, batch size (`batch_size` replaces it) and memory format; `timing.measure` times
    `timed_steps` steps (default 10 on a GPU, 3 on a CPU, 1 for a CPU batch over CPU_MEASURE_BATCH) on random images
    already on the device after a warm-up (cuDNN autotuning, allocations), the median kept. Data
    loading, which the course's device data path keeps small on a GPU, is not in it. The distilled ViT before
    `DistilledViT.forward` is written: its rates are the ViT's scaled by the counted FLOPs (said in `notes`).
    """
    from vitcourse.analysis import timing
    from vitcourse.training import distill, recipes, runtime

    dev = runtime.pick_device(device)
    image_shape = (splits.in_chans, splits.image_size, splits.image_size)
    train, evaluate, notes, precision = {}, {}, [], "fp32"
    teacher, labels = None, SMALL_LABELS if cnn == SMALL_RESNET else LABELS
    for model in models:
        model_cfg, cfg = recipes.default_recipe(splits.name, "vit" if model == "deit" else model,
                                                splits.num_classes, splits.in_chans)
        objective, is_cnn = None, model == "resnet18"
        if model == "resnet18":
            net = recipes.build_model("resnet18", {**model_cfg, **(cnn or {})})
        elif model == "vit":
            net = distill.course_vit(**{**distill.deit_config(model_cfg), "drop_path_rate": 0.0})
        else:
            if deit is None:
                raise ValueError("model 'deit' needs the student's module: measure_rates(..., deit=deit)")
            if teacher is None:
                resnet_cfg = recipes.default_recipe(splits.name, "resnet18", splits.num_classes, splits.in_chans)[0]
                teacher = recipes.build_model("resnet18", {**resnet_cfg, **(cnn or {})})
            net = distill.build_deit(deit, model_cfg)
            objective = distill.objective_for(deit, teacher.to(dev), "hard")
        # The recipe's batch: the rate per image depends on it (ResNet-18 on one CPU thread: 49 images/s in
        # batches of 64, 36 in batches of 512). A CPU step of 512 CIFAR images takes seconds: one timed step then.
        batch = batch_size or cfg.batch_size
        steps = timed_steps or (10 if dev.type == "cuda" else 3 if batch <= CPU_MEASURE_BATCH else 1)
        settings = timing.MeasureSettings(batch_size=batch, warmup_steps=2 if dev.type == "cuda" else 1,
                                          timed_steps=steps, device=str(dev))
        try:
            row = timing.measure(net, image_shape, settings, splits.num_classes, objective=objective,
                                 channels_last=is_cnn and dev.type == "cuda")
        except Exception as err:  # the student's DistilledViT, unwritten or broken: the grid will say so itself
            if model != "deit" or "vit" not in train:
                raise
            train[model] = train["vit"] * _recipe_flops("vit", splits.name) / _recipe_flops("deit", splits.name)
            evaluate[model] = evaluate["vit"] * (_recipe_flops("vit", splits.name, evaluated=True)
                                                 / _recipe_flops("deit", splits.name, evaluated=True))
            why = (f"not written yet ({err})" if isinstance(err, NotImplementedError) else
                   f"your distilled ViT's training step raised {type(err).__name__}: {err} (the check cells of "
                   "sections 1 and 2 say more)")
            notes.append(f"The distilled ViT's rates are the ViT's scaled by the counted FLOPs (its teacher's forward "
                         f"pass included): {why}.")
            continue
        train[model], evaluate[model], precision = row["train_images_per_s"], row["infer_images_per_s"], row["precision"]
        log(f"{labels[model]}: {train[model]:,.0f} training images/s, {evaluate[model]:,.0f} evaluated images/s "
            f"(batch {row['batch_size']}, {row['precision']})")
    where = runtime.hardware_info(dev)
    name = where.get("gpu") or where.get("cpu_model") or dev.type
    return Rates(train, evaluate, f"measured on {name} ({dev.type}, {precision}, {torch.get_num_threads()} threads)"
                 if dev.type == "cpu" else f"measured on {name} ({precision})", True, notes)


def budget_rows(sizes: Sequence[int], seeds: int, full_size: int, data: str = "cifar10",
                models: Sequence[str] = SCALING_MODELS, tflops: float = 5.0, max_factor: float = MAX_STEP_FACTOR,
                epochs_scale: float = 1.0, rates: Optional[Rates] = None, val_size: int = 5000,
                test_size: int = 10000, cnn: Optional[dict] = None) -> list[dict]:
    """What a scaling grid costs: per model and size, the epochs `run_scaling` gives it, the images trained and
    evaluated, and the minutes at `rates` (measured, `measure_rates`) or, without them, at a sustained `tflops`
    (an assumption, `assumed_rates`).

    Every epoch also evaluates the `val_size` validation images (to keep the best epoch) and each run the
    `test_size` test images once: with many small epochs that is most of a small set's cost. Start-up and the
    writing of checkpoints (at most once a minute) are not counted. `cnn`: the CNN the grid trains instead of
    ResNet-18 (`run_scaling`'s), for the labels."""
    from vitcourse.training import recipes

    rates = rates or assumed_rates(tflops, data, models)
    labels = SMALL_LABELS if cnn == SMALL_RESNET else LABELS
    rows = []
    for model in models:
        # the counted FLOPs are ResNet-18's and the recipes' ViTs' (another CNN: not counted)
        gflops = None if model == "resnet18" and cnn else _recipe_flops(model, data) / 1e9
        at_full = max(1, round(recipes.default_recipe(data, model)[1].epochs * epochs_scale))
        for size in sorted(sizes):
            epochs = epochs_for_size(size, full_size, at_full, max_factor)
            images, evaluated = epochs * size, epochs * val_size + test_size
            minutes = (images / rates.train[model] + evaluated / rates.evaluate[model]) / 60
            rows.append(dict(model=model, label=labels[model], size=size, epochs=epochs, images=images,
                             evaluated=evaluated, gflops_per_image=gflops,
                             train_per_s=rates.train[model], eval_per_s=rates.evaluate[model],
                             minutes_per_run=minutes, minutes=minutes * seeds, seeds=seeds,
                             epochs_scale=epochs_scale, source=rates.source, measured=rates.measured,
                             notes=list(rates.notes)))
    return rows


def budget_table(rows: list[dict]) -> str:
    """Markdown of `budget_rows`, with the total and where the rates come from."""
    lines = ["| model | training images | epochs | images trained | images evaluated | train images/s | "
             "s / run | min, all seeds |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['size']:,} | {r['epochs']} | {r['images']:,} | {r['evaluated']:,} | "
                     f"{r['train_per_s']:,.0f} | {60 * r['minutes_per_run']:,.0f} | {r['minutes']:.1f} |")
    total = sum(r["minutes"] for r in rows)
    lines.append(f"| **total** | | | | | | | **{total:.0f}** |")
    source = rows[0]["source"] if rows else "no rows"
    lines += ["", f"Rates {source}; the validation set after every epoch and the test set once are counted; "
                  "start-up and checkpoints are not."]
    lines += rows[0]["notes"] if rows else []
    return "\n".join(lines)


@dataclass
class Plan:
    """The longest training that fits a budget: the recipes' epochs × `epochs_scale`, and its `rows`."""

    epochs_scale: float
    rows: list
    budget_minutes: float

    @property
    def minutes(self) -> float:
        return sum(r["minutes"] for r in self.rows)

    @property
    def fits(self) -> bool:
        return self.minutes <= self.budget_minutes

    def __str__(self) -> str:
        verdict = (f"fits the budget of {self.budget_minutes:g} minutes" if self.fits else
                   f"does NOT fit the budget of {self.budget_minutes:g} minutes even at the shortest training: use "
                   "fewer sizes or seeds, or a larger budget")
        return (f"{budget_table(self.rows)}\n\nPlan: the recipes' epochs x {self.epochs_scale:g}, "
                f"{self.minutes:.0f} minutes: it {verdict}.")


PLAN_SCALES = (1.0, 0.75, 0.5, 0.4, 0.3, 0.25, 0.2, 0.15, 0.1)  # the training lengths a plan may choose from


def plan_for_budget(budget_minutes: float, sizes: Sequence[int], seeds: int, full_size: int, *,
                    scales: Sequence[float] = PLAN_SCALES, **budget) -> Plan:
    """The largest of `scales` (the recipes' epochs × scale) whose `budget_rows(...)` total fits `budget_minutes`;
    the smallest scale, marked as not fitting, when none does. `budget`: budget_rows' other arguments (rates=...)."""
    if budget_minutes <= 0:
        raise ValueError(f"budget_minutes must be positive, got {budget_minutes}")
    plan = None
    for scale in sorted(scales, reverse=True):
        plan = Plan(scale, budget_rows(sizes, seeds, full_size, epochs_scale=scale, **budget), budget_minutes)
        if plan.fits:
            return plan
    return plan


def budget_check(rows: list[dict], scaling: "Scaling") -> str:
    """The plan beside what the runs took (their recorded wall time, data loading and start-up included)."""
    lines = ["| model | planned min | took min | took / planned |", "|---|---:|---:|---:|"]
    for model in dict.fromkeys(r["model"] for r in rows):
        planned = sum(r["minutes"] for r in rows if r["model"] == model)
        took = sum(rec.get("wall_time_s", 0.0) for rec in scaling.results.get(model, [])) / 60
        if took:
            lines.append(f"| {scaling.labels.get(model, model)} | {planned:.1f} | {took:.1f} | {took / planned:.2f} |")
    return "\n".join(lines)


def scaling_summary(scaling: Scaling) -> dict:
    """JSON-ready: rows and verdicts (the intervals as numbers), for docs and tests."""
    return {"rows": [{k: v for k, v in r.items()} for r in scaling_rows(scaling)],
            "verdicts": [dict(a=v["a"], b=v["b"], size=v["size"], diff=v["diff"].mean, low=v["diff"].low,
                              high=v["diff"].high, seeds=v["diff"].n, sentence=v["sentence"])
                         for v in scaling_verdicts(scaling)]}


# ---- a pretrained ViT, through the same code ------------------------------------------------------------------------
ONLINE_VIT = "vit_small_patch16_224"  # timm's ViT-S/16 (ImageNet-21k, then 1k): 12 layers of 6 heads, 14x14 patches
PRETRAINED_SIZE = 224


@dataclass
class PretrainedViT:
    """A pretrained ViT and test images prepared as it expects them."""

    model: nn.Module
    images: torch.Tensor  # (B, C, H, W), normalised (and resized) for the model
    label: str  # what figures call it
    image_size: int  # H = W in pixels, as the model sees the images
    online: bool  # real pretrained weights (ViT-S/16) rather than assignment 6's offline backbone


def pretrained_vit(splits, weights=None, out_dir="runs/a8/pretrained", seed: int = 0, count: int = 64,
                   fast: Optional[bool] = None, log=print) -> PretrainedViT:
    """ViT-S/16 (timm, downloaded or read from `weights`) on CIFAR test images resized to 224 px, when the data is
    CIFAR and the weights are in reach (never in fast mode); else assignment 6's backbone pretrained here on the
    digits 0-4 under the 8 symmetries of the square (`transfer_demo.pretrain`, cached in `out_dir`), on digits
    test images. Either way the images are the first `count` test images."""
    import data_utils
    from vitcourse.analysis import features
    from vitcourse.models import pretrained as P
    from vitcourse.training import runtime
    from vitcourse.training import transfer_demo as D

    fast = runtime.fast_mode() if fast is None else fast
    if not fast and splits.name.startswith("cifar"):
        reachable = weights is not None or (not P.offline_by_env() and P.hub_reachable(P.weights_host(ONLINE_VIT)))
        if reachable:
            model = P.create_backbone(ONLINE_VIT, splits.num_classes, pretrained=True, weights=weights).eval()
            images = features.for_imagenet(features.course_images(splits, count)[0], PRETRAINED_SIZE)
            return PretrainedViT(model, images, "ViT-S/16 (ImageNet-21k)", PRETRAINED_SIZE, True)
        log(f"no {ONLINE_VIT} weights here (offline, and WEIGHTS names no file): assignment 6's offline backbone "
            "stands in")
    cfg = D.PRETRAIN_CONFIG
    if fast:
        from vitcourse.training.transfer_setup import FAST_PRETRAIN_EPOCHS

        cfg = dataclasses.replace(cfg, epochs=FAST_PRETRAIN_EPOCHS, warmup_epochs=0)
    path, acc = D.pretrain("vit", Path(out_dir), cfg, seed, log=log)
    name, kwargs = D.DEMO_ARCHS["vit"]
    digits = D.upstream_splits(seed)  # the images and normalisation it was pretrained with
    model = P.create_backbone(name, digits.num_classes, weights=str(path), in_chans=digits.in_chans, **kwargs).eval()
    test = data_utils.load_dataset("digits", seed=seed)
    images = features.normalise_like_training(features.course_images(test, count)[0], test)
    return PretrainedViT(model, images, f"ViT pretrained on digits 0-4 (a6, upstream {acc:.0%})",
                         int(kwargs["img_size"]), False)
