"""The closed forms the notebooks, the analysis library and the grader's answer keys share: parameters and
forward MACs of a ViT, of ResNet-18 and of the CNN assignment's ConvNets, computed from a config by formula.

Shape legend: B batch, C channels, H/W image height/width, P patch size, N tokens, D embedding,
h heads, d head dim, K classes.

Pure integer arithmetic on a config (a `ViTConfig`, a `ConvNetConfig` or anything with their fields), no torch:
the conventions (MAC vs FLOP, what is counted) are written out in `vitcourse.analysis.complexity`, which adds
the measured counters and the summaries and re-exports everything here.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Union

CONFIDENCE = 0.95  # the course reports 95% intervals everywhere (the notebooks' stats, the grader's questions)
FLOPS_PER_MAC = 2  # a multiply-accumulate is one multiplication plus one addition
MODELS = ("vit", "resnet18_cifar", "resnet18_imagenet")  # what model_complexity and the sweep know
MODEL_ALIASES = {"resnet18": "resnet18_cifar", "resnet": "resnet18_cifar"}  # CIFAR is the course's default form

# Elementwise work per element, a convention (tools differ); used only by count_elementwise_flops.
LAYERNORM_FLOPS_PER_ELEMENT = 7  # mean (1), subtract (1), square (1), variance sum (1), divide (1), scale, shift
SOFTMAX_FLOPS_PER_ELEMENT = 5  # running max (1), subtract (1), exp (1), sum (1), divide (1)
ACTIVATION_FLOPS_PER_ELEMENT = 8  # GELU: erf counted as a few FLOPs; what matters is that it is per element
BIAS_FLOPS_PER_ELEMENT = 1  # one add per output value
RESIDUAL_FLOPS_PER_ELEMENT = 1  # one add per value, twice per block
SCALE_FLOPS_PER_ELEMENT = 1  # scores / √d


# ----------------------------------------------------------------------------------------------- ViT parameters
def _linear(n_in: int, n_out: int, bias: bool = True) -> int:
    """Weights n_in·n_out plus n_out biases."""
    return n_in * n_out + (n_out if bias else 0)


def count_block_parameters(cfg) -> dict[str, int]:
    """Parameters of one encoder block, per sub-layer (names as in the state dict)."""
    D, hidden = cfg.embed_dim, cfg.mlp_hidden_dim
    return {
        "norm1": 2 * D,  # LayerNorm: a scale and a shift per feature
        "attn.qkv": _linear(D, 3 * D, cfg.qkv_bias),
        "attn.proj": _linear(D, D),
        "norm2": 2 * D,
        "mlp.fc1": _linear(D, hidden),
        "mlp.fc2": _linear(hidden, D),
    }


def count_parameters(cfg) -> dict[str, int]:
    """Trainable parameters of a ViT per component, plus 'blocks' (all blocks) and 'total'.

    Fixed sin-cos position tables are buffers, not parameters, so they count 0.
    """
    D = cfg.embed_dim
    per_block = sum(count_block_parameters(cfg).values())
    counts = {
        "patch_embed.proj": _linear(cfg.patch_dim, D),  # a conv P×P×C -> D is a linear map of a patch
        "cls_token": D if cfg.pool == "token" else 0,
        "pos_embed": cfg.num_tokens * D if cfg.pos_embed == "learnable" else 0,
        "blocks": cfg.depth * per_block,
        "norm": 2 * D,
        "head": _linear(D, cfg.num_classes) if cfg.num_classes > 0 else 0,
    }
    counts["total"] = sum(counts.values())
    return counts


# ---------------------------------------------------------------------------------------------------- ViT MACs
def attention_macs(num_tokens: int, embed_dim: int) -> int:
    """MACs of the two attention products of one block for one image: q·kᵀ and softmax(·)·v.

    Each head multiplies (N, d) by (d, N), then (N, N) by (N, d): N²·d MACs each; h heads give N²·D.
    The number of heads cancels out, which is why it does not appear.
    """
    return 2 * num_tokens * num_tokens * embed_dim


def count_block_macs(cfg, num_tokens: Optional[int] = None) -> dict[str, int]:
    """MACs of one encoder block for one image, per component.

    Args:
        cfg: a ViTConfig (embed_dim, mlp_hidden_dim, num_tokens are used).
        num_tokens: N, to ask "what if there were N tokens"; defaults to cfg.num_tokens (with the class token).
    """
    N = cfg.num_tokens if num_tokens is None else num_tokens
    D, hidden = cfg.embed_dim, cfg.mlp_hidden_dim
    return {
        "attn.qkv": N * D * 3 * D,  # (N, D) @ (D, 3D)
        "attn.scores": N * N * D,  # q·kᵀ: h heads × (N, d) @ (d, N)
        "attn.weighted_sum": N * N * D,  # softmax(scores)·v: h heads × (N, N) @ (N, d)
        "attn.proj": N * D * D,  # (N, D) @ (D, D)
        "mlp.fc1": N * D * hidden,
        "mlp.fc2": N * hidden * D,
    }


def count_macs(cfg) -> dict[str, int]:
    """Forward MACs of a ViT for one image, per component, plus 'total' (matrix products only).

    The head sees one pooled vector per image (class token or mean of the tokens), not N tokens.
    """
    counts = {
        "patch_embed": cfg.num_patches * cfg.patch_dim * cfg.embed_dim,  # the class token is not a patch
        "blocks": cfg.depth * sum(count_block_macs(cfg).values()),
        "head": cfg.embed_dim * cfg.num_classes,
    }
    counts["total"] = sum(counts.values())
    return counts


def count_flops(cfg) -> dict[str, int]:
    """`count_macs` in FLOPs (2 per MAC, the FlopCounterMode convention): same keys."""
    return {name: FLOPS_PER_MAC * macs for name, macs in count_macs(cfg).items()}


def count_training_macs(cfg) -> int:
    """MACs of one forward + backward pass for one image, as FlopCounterMode counts them.

    The backward of every product computes two products of the same size (gradient of the input and
    of the weight), so a step costs 3× the forward — minus one: the first layer's input is the image,
    which needs no gradient, so the patch embedding's backward has only the weight gradient.
    """
    macs = count_macs(cfg)
    return 3 * macs["total"] - macs["patch_embed"]


def count_elementwise_flops(cfg) -> dict[str, int]:
    """Estimated elementwise FLOPs per image that FlopCounterMode does not count (see the constants above).

    Keys: 'bias', 'layernorm', 'attn.scale', 'softmax', 'activation', 'residual', 'total'.
    Conventions differ between tools, so treat these as an order of magnitude: the point is that they
    grow like N·D (and N² for the softmax), while the matrix products grow like N·D² and N²·D.
    """
    N, D, hidden, depth, h = cfg.num_tokens, cfg.embed_dim, cfg.mlp_hidden_dim, cfg.depth, cfg.num_heads
    qkv_bias = 3 * D if cfg.qkv_bias else 0
    per_block_bias = N * (qkv_bias + D + hidden + D)  # qkv, proj, fc1, fc2
    counts = {
        "bias": cfg.num_patches * D + depth * per_block_bias + cfg.num_classes,
        "layernorm": LAYERNORM_FLOPS_PER_ELEMENT * N * D * (2 * depth + 1),
        "attn.scale": SCALE_FLOPS_PER_ELEMENT * depth * h * N * N,
        "softmax": SOFTMAX_FLOPS_PER_ELEMENT * depth * h * N * N,
        "activation": ACTIVATION_FLOPS_PER_ELEMENT * depth * N * hidden,
        "residual": RESIDUAL_FLOPS_PER_ELEMENT * depth * 2 * N * D,
    }
    counts["total"] = sum(counts.values())
    return counts


def component_table(cfg) -> list[dict]:
    """One row per component of a ViT: parameters and forward MACs/FLOPs per image, whole model.

    Rows: patch_embed, cls_token, pos_embed, then per block (×depth) norm1, attn.qkv, attn.scores (q·kᵀ),
    attn.weighted_sum (softmax·v), attn.proj, norm2, mlp.fc1, mlp.fc2, then norm, head and total.
    Each row has 'component', 'formula' (parameters ; MACs), 'per_block' (True for block rows),
    'params', 'macs', 'flops' (whole-model values: a block row is already multiplied by depth).
    """
    params, block_params, block_macs = count_parameters(cfg), count_block_parameters(cfg), count_block_macs(cfg)
    macs = count_macs(cfg)
    qkv_bias = "3D² + 3D" if cfg.qkv_bias else "3D² (no bias)"
    top = [
        ("patch_embed", params["patch_embed.proj"], macs["patch_embed"], "P²C·D + D ; N_p·P²C·D"),
        ("cls_token", params["cls_token"], 0, "D if pool='token' ; 0"),
        ("pos_embed", params["pos_embed"], 0, "N·D if learnable (N counts the class token) ; 0"),
    ]
    block = [
        ("norm1", block_params["norm1"], 0, "2D ; elementwise"),
        ("attn.qkv", block_params["attn.qkv"], block_macs["attn.qkv"], f"{qkv_bias} ; N·D·3D"),
        ("attn.scores", 0, block_macs["attn.scores"], "0 ; h·N·N·d = N²·D (q·kᵀ)"),
        ("attn.weighted_sum", 0, block_macs["attn.weighted_sum"], "0 ; h·N·N·d = N²·D (softmax·v)"),
        ("attn.proj", block_params["attn.proj"], block_macs["attn.proj"], "D² + D ; N·D²"),
        ("norm2", block_params["norm2"], 0, "2D ; elementwise"),
        ("mlp.fc1", block_params["mlp.fc1"], block_macs["mlp.fc1"], "D·M + M ; N·D·M (M = mlp_ratio·D)"),
        ("mlp.fc2", block_params["mlp.fc2"], block_macs["mlp.fc2"], "M·D + D ; N·M·D"),
    ]
    rows = [dict(component=name, formula=f, per_block=False, params=p, macs=m) for name, p, m, f in top]
    rows += [dict(component=f"blocks.{name}", formula=f, per_block=True, params=cfg.depth * p, macs=cfg.depth * m)
             for name, p, m, f in block]
    rows += [
        dict(component="norm", formula="2D ; elementwise", per_block=False, params=params["norm"], macs=0),
        dict(component="head", formula="D·K + K ; D·K", per_block=False, params=params["head"], macs=macs["head"]),
        dict(component="total", formula="", per_block=False, params=params["total"], macs=macs["total"]),
    ]
    for row in rows:
        row["flops"] = FLOPS_PER_MAC * row["macs"]
    return rows


# ------------------------------------------------------------------------------------------------- ResNet-18
RESNET18_WIDTHS = (64, 128, 256, 512)  # channels of the four stages
RESNET18_BLOCKS = (2, 2, 2, 2)  # BasicBlocks per stage
RESNET_FORMS = ("cifar", "imagenet")
BN_PARAMS_PER_CHANNEL = 2  # BatchNorm: a scale and a shift (running statistics are buffers)
# (kernel, stride, padding) of the stems; the ImageNet stem is followed by a 3×3 stride-2 max-pool.
CIFAR_STEM = (3, 1, 1)
IMAGENET_STEM = (7, 2, 3)
IMAGENET_MAXPOOL = (3, 2, 1)


@dataclass(frozen=True)
class Layer:
    """One layer of a CNN with its parameter count and forward MACs per image."""

    name: str  # module name as in the state dict ('layer2.0.downsample.0', 'fc')
    kind: str  # 'conv', 'bn' or 'linear'
    params: int
    macs: int
    out_shape: tuple  # (C, H, W) or (K,) of the output


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _pair(size: Union[int, tuple[int, int], list]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def resnet18_layers(form: str = "cifar", num_classes: int = 10, image_size: Union[int, tuple[int, int]] = 32,
                    in_chans: int = 3) -> list[Layer]:
    """Every conv / batch-norm / linear layer of ResNet-18 with its parameters and MACs for one image.

    A k×k convolution from C_in to C_out channels has C_in·C_out·k² weights (no bias: a batch norm
    follows) and costs C_in·C_out·k² MACs at each of its H_out·W_out output positions.

    Args:
        form: 'cifar' (3×3 stride-1 stem, no max-pool) or 'imagenet' (torchvision: 7×7 stride-2 stem + max-pool).
        num_classes: K, outputs of the final linear layer.
        image_size: H or (H, W) of the input.
        in_chans: C of the input.
    """
    if form not in RESNET_FORMS:
        raise ValueError(f"unknown ResNet-18 form {form!r}: choose one of {', '.join(RESNET_FORMS)}")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer for ResNet-18, got {num_classes!r}")
    H, W = _pair(image_size)
    if min(H, W) < 1 or in_chans < 1:
        raise ValueError(f"image size {H}x{W} with {in_chans} channels: sizes must be positive integers")
    layers: list[Layer] = []

    def conv(name, c_in, c_out, k, s, p, hw):
        h, w = (_conv_out(n, k, s, p) for n in hw)  # padding keeps every output at least 1x1
        weights = c_in * c_out * k * k
        layers.append(Layer(name, "conv", weights, weights * h * w, (c_out, h, w)))
        layers.append(Layer(name.replace("conv", "bn").replace("downsample.0", "downsample.1"), "bn",
                            BN_PARAMS_PER_CHANNEL * c_out, 0, (c_out, h, w)))
        return h, w

    stem = CIFAR_STEM if form == "cifar" else IMAGENET_STEM
    hw = conv("conv1", in_chans, RESNET18_WIDTHS[0], *stem, (H, W))
    if form == "imagenet":
        hw = tuple(_conv_out(n, *IMAGENET_MAXPOOL) for n in hw)  # max-pool: no parameters, no MACs
    chans = RESNET18_WIDTHS[0]
    for stage, (n_blocks, width) in enumerate(zip(RESNET18_BLOCKS, RESNET18_WIDTHS), start=1):
        for b in range(n_blocks):
            stride = 2 if stage > 1 and b == 0 else 1  # every stage after the first halves H and W
            prefix = f"layer{stage}.{b}"
            out = conv(f"{prefix}.conv1", chans, width, 3, stride, 1, hw)
            conv(f"{prefix}.conv2", width, width, 3, 1, 1, out)
            if stride != 1 or chans != width:
                conv(f"{prefix}.downsample.0", chans, width, 1, stride, 0, hw)  # 1×1 projection shortcut
            hw, chans = out, width
    layers.append(Layer("fc", "linear", _linear(chans, num_classes), chans * num_classes, (num_classes,)))
    return layers


def _resnet_components(layers: list[Layer], field: str) -> dict[str, int]:
    counts = {name: 0 for name in ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4", "fc")}
    for layer in layers:
        counts[layer.name.split(".")[0]] += getattr(layer, field)
    counts["total"] = sum(counts.values())
    return counts


def count_resnet18_parameters(form: str = "cifar", num_classes: int = 10, in_chans: int = 3) -> dict[str, int]:
    """Parameters of ResNet-18 per component ('conv1', 'bn1', 'layer1'..'layer4', 'fc') plus 'total'."""
    return _resnet_components(resnet18_layers(form, num_classes, 32, in_chans), "params")


def count_resnet18_macs(form: str = "cifar", num_classes: int = 10, image_size=32, in_chans: int = 3) -> dict[str, int]:
    """Forward MACs of ResNet-18 for one image per component plus 'total' (convolutions and fc only)."""
    return _resnet_components(resnet18_layers(form, num_classes, image_size, in_chans), "macs")


# ------------------------------------------------------------------------------------------- configs
def _given_code(module: str):
    """A student module whose configs are given code, not TODOs (`ViT` for ViTConfig, `cnn` for CONFIGS): the
    reference, else the generated stub, else the student's file in the working directory (a Colab session)."""
    from pathlib import Path

    from coursecore import impl

    for folder in (impl.solutions_dir, impl.stubs_dir, Path.cwd):
        try:
            return getattr(impl.load(folder(), modules=(module,)), module)
        except FileNotFoundError:
            continue
    raise FileNotFoundError(f"no {module}.py found (solutions/, student_src/ or the working directory): run from "
                            f"the course folder, or from the folder that holds your {module}.py")


def vit_config(**options):
    """A validated ViTConfig from keywords, with clear errors for impossible sizes (see `_given_code`)."""
    vit = _given_code("ViT")
    known = {f.name for f in dataclasses.fields(vit.ViTConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"unknown ViT option(s) {unknown}; the options are the fields of ViTConfig: {sorted(known)}")
    return vit.ViTConfig(**options)


def canonical_model(model: str) -> str:
    """'resnet18' -> 'resnet18_cifar'; raise a ValueError listing the choices for an unknown name."""
    name = MODEL_ALIASES.get(str(model).lower(), str(model).lower())
    if name not in MODELS:
        raise ValueError(f"unknown model {model!r}: choose one of {', '.join(MODELS + tuple(MODEL_ALIASES))}")
    return name


# ----------------------------------------------------------------------------- the CNN assignment's ConvNets
CNN_MODELS = ("mish_cnn", "bn_cnn", "deep_mish_cnn", "vgg16")  # cnn.CONFIGS: see solutions/cnn.py
CNN_OPTIONS = ("image_size", "in_chans", "num_classes", "stages", "kernel_size", "batch_norm", "act")


def cnn_layers(cfg) -> list[Layer]:
    """Every conv / batch-norm / linear layer of a `cnn.ConvNet` with its parameters and MACs for one image.

    A k×k 'same' convolution from C_in to C_out channels at H×W has C_in·C_out·k² weights (+ C_out biases
    when no batch norm follows) and costs C_in·C_out·k²·H·W MACs; each stage's 2×2 max-pool then halves
    H and W (no parameters, no MACs). The head sees the globally averaged C_last-vector: C_last·K MACs.

    Args:
        cfg: a cnn.ConvNetConfig (or anything with its fields: image_size, in_chans, num_classes,
            stages, kernel_size, batch_norm).
    """
    k, size, chans = cfg.kernel_size, cfg.image_size, cfg.in_chans
    layers: list[Layer] = []
    for s, widths in enumerate(cfg.stages):
        for j, width in enumerate(widths):
            weights = chans * width * k * k
            bias = 0 if cfg.batch_norm else width  # a batch norm's shift replaces the conv bias
            layers.append(Layer(f"stages.{s}.{j}.conv", "conv", weights + bias, weights * size * size,
                                (width, size, size)))
            if cfg.batch_norm:
                layers.append(Layer(f"stages.{s}.{j}.bn", "bn", BN_PARAMS_PER_CHANNEL * width, 0, (width, size, size)))
            chans = width
        size //= 2  # the stage's 2×2 stride-2 max-pool
    layers.append(Layer("head", "linear", _linear(chans, cfg.num_classes), chans * cfg.num_classes,
                        (cfg.num_classes,)))
    return layers


def _cnn_components(layers: list[Layer], field: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for layer in layers:
        name = ".".join(layer.name.split(".")[:2]) if layer.name.startswith("stages.") else layer.name
        counts[name] = counts.get(name, 0) + getattr(layer, field)
    counts["total"] = sum(counts.values())
    return counts


def count_cnn_parameters(cfg) -> dict[str, int]:
    """Parameters of a ConvNet per stage ('stages.0', ...) and 'head', plus 'total'."""
    return _cnn_components(cnn_layers(cfg), "params")


def count_cnn_macs(cfg) -> dict[str, int]:
    """Forward MACs of a ConvNet for one image per stage and 'head', plus 'total' (convs and the head only)."""
    return _cnn_components(cnn_layers(cfg), "macs")


def count_cnn_training_macs(cfg) -> int:
    """Forward + backward MACs per image as FlopCounterMode counts them: 3× the forward, minus the first
    conv's input gradient (the image needs none)."""
    layers = cnn_layers(cfg)
    return 3 * sum(layer.macs for layer in layers) - layers[0].macs


def cnn_config(model: str, **options):
    """The ConvNetConfig of a CNN_MODELS network with fields overridden (from the reference cnn.py, else the
    stub, else the cnn.py in the working directory: the config is given code, not a TODO)."""
    if model not in CNN_MODELS:
        raise ValueError(f"unknown CNN {model!r}: choose one of {', '.join(CNN_MODELS)}")
    unknown = sorted(set(options) - set(CNN_OPTIONS))
    if unknown:
        raise TypeError(f"a CNN takes only {list(CNN_OPTIONS)}, not {unknown}")
    module = _given_code("cnn")
    return dataclasses.replace(module.CONFIGS[model], **options)


