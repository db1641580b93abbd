"""The assignment's sweep: every model's closed-form size and cost next to what was measured and trained.

Shape legend: B batch, C channels, H/W image height/width, P patch size, N tokens, D embedding,
h heads, d head dim, K classes.

The assignment compares ViTs (patch 4×4 and 8×8, D 256 and 512, depth 4 and 8, 2 and 4 heads, MLP 4×)
with ResNet-18 in its CIFAR and ImageNet forms, with CIFAR-10 and CIFAR-100 heads. For each model a row
holds closed-form parameters and GFLOPs (`vitcourse.analysis.complexity`), measurements on the machine it runs
on (`vitcourse.analysis.timing`: time per step and per epoch, throughput, peak memory — see its docstring for
the method) and, when training results are supplied, the test accuracy.

Typical use in a notebook::

    from vitcourse.analysis import sweep
    rows = sweep.run_sweep(sweep.assignment_specs(), sweep.MeasureSettings(timed_steps=2), progress=print)
    rows = sweep.attach_results(rows, sweep.load_training_results("runs/"))   # adds the accuracy column
    print(sweep.to_markdown(rows)); sweep.plot_tradeoffs(rows)

Public API: ModelSpec, assignment_specs, spec_row, run_sweep, load_training_results, attach_results,
to_markdown, write_csv, save_outputs, COLUMNS; re-exported: MeasureSettings, measure (vitcourse.analysis.timing),
plot_tradeoffs, plot_cost (vitcourse.analysis.sweep_plots).
"""
from __future__ import annotations

import csv
import itertools
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Union

from vitcourse.analysis import complexity
from vitcourse.analysis.sweep_plots import plot_cost, plot_tradeoffs
from vitcourse.analysis.timing import EPOCH_IMAGES, MeasureSettings, measure

# The configurations the assignment names.
ASSIGNMENT_GRID = dict(patch_size=(4, 8), embed_dim=(256, 512), depth=(4, 8), num_heads=(2, 4), mlp_ratio=(4.0,))
DATASET_CLASSES = {"CIFAR-10": 10, "CIFAR-100": 100}
CIFAR_DATA = ("cifar10", "cifar100")  # `vitcourse train --data` names of the data the sweep compares on
CIFAR_IMAGE_SIZE = 32  # pixels, square
CIFAR_CHANNELS = 3
# ViTConfig fields that change the architecture's size (the others — dropout, init — do not).
SIZE_FIELDS = ("image_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads", "mlp_ratio", "qkv_bias",
               "pos_embed", "pool")

# Columns of the table: (key, Markdown header, format; 'sig' = about 3 significant digits). CSV keeps every key.
COLUMNS = (
    ("name", "Model", "{}"),
    ("dataset", "Data", "{}"),
    ("params", "Params (M)", "{:.2f}"),
    ("gflops", "GFLOPs/img", "{:.3f}"),
    ("epoch_time_s", "Time/epoch (s)", "sig"),
    ("train_images_per_s", "Train img/s", "sig"),
    ("infer_images_per_s", "Infer img/s", "sig"),
    ("peak_memory_mib", "Peak mem (MiB)", "sig"),
    ("accuracy", "Test acc (%)", "{:.1f}"),
)
# Shown only when some row has it: the epoch time measured by the training run itself (its own hardware).
OPTIONAL_COLUMNS = (("trained_epoch_time_s", "Trained s/epoch", "sig"),)


# ------------------------------------------------------------------------------------------------ models
@dataclass(frozen=True)
class ModelSpec:
    """One model of the sweep: which family, how many classes, and the ViT's sizes."""

    model: str = "vit"  # one of complexity.MODELS ('vit', 'resnet18_cifar', 'resnet18_imagenet')
    num_classes: int = 10  # K: 10 for CIFAR-10, 100 for CIFAR-100
    vit: tuple = ()  # ViTConfig fields as sorted (name, value) pairs (hashable); empty for ResNet-18

    @classmethod
    def make(cls, model: str = "vit", num_classes: int = 10, **vit_options) -> "ModelSpec":
        """ModelSpec.make('vit', 100, patch_size=4, embed_dim=256) — validates the sizes right away."""
        model = complexity.canonical_model(model)
        if model != "vit" and vit_options:
            raise TypeError(f"{model} has fixed sizes; ViT options {sorted(vit_options)} do not apply")
        # Lists (an (H, W) image size read from JSON) become tuples so that a spec is hashable.
        options = {k: tuple(v) if isinstance(v, list) else v for k, v in vit_options.items()}
        spec = cls(model, num_classes, tuple(sorted(options.items())))
        spec.complexity()  # raises a clear error for impossible sizes now, not in the middle of a sweep
        return spec

    @property
    def options(self) -> dict:
        return dict(self.vit)

    @property
    def name(self) -> str:
        """A short label: 'ViT P4 D256 L8 h4' or 'ResNet-18 CIFAR'."""
        if self.model != "vit":
            return "ResNet-18 " + ("CIFAR" if self.model.endswith("cifar") else "ImageNet")
        o = complexity.vit_config(**self.options)
        ratio = "" if o.mlp_ratio == ASSIGNMENT_GRID["mlp_ratio"][0] else f" M{o.mlp_ratio:g}"
        return f"ViT P{o.patch_size} D{o.embed_dim} L{o.depth} h{o.num_heads}{ratio}"

    @property
    def dataset(self) -> str:
        names = {k: name for name, k in DATASET_CLASSES.items()}
        return names.get(self.num_classes, f"{self.num_classes} classes")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the input."""
        if self.model == "vit":
            cfg = complexity.vit_config(**self.options)
            return (cfg.in_chans, *cfg.image_hw)
        return (CIFAR_CHANNELS, CIFAR_IMAGE_SIZE, CIFAR_IMAGE_SIZE)

    def complexity(self) -> dict:
        """Closed-form parameters and FLOPs (`complexity.model_complexity`)."""
        if self.model == "vit":
            return complexity.model_complexity("vit", num_classes=self.num_classes, **self.options)
        return complexity.model_complexity(self.model, num_classes=self.num_classes)

    def key(self) -> tuple:
        """What identifies the architecture (used to match training results to rows)."""
        if self.model != "vit":
            return (self.model, self.num_classes)
        cfg = complexity.vit_config(num_classes=self.num_classes, **self.options)
        sizes = tuple((name, getattr(cfg, name)) for name in SIZE_FIELDS)
        return (self.model, self.num_classes, sizes)

    def build(self):
        """A freshly initialised model (the reference ViT, or ResNet-18 from `vitcourse.models.resnet`)."""
        if self.model == "vit":
            from coursecore import impl

            return impl.reference().ViT.ViT(complexity.vit_config(num_classes=self.num_classes, **self.options))
        from vitcourse.models import resnet

        if self.model == "resnet18_cifar":
            return resnet.resnet18_cifar(self.num_classes)
        return resnet.resnet18_imagenet(self.num_classes)


def assignment_specs(num_classes: Iterable[int] = tuple(DATASET_CLASSES.values()), include_resnet: bool = True,
                     **grid_overrides) -> list[ModelSpec]:
    """Every configuration the assignment names (16 ViTs, 2 ResNet-18 forms) for each head size.

    Args:
        num_classes: head sizes; (10, 100) covers CIFAR-10 and CIFAR-100.
        include_resnet: add ResNet-18 in its CIFAR and ImageNet forms.
        **grid_overrides: replace an axis of ASSIGNMENT_GRID, e.g. depth=(4,) for a quicker sweep.
    """
    unknown = sorted(set(grid_overrides) - set(ASSIGNMENT_GRID))
    if unknown:
        raise TypeError(f"unknown sweep axis {unknown}: the axes are {sorted(ASSIGNMENT_GRID)}")
    grid = {**ASSIGNMENT_GRID, **{k: tuple(v) for k, v in grid_overrides.items()}}
    specs = []
    for k in num_classes:
        for values in itertools.product(*grid.values()):
            specs.append(ModelSpec.make("vit", k, **dict(zip(grid, values))))
        if include_resnet:
            specs += [ModelSpec.make("resnet18_cifar", k), ModelSpec.make("resnet18_imagenet", k)]
    return specs

def spec_row(spec: ModelSpec) -> dict:
    """The closed-form part of a table row for `spec` (no measurement)."""
    c = spec.complexity()
    row = dict(name=spec.name, model=spec.model, dataset=spec.dataset, num_classes=spec.num_classes,
               params=c["params"] / 1e6, params_exact=c["params"], gflops=c["gflops"],
               train_gflops=complexity.FLOPS_PER_MAC * c["training_macs"] / 1e9, _key=spec.key())
    if spec.model == "vit":
        cfg = complexity.vit_config(num_classes=spec.num_classes, **spec.options)
        row.update(patch_size=cfg.patch_size, embed_dim=cfg.embed_dim, depth=cfg.depth, num_heads=cfg.num_heads,
                   mlp_ratio=cfg.mlp_ratio, tokens=cfg.num_tokens)
    return row


def run_sweep(specs: Iterable[ModelSpec], settings: Optional[MeasureSettings] = None, measure_models: bool = True,
              progress: Optional[Callable[[str], None]] = None) -> list[dict]:
    """One row per spec: closed forms, and measurements unless measure_models is False.

    Args:
        specs: e.g. assignment_specs().
        settings: MeasureSettings for every model.
        measure_models: False gives the closed-form columns only (instant).
        progress: called with a line per model (e.g. print) so a long sweep shows that it moves.
    """
    import torch

    settings = settings or MeasureSettings()
    rows = []
    for spec in specs:
        row = spec_row(spec)
        if measure_models:
            if progress:
                progress(f"measuring {spec.name} ({spec.dataset}) ...")
            torch.manual_seed(settings.seed)
            try:
                row.update(measure(spec.build(), spec.image_shape, settings, spec.num_classes))
            except torch.cuda.OutOfMemoryError:
                # Keep the rows measured so far meaningful: say which model and what to change.
                raise RuntimeError(f"{spec.name} ({spec.dataset}) does not fit in GPU memory with batch "
                                   f"{settings.batch_size or 'default'}; lower MeasureSettings.batch_size "
                                   f"(--batch-size)") from None
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------- training results
def _read_result(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not a JSON file from `vitcourse.training.train --json` ({err})") from None
    config = data.get("config") if isinstance(data, dict) else None
    if not isinstance(config, dict) or "model" not in config or "test_accuracy" not in data:
        raise ValueError(f"{path}: expected the output of `vitcourse.training.train --json` with keys 'config' "
                         f"(holding 'model') and 'test_accuracy'; found keys {sorted(data) if isinstance(data, dict) else type(data).__name__}")
    return data


def _classes_of(config: dict, path: Path) -> int:
    model_config = config.get("model_config") or {}
    if isinstance(model_config, dict) and model_config.get("num_classes"):
        return int(model_config["num_classes"])
    data = config.get("data")
    name = json.dumps(data).lower() if data is not None else ""
    if "cifar100" in name.replace("-", "").replace("_", ""):
        return DATASET_CLASSES["CIFAR-100"]
    if "cifar10" in name.replace("-", "").replace("_", ""):
        return DATASET_CLASSES["CIFAR-10"]
    raise ValueError(f"{path}: cannot tell the number of classes: neither config.model_config.num_classes "
                     f"nor a CIFAR-10/100 name in config.data ({data!r})")


def load_training_results(paths: Union[str, Path, Iterable[Union[str, Path]]],
                          on_skip: Optional[Callable[[str], None]] = None) -> list[dict]:
    """Read `vitcourse.training.train --json` outputs (files, or folders searched for *.json).

    The sweep compares models on CIFAR-sized RGB images, so runs on other data (config.data 'digits' or
    'synthetic', or a ResNet on other than 3 channels) are left out; `on_skip` (e.g. print) hears why.
    A ResNet run's form comes from config.model_config.arch ('resnet18_cifar' or 'resnet18_imagenet').

    Returns:
        One dict per run: 'spec' (ModelSpec), 'accuracy' (percent), 'wall_time_s', 'trained_epoch_time_s'
        (mean of history[*].epoch_time_s, or None), 'source' (the file).
    """
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(p.glob("*.json"))
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"training result {p} does not exist (give a --json file of vitcourse.training.train "
                                    f"or a folder holding them)")
    results = []
    for path in files:
        data = _read_result(path)
        config = data["config"]
        model_config = dict(config.get("model_config") or {})
        data_name = config.get("data")
        if isinstance(data_name, str) and data_name.lower().replace("-", "") not in CIFAR_DATA:
            if on_skip:
                on_skip(f"{path}: trained on {data_name!r}, not CIFAR-10/100: left out of the sweep")
            continue
        model = str(model_config.get("arch") or config["model"]).lower()
        if model.startswith("resnet") and model not in complexity.MODELS and model not in complexity.MODEL_ALIASES:
            model = "resnet18_imagenet" if "imagenet" in model else "resnet18_cifar"
        if model.startswith("resnet") and model_config.get("in_chans", CIFAR_CHANNELS) != CIFAR_CHANNELS:
            if on_skip:
                on_skip(f"{path}: a ResNet on {model_config['in_chans']}-channel images: left out of the sweep")
            continue
        K = _classes_of(config, path)
        try:
            if complexity.canonical_model(model) == "vit":
                spec = ModelSpec.make("vit", K, **{k: v for k, v in model_config.items() if k in SIZE_FIELDS})
            else:
                spec = ModelSpec.make(model, K)
        except (ValueError, TypeError) as err:
            raise ValueError(f"{path}: {err}") from None
        epochs = [h.get("epoch_time_s") for h in data.get("history") or [] if isinstance(h, dict)]
        epochs = [t for t in epochs if isinstance(t, (int, float))]
        accuracy = float(data["test_accuracy"])
        results.append(dict(spec=spec, accuracy=100.0 * accuracy if accuracy <= 1.0 else accuracy,
                            wall_time_s=data.get("wall_time_s"),
                            trained_epoch_time_s=statistics.mean(epochs) if epochs else None, source=str(path)))
    return results


def attach_results(rows: list[dict], results: list[dict]) -> list[dict]:
    """Fill the accuracy column from training results (matched by architecture and number of classes).

    A result whose model is not among the rows adds a row of its own (closed forms only). The best
    accuracy wins when a model was trained more than once. Returns a new list; `rows` is not changed.
    """
    out = [dict(row) for row in rows]
    for result in results:
        spec = result["spec"]
        target = next((r for r in out if r.get("_key") == spec.key()), None)
        if target is None:
            target = spec_row(spec)
            out.append(target)
        if target.get("accuracy") is None or result["accuracy"] > target["accuracy"]:
            target.update(accuracy=result["accuracy"], trained_epoch_time_s=result["trained_epoch_time_s"],
                          wall_time_s=result["wall_time_s"], result_source=result["source"])
    return out


# ------------------------------------------------------------------------------------------- tables
def _cell(value, fmt: str) -> str:
    """Format a table cell; 'sig' keeps about three significant digits (1.25, 12.5, 1,250)."""
    if value is None:
        return "–"
    if fmt != "sig":
        return fmt.format(value)
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def to_markdown(rows: list[dict]) -> str:
    """A Markdown table of COLUMNS (plus OPTIONAL_COLUMNS that some row fills); missing cells show '–'."""
    columns = COLUMNS + tuple(c for c in OPTIONAL_COLUMNS if any(row.get(c[0]) is not None for row in rows))
    header = "| " + " | ".join(title for _, title, _ in columns) + " |"
    rule = "|" + "|".join("---" if key in ("name", "dataset") else "---:" for key, _, _ in columns) + "|"
    lines = [header, rule]
    for row in rows:
        cells = [_cell(row.get(key), fmt) for key, _, fmt in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(rows: list[dict], path: Union[str, Path]) -> Path:
    """Every key of every row (first COLUMNS, then the rest in first-seen order) as CSV."""
    path = Path(path)
    keys = [key for key, _, _ in COLUMNS]
    for row in rows:
        keys += [k for k in row if k not in keys and not k.startswith("_")]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path

# ------------------------------------------------------------------------------------------- outputs
def save_outputs(rows: list[dict], out_dir: Union[str, Path]) -> list[Path]:
    """Write sweep.csv, sweep.md and the plots that the rows allow (tradeoffs.png, cost.png) to out_dir."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [write_csv(rows, out / "sweep.csv")]
    (out / "sweep.md").write_text(to_markdown(rows) + "\n", encoding="utf-8")
    paths.append(out / "sweep.md")
    for name, plot in (("tradeoffs.png", plot_tradeoffs), ("cost.png", plot_cost)):
        try:
            fig = plot(rows)
        except ValueError:
            continue  # nothing to plot (e.g. no measurements): the table still stands
        fig.savefig(out / name, dpi=120)
        paths.append(out / name)
    return paths


__all__ = ["ASSIGNMENT_GRID", "COLUMNS", "DATASET_CLASSES", "EPOCH_IMAGES", "MeasureSettings", "ModelSpec",
           "assignment_specs", "attach_results", "load_training_results", "measure", "plot_cost", "plot_tradeoffs",
           "run_sweep", "save_outputs", "spec_row", "to_markdown", "write_csv"]
