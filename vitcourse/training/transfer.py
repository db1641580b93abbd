"""Transfer learning on one code path: fine-tuning modes, linear probes on cached features, and the offline demo.

Shape legend: B batch, C channels, H/W image height/width, N tokens, D embedding, K classes.

Modes (MODES), each trained by `vitcourse.training.train.train` with the same recipe and budget:
    head     the backbone is frozen — no gradients, and in eval mode, so BatchNorm running statistics,
             dropout and drop-path stay as pretrained (LayerNorm has no statistics; its scale and shift are
             frozen parameters) — and only the new K-class head learns;
    partial  the last k blocks, the final norm and the head learn; everything before stays frozen as above;
    full     everything learns, the backbone at `backbone_lr_scale` × the head's learning rate (a large step
             on pretrained weights destroys what they know before the new head has settled);
    scratch  the same architecture, randomly initialised (no weights are read), the same budget: what
             pretraining is worth;
    probe    the frozen backbone's pooled features are computed ONCE (and cached), then a linear classifier
             (scikit-learn's L-BFGS logistic regression, the classic linear probe) is fitted on them: the
             fast way to do head-only, with no augmentation and no repeated backbone passes.

    spec = BackboneSpec("vit_small_patch16_224", weights="vit_s16.pth", input_size=224)
    results = run_transfer(splits, spec, ("head", "probe", "full"), TrainConfig(epochs=3))
"""
from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import torch
from torch import nn

from data_utils import DatasetSplits, DeviceLoader
from vitcourse.training import runtime
from vitcourse.analysis.interpret import model_attention_statistics
from vitcourse.models import pretrained as P
from vitcourse.training.train import TrainConfig, evaluate, param_groups, train

MODES = ("head", "partial", "full", "scratch", "probe")
DEFAULT_PARTIAL_BLOCKS = 2  # partial: the last 2 blocks (of 12 in ViT-S, the last Swin stage's 2) + head
DEFAULT_BACKBONE_LR_SCALE = 0.1  # full: the backbone learns at a tenth of the head's rate
PROBE_C = 1.0  # inverse L2 strength of the logistic-regression probe (scikit-learn's default)
PROBE_MAX_ITER = 1000  # L-BFGS iterations: enough to converge on standardised features
MIB = 2**20


# ----------------------------------------------------------------------------------------------------
# Which parameters are the head, which are blocks
# ----------------------------------------------------------------------------------------------------
def classifier(model: nn.Module) -> nn.Module:
    """The final classifier of a timm model (`get_classifier()`) or of a torchvision ResNet (`fc`)."""
    net = P.unwrap(model)
    if hasattr(net, "get_classifier"):
        return net.get_classifier()
    if hasattr(net, "fc"):
        return net.fc
    if hasattr(net, "head"):
        return net.head
    raise ValueError(f"cannot find the classifier of {type(net).__name__}: expected get_classifier(), .fc or .head")


def blocks(model: nn.Module) -> list[nn.Module]:
    """The backbone's residual blocks in forward order (ViT `blocks`, Swin `layers[i].blocks`, ResNet
    `layer1..4`); `partial` unfreezes the last k of them."""
    net = P.unwrap(model)
    if hasattr(net, "blocks") and isinstance(net.blocks, nn.Sequential):  # timm ViT, the course ViT
        return list(net.blocks)
    if hasattr(net, "layers") and all(hasattr(stage, "blocks") for stage in net.layers):  # timm Swin
        return [b for stage in net.layers for b in stage.blocks]
    if hasattr(net, "layer4"):  # ResNets
        return [b for name in ("layer1", "layer2", "layer3", "layer4") for b in getattr(net, name)]
    raise ValueError(f"cannot find the blocks of {type(net).__name__}")


def final_norm(model: nn.Module) -> Optional[nn.Module]:
    """The norm after the last block (timm's `norm`; None for ResNets)."""
    norm = getattr(P.unwrap(model), "norm", None)
    return norm if isinstance(norm, nn.Module) and not isinstance(norm, nn.Identity) else None


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (only those with requires_grad when trainable_only)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


class TransferModel(nn.Module):
    """A backbone with some modules frozen: no gradients, and held in eval mode whatever `train()` says.

    The trainer calls `model.train()` every epoch; frozen modules go straight back to `eval()`, so their
    BatchNorm running statistics never move and their dropout / drop-path stay off. `optimizer_groups`
    gives the trainer the lower learning rate of the backbone in `full` mode.
    """

    def __init__(self, net: nn.Module, frozen: Sequence[nn.Module] = (), backbone_lr_scale: float = 1.0):
        super().__init__()
        self.net = net
        self.frozen = list(frozen)  # plain list: not registered twice as submodules
        self.backbone_lr_scale = float(backbone_lr_scale)
        for module in self.frozen:
            module.requires_grad_(False)
        self.train()

    def train(self, mode: bool = True) -> "TransferModel":
        super().train(mode)
        for module in self.frozen:
            module.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> logits (B, K)."""
        return self.net(x)

    def optimizer_groups(self, weight_decay: float) -> list[dict]:
        """The trainer's decay / no-decay groups, split into head (lr × 1) and backbone (lr × scale)."""
        head_ids = {id(p) for p in classifier(self.net).parameters()}
        groups = []
        for is_head in (True, False):
            scale = 1.0 if is_head else self.backbone_lr_scale
            for group in param_groups(self.net, weight_decay):
                params = [p for p in group["params"] if (id(p) in head_ids) == is_head]
                if params:
                    groups.append({"params": params, "weight_decay": group["weight_decay"], "lr_scale": scale})
        return groups


def prepare(net: nn.Module, mode: str, partial_blocks: int = DEFAULT_PARTIAL_BLOCKS,
            backbone_lr_scale: float = DEFAULT_BACKBONE_LR_SCALE, finetune=None) -> TransferModel:
    """Freeze `net` for `mode` with `finetune.set_trainable` (the student's, or the course's reference) and
    wrap it for the trainer, which then holds the returned frozen subtrees in eval mode every epoch."""
    if mode not in MODES or mode == "probe":
        raise ValueError(f"unknown mode {mode!r}: choose from {', '.join(m for m in MODES if m != 'probe')}")
    from vitcourse.analysis.transfer_report import reference_finetune

    finetune = finetune or reference_finetune()
    body = P.unwrap(net)
    frozen = finetune.set_trainable(body, "full" if mode == "scratch" else mode, partial_blocks)
    modules = [body.get_submodule(name) for name in frozen]
    return TransferModel(net, modules, backbone_lr_scale if mode == "full" else 1.0)


# ----------------------------------------------------------------------------------------------------
# Linear probe on cached features
# ----------------------------------------------------------------------------------------------------
@torch.no_grad()
def pooled_features(model: nn.Module, images: torch.Tensor, *, mean, std, batch_size: int = 256,
                    device=None) -> torch.Tensor:
    """The backbone's pooled pre-logits features of uint8 images (B, C, H, W): float32 (B, D) on the CPU."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    net = P.unwrap(model)
    resize = model if isinstance(model, P.ResizeInput) else None
    loader = DeviceLoader(images, torch.zeros(len(images), dtype=torch.long), batch_size, mean=mean, std=std,
                          device=device)
    was_training = model.training
    model.eval()
    out = []
    try:
        for x, _ in loader:
            if resize is not None and x.shape[-1] != resize.size:
                x = torch.nn.functional.interpolate(x, size=(resize.size,) * 2, mode="bilinear", align_corners=False,
                                                    antialias=x.shape[-1] > resize.size)
            if hasattr(net, "forward_head"):  # timm: tokens -> pooled, normed features (B, D)
                f = net.forward_head(net.forward_features(x), pre_logits=True)
            else:  # torchvision ResNet: everything but fc
                fc, net.fc = net.fc, nn.Identity()
                try:
                    f = net(x)
                finally:
                    net.fc = fc
            out.append(f.float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out)


class FeatureCache:
    """Features of a frozen backbone, computed once per (weights, images) and reused afterwards.

    Keys hash the backbone's state dict and the images, so a changed model or data set never reads stale
    features. With a `folder` the features also survive the process (one .pt file per key).
    """

    def __init__(self, folder: Optional[Path] = None):
        self.folder = Path(folder) if folder is not None else None
        self.memory: dict[str, torch.Tensor] = {}
        self.computed = 0  # feature extractions actually run (tests check reuse with it)
        self.hits = 0

    @staticmethod
    def key(model: nn.Module, images: torch.Tensor, tag: str = "") -> str:
        h = hashlib.sha256(tag.encode())
        for name, t in P.unwrap(model).state_dict().items():
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        h.update(images.cpu().contiguous().numpy().tobytes())
        return h.hexdigest()[:24]

    def get(self, model: nn.Module, images: torch.Tensor, **kw) -> torch.Tensor:
        """Cached features of `images` (B, C, H, W) -> (B, D); computed by `pooled_features` on a miss."""
        key = self.key(model, images)
        if key in self.memory:
            self.hits += 1
            return self.memory[key]
        path = self.folder / f"features_{key}.pt" if self.folder is not None else None
        if path is not None and path.is_file():
            self.hits += 1
            feats = torch.load(path, weights_only=True)
        else:
            self.computed += 1
            feats = pooled_features(model, images, **kw)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.save(feats, path)
        self.memory[key] = feats
        return feats


def fit_probe(train_x: torch.Tensor, train_y: torch.Tensor, C: float = PROBE_C, seed: int = 0):
    """A standardised multinomial logistic regression on features (B, D) -> a fitted scikit-learn pipeline."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=PROBE_MAX_ITER, random_state=seed))
    return probe.fit(train_x.numpy(), train_y.numpy())


# ----------------------------------------------------------------------------------------------------
# Running the modes
# ----------------------------------------------------------------------------------------------------
@dataclass
class BackboneSpec:
    """How to build the backbone of every mode (all but `scratch` read `weights`, or download)."""

    name: str  # timm name or 'resnet50'
    weights: Optional[str] = None  # local weights file; None downloads (pretrained modes)
    img_size: Optional[int] = None  # timm: build for this input size (position tables resampled)
    input_size: Optional[int] = None  # resize the data's images to this size first
    arch: dict = field(default_factory=dict)  # timm architecture overrides (small demo models)

    def build(self, num_classes: int, in_chans: int, pretrained: bool = True) -> nn.Module:
        arch = dict(self.arch)
        img_size = self.img_size if self.img_size is not None else arch.pop("img_size", None)
        arch.pop("img_size", None)
        return P.create_backbone(self.name, num_classes, pretrained=pretrained,
                                 weights=self.weights if pretrained else None, img_size=img_size,
                                 in_chans=in_chans, input_size=self.input_size, **arch)


@dataclass
class ModeResult:
    """What one mode measured (the JSON report holds a list of these as dicts)."""

    mode: str
    trainable_params: int  # parameters that receive gradients (probe: the linear classifier's)
    total_params: int  # backbone + head
    epoch_time_s: float  # mean training time per epoch (probe: feature extraction + fit, once)
    peak_gpu_mem_mib: Optional[float]  # torch.cuda.max_memory_allocated during the mode; None on CPU
    test_accuracy: float
    val_accuracy: float  # best validation accuracy (nan without validation)
    wall_time_s: float
    predictions: list = field(default_factory=list)  # test predictions, for the disagreement analysis
    extra: dict = field(default_factory=dict)  # mode-specific facts (feature time, cache hits, history)
    # `interpret.model_attention_statistics` (with finetune.attention_statistics) of the trained model on the test images (the last block's
    # class-token-to-patch attention: mean, std, mass_fraction, centre_edge_ratio); None without a class
    # token (Swin, ResNet) or when switched off. head and probe keep the pretrained attention: it is frozen.
    attention: Optional[dict] = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _peak_memory(device: torch.device) -> Optional[float]:
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / MIB


def run_mode(splits: DatasetSplits, spec: BackboneSpec, mode: str, cfg: TrainConfig, *,
             partial_blocks: int = DEFAULT_PARTIAL_BLOCKS, backbone_lr_scale: float = DEFAULT_BACKBONE_LR_SCALE,
             cache: Optional[FeatureCache] = None, finetune=None, keep_models: bool = False,
             attention_stats: bool = True) -> ModeResult:
    """Build the backbone for `mode`, train (or probe) it on `splits` and measure it.

    `finetune`: the module whose `set_trainable` freezes the backbone and whose `attention_statistics`
    summarises the attention (the student's in assignment 6; None: the course's reference). `keep_models`:
    the trained model rides along as `result.model` (not in the JSON; probe: the frozen backbone).
    `attention_stats`: measure the trained ViT's last-block class-token attention on the test images
    (`result.attention`; one more forward pass over them, outside `wall_time_s`; None without a class token).
    """
    device = runtime.pick_device(cfg.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    runtime.seed_everything(cfg.seed)  # the new head's initialisation is the same in every mode
    net = spec.build(splits.num_classes, splits.in_chans, pretrained=mode != "scratch")
    start = time.perf_counter()
    if mode == "probe":
        model, result = net, _run_probe(splits, net, cfg, device, cache or FeatureCache(), start)
    else:
        model = prepare(net, mode, partial_blocks, backbone_lr_scale, finetune)
        trained = train(model, splits, cfg)
        test = evaluate(model, splits.test_images, splits.test_labels, mean=splits.mean, std=splits.std,
                        batch_size=cfg.eval_batch_size, precision=cfg.precision)
        times = [r["epoch_time_s"] for r in trained.history]
        result = ModeResult(mode, count_parameters(model, True), count_parameters(model), float(np.mean(times)),
                            _peak_memory(device), test.accuracy, trained.best_val_acc, time.perf_counter() - start,
                            test.predictions.tolist(), {"history": trained.history})
    if attention_stats:
        from vitcourse.analysis.transfer_report import reference_finetune

        stats = (finetune or reference_finetune()).attention_statistics
        try:
            result.attention = model_attention_statistics(model, splits.test_images, stats, mean=splits.mean,
                                                          std=splits.std, batch_size=cfg.eval_batch_size,
                                                          device=device)
        except NotImplementedError as err:  # a student's finetune.py before attention_statistics is written
            result.extra["attention"] = f"not measured: {err}"
    if keep_models:
        result.model = model.eval()  # an attribute, not a field: to_dict() never serialises a model
    return result


def _run_probe(splits, net, cfg, device, cache, start) -> ModeResult:
    net.to(device)
    hits = cache.hits
    t0 = time.perf_counter()
    kw = dict(mean=splits.mean, std=splits.std, batch_size=cfg.eval_batch_size, device=device)
    train_x = cache.get(net, splits.train_images, **kw)
    test_x = cache.get(net, splits.test_images, **kw)
    val_x = cache.get(net, splits.val_images, **kw) if len(splits.val_labels) else None
    feature_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    probe = fit_probe(train_x, splits.train_labels, seed=cfg.seed)
    fit_s = time.perf_counter() - t1
    preds = torch.as_tensor(probe.predict(test_x.numpy()))
    test_acc = (preds == splits.test_labels).float().mean().item()
    val_acc = float("nan") if val_x is None else float(probe.score(val_x.numpy(), splits.val_labels.numpy()))
    lin = probe[-1]
    trainable = int(lin.coef_.size + lin.intercept_.size)
    return ModeResult("probe", trainable, count_parameters(net), feature_s + fit_s, _peak_memory(device), test_acc,
                      val_acc, time.perf_counter() - start, preds.tolist(),
                      {"feature_time_s": feature_s, "fit_time_s": fit_s, "feature_dim": int(train_x.shape[1]),
                       "cache_hits": cache.hits - hits})


def run_transfer(splits: DatasetSplits, spec: BackboneSpec, modes: Iterable[str] = MODES,
                 cfg: Optional[TrainConfig] = None, mode_lr: Optional[dict] = None, log=None, **kw) -> list[ModeResult]:
    """Every mode in `modes` with the same recipe `cfg` (one call of `run_mode` each); `mode_lr` gives a mode
    its own peak learning rate (e.g. {"head": 5e-3}: a new head alone tolerates a larger step). `log` hears one
    line per mode as it starts and ends (a notebook cell that trains for minutes must not sit silent)."""
    import time

    cfg = cfg or TrainConfig(epochs=10, progress=False)
    mode_lr = mode_lr or {}
    modes = list(modes)
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError(f"unknown modes {unknown}: choose from {', '.join(MODES)}")
    cache = kw.pop("cache", None) or FeatureCache()
    results = []
    for i, mode in enumerate(modes, start=1):
        if log:
            log(f"{spec.name}: mode {mode} ({i}/{len(modes)}) ...")
        start = time.perf_counter()
        results.append(run_mode(splits, spec, mode, dataclasses.replace(cfg, lr=mode_lr.get(mode, cfg.lr)), cache=cache,
                                **kw))
        if log:
            log(f"{spec.name}: mode {mode} done in {time.perf_counter() - start:.0f} s, test accuracy "
                f"{results[-1].test_accuracy:.1%}")
    return results
