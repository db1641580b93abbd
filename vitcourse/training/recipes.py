"""Default recipes: a model config and a `TrainConfig` for each (dataset, model) pair of the course.

Shape legend: B batch, C channels, H/W image height/width, P patch size, N tokens, D embedding, h heads,
K classes.

Every choice is written down with its reason, so a notebook can print a recipe and discuss it. The
targets they are built for (see docs/benchmarks.md for what was measured, and what could not be):
    digits   ViT       >= 97% test accuracy in <= 60 s on 2 CPU cores
    cifar10  ViT       >= 85% in <= 10 min on a T4;   ResNet-18 >= 93% in <= 5 min on a T4
    cifar100 ViT       >= 60% in <= 30 min on a T4
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from torch import nn

from data_utils import AugmentConfig
from vitcourse.training.train import TrainConfig

MODELS = ("vit", "resnet18")
# Assignment 8's distilled ViT (the student's deit.DistilledViT): the ViT's recipe; it trains only with a teacher
# (`vitcourse.analysis.ablate` with Settings.teacher), so `vitcourse train` does not offer it.
DISTILLED_MODELS = ("deit",)
RECIPE_DATA = ("digits", "cifar10", "cifar100", "synthetic")

# CIFAR augmentation: 4-pixel crops and flips are the standard pair; cutout of an 8-pixel square (a quarter
# of the side) regularises the data-hungry ViT, which has no convolutional prior.
CIFAR_AUGMENT = AugmentConfig(crop_prob=1.0, crop_padding=4, flip_prob=0.5, cutout_prob=0.5, cutout_size=8)
# Digits: none by default (see the digits ViT recipe). A student who turns shifts on gets 1 pixel of padding,
# the scale of an 8x8 image; flips stay off (a mirrored digit is another symbol, or none).
DIGITS_AUGMENT = AugmentConfig(crop_prob=0.0, crop_padding=1, flip_prob=0.0, cutout_prob=0.0)
SYNTHETIC_AUGMENT = AugmentConfig.none()  # unit-test data: nothing to learn but the class prototype


def _vit(data: str, num_classes: int, in_chans: int) -> dict:
    if data == "digits":
        # 2x2 patches of an 8x8 image give 16 tokens; 64 wide and 4 deep is ~140k parameters, enough for
        # 1,300 training images and fast on a CPU. Dropout 0.1 (with the 40 epochs below) lifted the recipe
        # from 2 to 4 of 5 seeds at >= 97%; 0.2 and 0.3 did worse. 8 heads of 8 (the same parameters as 4
        # of 16) lifted seeds 0-9 from 7 to 9 of 10 with 1 and with 2 threads, though the mean gain (+0.2
        # points) is within the seeds' noise (docs/ablations.md).
        return dict(image_size=8, patch_size=2, in_chans=in_chans, num_classes=num_classes, embed_dim=64,
                    depth=4, num_heads=8, mlp_ratio=2.0, drop_rate=0.1)
    if data == "synthetic":
        return dict(image_size=8, patch_size=2, in_chans=in_chans, num_classes=num_classes, embed_dim=32,
                    depth=2, num_heads=2, mlp_ratio=2.0)
    # CIFAR: 4x4 patches give 64 tokens (+ class token). 256 wide, 6 deep, 8 heads of 32 and an MLP ratio of
    # 2 (~3.2M parameters) is the size published small-ViT CIFAR recipes train in minutes on one GPU;
    # stochastic depth 0.1 fights over-fitting on 45,000 images.
    return dict(image_size=32, patch_size=4, in_chans=in_chans, num_classes=num_classes, embed_dim=256,
                depth=6, num_heads=8, mlp_ratio=2.0, drop_path_rate=0.1)


def _train(data: str, model: str) -> TrainConfig:
    if data == "digits" and model == "vit":
        # Small batches give many steps on a small set. Measured on 2 CPU cores (docs/benchmarks.md):
        # plain AdamW at a constant lr reaches ~95%; warm-up + cosine, label smoothing and clipping reach
        # ~97-98% in 30 epochs. Augmentation is off: on 8x8 digits even 1-pixel shifts cost ~15 points in
        # a 30-epoch budget (a shift moves every pixel across the 2x2 patch borders).
        # The last epoch is tested, not the best on validation: 144 validation images (0.7 points each) make
        # the validation curve so noisy that its first maximum was often an early epoch that tested 1-3
        # points worse, and which epoch won changed with the thread count. Over 5 seeds (docs/ablations.md)
        # the 30-epoch recipe tested at its best-validation epoch reached 97% on 2 of 5. This one, with the
        # 8-head ViT above, on 5 of seeds 0-4 and 4 of seeds 5-9 with 1 and with 2 threads, 32-47 s per
        # `vitcourse train` on 2 cores (2026-12-03, AVX512). Weight decay 0.02 / 0.1, 50 epochs, batch 32,
        # lr 5e-4, width 96, MLP ratio 4, drop-path 0.1, mean pooling and weight averages (EMA, SWA) were
        # no better.
        return TrainConfig(epochs=40, batch_size=64, lr=1e-3, warmup_epochs=2, weight_decay=0.05,
                           label_smoothing=0.1, grad_clip=1.0, augment=DIGITS_AUGMENT, select_epoch="last")
    if data == "digits":
        return TrainConfig(epochs=15, batch_size=64, lr=0.05, optimizer="sgd", weight_decay=5e-4,
                           warmup_epochs=1, label_smoothing=0.1, augment=DIGITS_AUGMENT)
    if data == "synthetic":
        lr, opt = (3e-3, "adamw") if model == "vit" else (0.05, "sgd")
        return TrainConfig(epochs=5, batch_size=64, lr=lr, optimizer=opt, warmup_epochs=1,
                           weight_decay=0.05 if model == "vit" else 5e-4, augment=SYNTHETIC_AUGMENT)
    if model == "vit":
        # Batch 512 and lr 1e-3 (AdamW) is the usual small-ViT pairing; 5 warm-up epochs keep attention
        # from collapsing early. CIFAR-100 has 10x fewer images per class and needs the longer schedule.
        epochs = 50 if data == "cifar10" else 100
        return TrainConfig(epochs=epochs, batch_size=512, lr=1e-3, warmup_epochs=5, weight_decay=0.05,
                           label_smoothing=0.1, augment=CIFAR_AUGMENT, eval_batch_size=1024)
    # ResNet-18: Nesterov SGD, lr 0.2 for batch 512 (0.1 per 256 scaled up, a little under linear),
    # weight decay 5e-4, a short warm-up; the CNN's prior lets it converge in 20-30 epochs.
    epochs = 20 if data == "cifar10" else 30
    return TrainConfig(epochs=epochs, batch_size=512, lr=0.2, optimizer="sgd", weight_decay=5e-4,
                       warmup_epochs=2, label_smoothing=0.1, augment=CIFAR_AUGMENT, eval_batch_size=1024)


def default_recipe(data: str, model: str = "vit", num_classes: Optional[int] = None,
                   in_chans: Optional[int] = None) -> tuple[dict, TrainConfig]:
    """The documented default (model config, TrainConfig) for `data` in RECIPE_DATA and `model` in MODELS.

    The model config is a plain dict: `ViT.ViT(**config)` for 'vit' (reference or student code alike),
    `build_model('resnet18', config)` for 'resnet18'. num_classes / in_chans override the dataset's own
    (e.g. after selecting a class subset).
    """
    if data not in RECIPE_DATA:
        raise ValueError(f"no recipe for data {data!r}: choose one of {', '.join(RECIPE_DATA)}")
    if model not in MODELS + DISTILLED_MODELS:
        raise ValueError(f"unknown model {model!r}: choose one of {', '.join(MODELS)}")
    from data_utils.datasets import SYNTHETIC_SIZES

    defaults = {"digits": (10, 1), "cifar10": (10, 3), "cifar100": (100, 3),
                "synthetic": (SYNTHETIC_SIZES["num_classes"], SYNTHETIC_SIZES["in_chans"])}[data]
    K = num_classes if num_classes is not None else defaults[0]
    C = in_chans if in_chans is not None else defaults[1]
    if model in CNN_MODELS:  # the CNN assignment's networks: the block at the end of this file
        return _cnn_recipe(data, model, K, C)
    if model == "vit":
        model_cfg = _vit(data, K, C)
    elif model == "deit":  # the ViT's recipe, its config cut to what deit.DeiTConfig takes (no stochastic depth)
        from vitcourse.training.distill import deit_config

        return deit_config(_vit(data, K, C)), dataclasses.replace(_train(data, "vit"))
    else:
        model_cfg = dict(arch="resnet18_cifar", num_classes=K, in_chans=C)
    return model_cfg, dataclasses.replace(_train(data, model))


def build_model(model: str, model_config: dict, implementation=None) -> nn.Module:
    """Instantiate a recipe's model: 'vit' from `implementation.ViT` (default the reference), or ResNet-18.

    A CNN of the CNN assignment (CNN_MODELS) comes from `implementation`, a loaded cnn.py (default the reference).
    """
    if model in CNN_MODELS:
        return _build_cnn(model, model_config, implementation)
    if model == "vit":
        if implementation is None:
            from coursecore import impl

            implementation = impl.reference()
        return implementation.ViT.ViT(**model_config)
    if model == "resnet18":
        from vitcourse.models import resnet

        cfg = dict(model_config)
        arch = cfg.pop("arch", "resnet18_cifar")
        if arch == "resnet18_imagenet":
            cfg.pop("in_chans", None)
            return resnet.resnet18_imagenet(**cfg)
        if arch == "resnet_cifar":  # the same design with other depths / widths (assignment 8's offline CNN)
            return resnet.ResNetCIFAR(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()})
        return resnet.resnet18_cifar(**cfg)
    raise ValueError(f"unknown model {model!r}: choose one of {', '.join(MODELS)}")


# ------------------------------------------------------------------------------------------------------------
# The CNN assignment's networks (solutions/cnn.py, vitcourse.models.cnn): the 3-conv Mish CNN, its batch-norm
# version, the deep Mish CNN and VGG-16. The model config is a dict of ConvNetConfig fields plus 'arch' (the key
# of cnn.CONFIGS, or of an ablation's Settings.architectures) and, where the images are smaller than the network's
# input, 'resize_input' (upsampled on the fly). Measured on digits on 2 CPU cores: see docs/cnn.md.
CNN_MODELS = ("mish_cnn", "bn_cnn", "deep_mish_cnn", "vgg16")
VGG_IMAGE_SIZE = 32  # VGG-16's five 2x2 pools need 32 px (down to 1x1): smaller images are upsampled to it
MODELS = MODELS + CNN_MODELS  # what `vitcourse train --model` offers

# CIFAR: crops and flips, no cutout: these small CNNs under-fit before they over-fit.
CNN_CIFAR_AUGMENT = AugmentConfig(crop_prob=1.0, crop_padding=4, flip_prob=0.5, cutout_prob=0.0)


def _cnn_recipe(data: str, model: str, num_classes: int, in_chans: int) -> tuple[dict, TrainConfig]:
    from data_utils.datasets import SYNTHETIC_SIZES

    image_size = {"digits": 8, "synthetic": SYNTHETIC_SIZES["image_size"]}.get(data, 32)
    model_cfg = dict(arch=model, image_size=image_size, in_chans=in_chans, num_classes=num_classes)
    if model == "vgg16":
        return _vgg16_recipe(data, model_cfg)
    if data in ("digits", "synthetic"):
        # Three pools take an 8x8 digit to 1x1, so the homework's widths work unchanged. AdamW at a fixed
        # peak lr of 3e-3 for all three networks: the BN-vs-no-BN comparison must change one thing only.
        # Flat (no label smoothing, no warm-up beyond 1 epoch) so the early-training curves are easy to read.
        # The deep CNN (1.1M parameters) is ~30x slower per epoch on a CPU and is fit in 5 epochs.
        epochs = (5 if model == "deep_mish_cnn" else 15) if data == "digits" else 5
        augment = DIGITS_AUGMENT if data == "digits" else SYNTHETIC_AUGMENT
        return model_cfg, TrainConfig(epochs=epochs, batch_size=64, lr=3e-3, warmup_epochs=1, weight_decay=5e-4,
                                      label_smoothing=0.0, grad_clip=None, augment=augment)
    if model == "deep_mish_cnn":
        # 6 convs with batch norm: Nesterov SGD at lr 0.1 for batch 256 (0.1 per 256, the classic CNN
        # recipe), weight decay 5e-4, 2 warm-up epochs, 40 epochs of cosine, label smoothing 0.1.
        return model_cfg, TrainConfig(epochs=40, batch_size=256, lr=0.1, optimizer="sgd", weight_decay=5e-4,
                                      warmup_epochs=2, label_smoothing=0.1, augment=CNN_CIFAR_AUGMENT,
                                      eval_batch_size=1024)
    # The 3-conv CNNs (~95k parameters): AdamW lr 2e-3, batch 128, 30 epochs. The same recipe with and
    # without batch norm, so the loss curves differ by the normalisation alone.
    return model_cfg, TrainConfig(epochs=30, batch_size=128, lr=2e-3, warmup_epochs=1, weight_decay=5e-4,
                                  label_smoothing=0.0, grad_clip=None, augment=CNN_CIFAR_AUGMENT, eval_batch_size=1024)


def _vgg16_recipe(data: str, model_cfg: dict) -> tuple[dict, TrainConfig]:
    if data in ("digits", "synthetic"):
        # The 8x8 images are upsampled to 32 px inside the model (ResizeInput): VGG-16 is a 32-px network and its
        # five pools need the size, and the architecture-change exercise compares it with variants of itself on
        # the same input. AdamW at lr 1e-3: the small CNNs' 3e-3 reached 38% against 56% for 1e-3 in a pilot
        # (640 images, 2 epochs, one seed: `vitcourse ablate --model vgg16 --grid lr=1e-3,3e-3`). 3 epochs (98.9%
        # test accuracy, seed 0): one costs ~31 s on 2 CPU cores, ~35x the deep Mish CNN's (docs/cnn.md).
        cfg = dict(model_cfg, image_size=VGG_IMAGE_SIZE, resize_input=True)
        augment = DIGITS_AUGMENT if data == "digits" else SYNTHETIC_AUGMENT
        return cfg, TrainConfig(epochs=3 if data == "digits" else 2, batch_size=64, lr=1e-3, warmup_epochs=1,
                                weight_decay=5e-4, label_smoothing=0.0, grad_clip=None, augment=augment)
    # CIFAR: VGG-16 with batch norm (14.7M parameters), the deep Mish CNN's recipe (Nesterov SGD at lr 0.1 for
    # batch 256, weight decay 5e-4, 2 warm-up epochs, cosine, label smoothing 0.1, crops and flips) for 20
    # epochs: twice the FLOPs per image of the deep CNN, so 20 epochs cost what its 40 do, and the
    # architecture-change comparison (2 networks x 2 seeds) fits a Colab session. Not measured here (no GPU).
    return model_cfg, TrainConfig(epochs=20, batch_size=256, lr=0.1, optimizer="sgd", weight_decay=5e-4,
                                  warmup_epochs=2, label_smoothing=0.1, augment=CNN_CIFAR_AUGMENT, eval_batch_size=1024)


def _build_cnn(model: str, model_config: dict, implementation=None) -> nn.Module:
    from vitcourse.models import cnn as cnn_models

    cfg = dict(model_config)
    arch = cfg.pop("arch", model)
    resize = cfg.pop("resize_input", False)
    if "stages" in cfg:  # JSON turns tuples into lists
        cfg["stages"] = tuple(tuple(stage) for stage in cfg["stages"])
    module = implementation if implementation is not None else cnn_models.reference()
    if arch in module.CONFIGS:
        net = module.build(arch, **cfg)
    else:  # an architecture of an ablation's Settings.architectures: its config lists every field
        net = module.ConvNet(module.ConvNetConfig(**cfg))
    if resize:  # small images (8-px digits) upsampled to the network's input size on the fly
        from vitcourse.models.pretrained import ResizeInput

        net = ResizeInput(net, net.config.image_size)
    return net
