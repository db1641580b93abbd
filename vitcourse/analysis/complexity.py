"""Closed-form complexity of a ViT, of ResNet-18 and of the CNN assignment's ConvNets: parameters and
forward FLOPs per component.

Shape legend: B batch, C channels, H/W image height/width, P patch size, N tokens, D embedding,
h heads, d head dim, K classes.

Every closed form is derived from a `ViTConfig` (or anything with the same fields and derived
properties) by formula, never by building the model, so a student can compare their own derivation
with it term by term. The model is built only by the *counters* at the end of the file, which exist to
check the formulas and to show why tools disagree.

Conventions (name them whenever you quote a number):
    * MAC = one multiply-accumulate. FLOP = 2 per MAC (`FLOPS_PER_MAC`), the convention of
      `torch.utils.flop_counter.FlopCounterMode`; fvcore, thop and ptflops print MACs and often call
      them "FLOPs", which is where factor-2 disagreements come from.
    * The FLOP counts here are matrix products only: linear layers, convolutions and the two attention
      products q·kᵀ and softmax(·)·v. Bias adds, LayerNorm/BatchNorm, softmax, GELU, residual adds and
      pooling are elementwise and excluded, as FlopCounterMode excludes them; `count_elementwise_flops`
      estimates them separately (a few percent of the total).
    * Counts are per image (batch 1), forward pass. A training step costs about 3× the forward:
      `count_training_macs` gives the exact value FlopCounterMode reports for forward + backward.

Public API (all counts are Python ints):
    count_block_parameters(cfg), count_parameters(cfg)   parameters of one block / the whole ViT
    count_block_macs(cfg, num_tokens=None)                 MACs of one block per component
    count_macs(cfg), count_flops(cfg)                      per image, per component + 'total'
    attention_macs(num_tokens, embed_dim)                  q·kᵀ plus softmax·v of one block
    count_elementwise_flops(cfg)                           the work FlopCounterMode ignores (estimate)
    count_training_macs(cfg)                               forward + backward MACs per image
    component_table(cfg)                                   rows for a per-component breakdown table
    cnn_layers(cfg), count_cnn_parameters(cfg), count_cnn_macs(cfg)  the CNN assignment's ConvNets (CNN_MODELS)
    count_cnn_training_macs(cfg), cnn_complexity(model, **options)
    resnet18_layers(form, num_classes, image_size, in_chans)  per-layer parameters and MACs of ResNet-18
    count_resnet18_parameters(...), count_resnet18_macs(...)  the same, per component + 'total'
    vit_config(**options), canonical_model(name)           a validated ViTConfig; 'resnet18' -> 'resnet18_cifar'
    model_complexity(model='vit', **options)               one JSON-ready summary for any of MODELS
    flop_counter_flops(model, images, ...)                 what FlopCounterMode measures (manual attention)
    module_hook_macs(model, images)                        what a module-hook tool like torchinfo sees
    counter_comparison(cfg)                                closed form vs the counters, side by side
    set_fused_attention(model, fused)                      flip every Attention's fused_attn switch
"""
from __future__ import annotations

import dataclasses
from typing import Iterable

from coursecore.counts import (  # noqa: F401 - the closed forms, re-exported: this module is their public face
    ACTIVATION_FLOPS_PER_ELEMENT, BIAS_FLOPS_PER_ELEMENT, BN_PARAMS_PER_CHANNEL, CIFAR_STEM, CNN_MODELS, CNN_OPTIONS,
    FLOPS_PER_MAC, IMAGENET_MAXPOOL, IMAGENET_STEM, LAYERNORM_FLOPS_PER_ELEMENT, MODEL_ALIASES, MODELS,
    RESIDUAL_FLOPS_PER_ELEMENT, RESNET18_BLOCKS, RESNET18_WIDTHS, RESNET_FORMS, SCALE_FLOPS_PER_ELEMENT,
    SOFTMAX_FLOPS_PER_ELEMENT, Layer, _resnet_components, attention_macs, canonical_model, cnn_config, cnn_layers,
    component_table, count_block_macs, count_block_parameters, count_cnn_macs, count_cnn_parameters,
    count_cnn_training_macs, count_elementwise_flops, count_flops, count_macs, count_parameters,
    count_resnet18_macs, count_resnet18_parameters, count_training_macs, resnet18_layers, vit_config)


# ------------------------------------------------------------------------------------------- one summary
def model_complexity(model: str = "vit", **options) -> dict:
    """Closed-form parameters and FLOPs of one model, JSON-ready.

    Args:
        model: 'vit', 'resnet18_cifar' (alias 'resnet18') or 'resnet18_imagenet'.
        **options: ViTConfig fields for a ViT; num_classes, image_size, in_chans for ResNet-18.

    Returns:
        dict with 'model', 'config', 'params', 'macs', 'flops', 'gflops', 'training_macs', 'convention'
        and 'components': a list of rows {'component', 'params', 'macs', 'flops'} ending with 'total'.
    """
    model = canonical_model(model)
    convention = ("forward pass, one image; FLOPs = 2 × MACs; matrix products only (linear, conv, "
                  "q·kᵀ, softmax·v), as torch.utils.flop_counter.FlopCounterMode counts them")
    if model == "vit":
        cfg = vit_config(**options)
        rows = component_table(cfg)
        config = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
        training = count_training_macs(cfg)
    else:
        form = model.split("_")[1]
        allowed = {"num_classes", "image_size", "in_chans"}
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise TypeError(f"ResNet-18 takes only {sorted(allowed)}, not {unknown}")
        config = dict(form=form, num_classes=options.get("num_classes", 10), image_size=options.get("image_size", 32),
                      in_chans=options.get("in_chans", 3))
        layers = resnet18_layers(**config)
        params, macs = _resnet_components(layers, "params"), _resnet_components(layers, "macs")
        k = (CIFAR_STEM if form == "cifar" else IMAGENET_STEM)[0]
        formulas = dict(conv1=f"C·64·{k}² ; H₁W₁·C·64·{k}² (no bias: a BN follows)", bn1="2·64 ; elementwise",
                        fc="512·K + K ; 512·K", total="")
        stage = "3×3 convs C_in·C_out·9 (+ 1×1 shortcut) + BNs 2·C_out ; Σ H'W'·C_in·C_out·k²"
        rows = [dict(component=name, formula=formulas.get(name, stage), params=params[name], macs=macs[name],
                     flops=FLOPS_PER_MAC * macs[name]) for name in params]
        training = 3 * macs["total"] - layers[0].macs  # the stem's input (the image) needs no gradient
    total = rows[-1]
    return dict(model=model, config=config, params=total["params"], macs=total["macs"], flops=total["flops"],
                gflops=total["flops"] / 1e9, training_macs=training, convention=convention, components=rows)


# ------------------------------------------------------------------------------------- measured counters
def set_fused_attention(model, fused: bool) -> list:
    """Set `fused_attn` on every attention module of `model`; return the previous values (for restoring)."""
    modules = [m for m in model.modules() if hasattr(m, "fused_attn")]
    previous = [m.fused_attn for m in modules]
    for m in modules:
        m.fused_attn = fused
    return previous


def flop_counter_flops(model, images, *, manual_attention: bool = True, backward: bool = False) -> dict:
    """Count FLOPs of model(images) with `torch.utils.flop_counter.FlopCounterMode`.

    Args:
        model: any nn.Module; attention modules with a `fused_attn` switch are put on the manual path
            when manual_attention (restored afterwards), so q·kᵀ and softmax·v appear as plain bmm.
        images: a batch of shape (B, C, H, W); counts are for the whole batch.
        backward: also run loss.backward() on the sum of the outputs (training step FLOPs).

    Returns:
        dict with 'total' (FLOPs, 2 per MAC), 'by_op' {aten op name: FLOPs} and 'by_module'
        {module name: FLOPs} as FlopCounterMode reports them (nested modules include their children).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    previous = set_fused_attention(model, False) if manual_attention else None
    try:
        with torch.set_grad_enabled(backward), FlopCounterMode(display=False) as counter:
            out = model(images)
            if backward:
                out.sum().backward()
    finally:
        if previous is not None:
            for module, value in zip((m for m in model.modules() if hasattr(m, "fused_attn")), previous):
                module.fused_attn = value
    counts = counter.get_flop_counts()
    return dict(total=counter.get_total_flops(), by_op={str(k): v for k, v in counts.get("Global", {}).items()},
                by_module={name: sum(ops.values()) for name, ops in counts.items() if name != "Global"})


def module_hook_macs(model, images) -> int:
    """MACs a module-hook tool (torchinfo, and thop by default) sees: nn.Linear and nn.Conv2d only.

    Each Linear/Conv2d contributes (weights, no bias) × (output positions) via a forward hook; products
    written as `@` / torch.matmul inside a forward (q·kᵀ, softmax·v) belong to no such module, so they
    are missed. The difference to `count_macs` is exactly depth · 2·N²·D per image.
    """
    import torch
    from torch import nn

    total = 0

    def hook(module, inputs, output):
        nonlocal total
        weights = module.weight.numel()
        positions = output.numel() // module.out_features if isinstance(module, nn.Linear) else (
            output.numel() // module.out_channels)
        total += weights * positions

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    try:
        with torch.no_grad():
            model(images)
    finally:
        for handle in handles:
            handle.remove()
    return total


def counter_comparison(cfg=None, model=None, batch_size: int = 1) -> dict:
    """Closed form vs FlopCounterMode (manual and fused attention) vs module hooks, per image, in FLOPs.

    Builds the reference ViT for `cfg` unless a `model` (e.g. a student's) is given. Returns a dict with
    'closed_form', 'flop_counter_manual', 'flop_counter_fused', 'module_hooks' (all FLOPs per image),
    'attention_products' (the q·kᵀ + softmax·v FLOPs of all blocks) and 'fused_counted' (whether this
    torch version / device counts fused attention: older torch on CPU counts it as 0).
    """
    import torch
    from coursecore import impl

    if model is None:
        model = impl.reference().ViT.ViT(cfg)
    cfg = model.config
    model.eval()
    device = next(model.parameters()).device
    images = torch.randn(batch_size, cfg.in_chans, *cfg.image_hw, device=device)
    attention = FLOPS_PER_MAC * cfg.depth * attention_macs(cfg.num_tokens, cfg.embed_dim)
    manual = flop_counter_flops(model, images)["total"] // batch_size
    fused = flop_counter_flops(model, images, manual_attention=False)["total"] // batch_size
    return dict(closed_form=count_flops(cfg)["total"], flop_counter_manual=manual, flop_counter_fused=fused,
                module_hooks=FLOPS_PER_MAC * module_hook_macs(model, images) // batch_size,
                attention_products=attention, fused_counted=fused == manual)


def total_of(rows: Iterable[dict], key: str) -> int:
    """Sum a column of component rows, skipping the 'total' row (a check that the rows add up)."""
    return sum(row[key] for row in rows if row["component"] != "total")



def cnn_complexity(model: str, **options) -> dict:
    """`model_complexity` for the CNN assignment's networks: the same keys, rows per stage and the head."""
    cfg = cnn_config(model, **options)
    params, macs = count_cnn_parameters(cfg), count_cnn_macs(cfg)
    bias = "" if cfg.batch_norm else " + C_out"
    bn = " + 2·C_out per BN" if cfg.batch_norm else ""
    stage = f"Σ C_in·C_out·k²{bias}{bn} ; Σ H·W·C_in·C_out·k² (H, W of that stage)"
    rows = [dict(component=name, formula=stage if name.startswith("stages") else (
        "C_last·K + K ; C_last·K" if name == "head" else ""), params=params[name], macs=macs[name],
        flops=FLOPS_PER_MAC * macs[name]) for name in params]
    config = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name in CNN_OPTIONS}
    config["stages"] = [list(s) for s in cfg.stages]
    total = rows[-1]
    convention = ("forward pass, one image; FLOPs = 2 × MACs; convolutions and the linear head only, as "
                  "torch.utils.flop_counter.FlopCounterMode counts them (BN, Mish, pooling are elementwise)")
    return dict(model=model, config=config, params=total["params"], macs=total["macs"], flops=total["flops"],
                gflops=total["flops"] / 1e9, training_macs=count_cnn_training_macs(cfg), convention=convention,
                components=rows)


def measured(summary: dict) -> dict:
    """Build the model a `model_complexity` summary describes and measure it with the counters (the closed
    form's oracle): parameters, FlopCounterMode with manual and fused attention, and module hooks."""
    import torch

    from coursecore import impl
    from vitcourse.models import resnet

    c = summary["config"]
    if summary["model"] in CNN_MODELS:
        from vitcourse.models import cnn

        model = cnn.build(summary["model"], **dict(c, stages=tuple(map(tuple, c["stages"]))))
        shape = (c["in_chans"], c["image_size"], c["image_size"])
    elif summary["model"] == "vit":
        model = impl.reference().ViT.ViT(vit_config(**c))
        shape = (c["in_chans"], *model.config.image_hw)
    else:
        if c["form"] == "imagenet" and c["in_chans"] != 3:
            raise ValueError("--check builds torchvision's ResNet-18, which takes 3 channels; drop --in-chans")
        model = resnet.resnet18_cifar(c["num_classes"], c["in_chans"]) if c["form"] == "cifar" else (
            resnet.resnet18_imagenet(c["num_classes"]))
        size = c["image_size"]
        shape = (c["in_chans"], *((size, size) if isinstance(size, int) else size))
    model.eval()
    images = torch.randn(1, *shape)
    manual = flop_counter_flops(model, images)["total"]
    fused = flop_counter_flops(model, images, manual_attention=False)["total"]
    return dict(numel=sum(p.numel() for p in model.parameters()), flop_counter_manual=manual,
                flop_counter_fused=fused, module_hooks=FLOPS_PER_MAC * module_hook_macs(model, images))
