"""The graded parts of `cnn.py` (assignment 7): batch norm by hand, folding it into the conv, Mish, the net.

Each part is declared whole here: its points, assignment, hint and public check (the `verify_*` functions, against
PyTorch's own: `F.batch_norm`, `fuse_conv_bn_eval` and `bn(conv(x))`, `F.mish`; the notebook's check cells and
`python -m vitcourse check` run them), and in the grader's region its hidden cases, how the sandboxed runner runs
one, and its catalogued bugs (each with the mutation of the reference that makes it). A release strips the grader's
region (coursetools/release.py).

Shape legend: B batch, C channels, H/W image height/width, K classes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from coursecore.parts.checks import matches
from coursecore.parts.part import Part


def _matches(what, got, want, hint, atol=1e-5):
    matches(what, got, want, hint, oracle="PyTorch's", atol=atol)


def verify_batch_norm(batch_norm) -> None:
    """batch_norm against F.batch_norm: (B, C), (B, C, L), (B, C, H, W); train and eval; values, gradients and
    the running statistics updated in place."""
    g = torch.Generator().manual_seed(7)
    for shape, training in (((6, 3), True), ((2, 3, 5), True), ((2, 3, 4, 5), True), ((2, 3, 4, 5), False)):
        C = shape[1]
        x = (torch.randn(*shape, generator=g, dtype=torch.float64) * 2 + 1).requires_grad_(True)
        weight = (1 + torch.rand(C, generator=g, dtype=torch.float64)).requires_grad_(True)
        bias = torch.randn(C, generator=g, dtype=torch.float64).requires_grad_(True)
        mean0, var0 = torch.randn(C, generator=g, dtype=torch.float64), 1 + torch.rand(C, generator=g, dtype=torch.float64)
        mine, theirs = (mean0.clone(), var0.clone()), (mean0.clone(), var0.clone())
        where = f"batch_norm(x of shape {shape}, training={training})"
        out = batch_norm(x, *mine, weight, bias, training=training, momentum=0.2, eps=1e-5)
        want = F.batch_norm(x, *theirs, weight, bias, training, 0.2, 1e-5)
        _matches(where, out, want, "training: the batch's mean and biased variance over every axis but 1; eval: "
                   "the running statistics; (x - mean) / sqrt(var + eps) · weight + bias")
        cot = torch.randn(*shape, generator=g, dtype=torch.float64)
        mine_g = torch.autograd.grad((out * cot).sum(), (x, weight, bias), allow_unused=True)
        want_g = torch.autograd.grad((want * cot).sum(), (x, weight, bias))
        for name, a, b in zip(("x", "weight", "bias"), mine_g, want_g):
            if a is None:
                raise AssertionError(f"{where}: no gradient reaches {name} (.detach() or a new tensor?)")
            _matches(f"{where}: the gradient of {name}", a, b, "the batch statistics must stay in the autograd "
                       "graph in training mode (no .detach(), no torch.no_grad() around the normalisation)")
        _matches(f"{where}: running_mean after the call", mine[0], theirs[0],
                   "update in place: running_mean.mul_(1 - momentum).add_(momentum * batch mean)")
        _matches(f"{where}: running_var after the call", mine[1], theirs[1],
                   "the running update uses the UNBIASED variance (biased · n / (n - 1)), the normalisation the biased")


def verify_fold_conv_bn(fold_conv_bn) -> None:
    """fold_conv_bn against torch.nn.utils.fusion.fuse_conv_bn_eval and bn(conv(x)), with and without a conv
    bias, with stride, padding, dilation and groups; the inputs must stay unchanged."""
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    g = torch.Generator().manual_seed(8)
    torch.manual_seed(8)
    for bias, kwargs in ((False, dict(padding=1)), (True, dict(stride=2, padding=2, dilation=2, groups=2))):
        conv = nn.Conv2d(4, 6, 3, bias=bias, **kwargs).double()
        bn = nn.BatchNorm2d(6, eps=1e-3).double()
        with torch.no_grad():
            bn.running_mean.copy_(torch.randn(6, generator=g, dtype=torch.float64))
            bn.running_var.copy_(0.5 + torch.rand(6, generator=g, dtype=torch.float64))
            bn.weight.copy_(1 + torch.randn(6, generator=g, dtype=torch.float64) / 2)
            bn.bias.copy_(torch.randn(6, generator=g, dtype=torch.float64))
        bn.eval()
        before = [t.clone() for t in (*conv.state_dict().values(), *bn.state_dict().values())]
        where = f"fold_conv_bn(Conv2d(4, 6, 3, bias={bias}, {', '.join(f'{k}={v}' for k, v in kwargs.items())}), bn)"
        fused = fold_conv_bn(conv, bn)
        if not isinstance(fused, nn.Conv2d) or fused.bias is None:
            raise AssertionError(f"{where} must return a new nn.Conv2d with a bias")
        if not all(torch.equal(a, b) for a, b in zip(before, (*conv.state_dict().values(), *bn.state_dict().values()))):
            raise AssertionError(f"{where} changed the conv or the batch norm it was given: write into fused only")
        oracle = fuse_conv_bn_eval(conv.eval(), bn)
        _matches(f"{where}: the folded weight", fused.weight, oracle.weight,
                   "scale each OUTPUT channel of the kernel by bn.weight / sqrt(running_var + eps)")
        _matches(f"{where}: the folded bias", fused.bias, oracle.bias,
                   "s·(conv.bias - running_mean) + bn.bias, with conv.bias = 0 when it is None")
        x = torch.randn(2, 4, 9, 8, generator=g, dtype=torch.float64)
        _matches(f"{where}: fused(x)", fused(x), bn(conv(x)), "the folded conv must equal bn(conv(x)) in eval mode")


def verify_mish(mish) -> None:
    """mish against F.mish, values and gradients, also where exp(x) overflows float32."""
    x = torch.cat([torch.linspace(-6, 6, 25), torch.tensor([-100.0, 100.0])]).requires_grad_(True)
    out = mish(x)
    _matches("mish", out, F.mish(x), "x · tanh(softplus(x))")
    (grad,) = torch.autograd.grad(out.sum(), x)
    (want,) = torch.autograd.grad(F.mish(x).sum(), x)
    _matches("the gradient of mish", grad, want, "use F.softplus: log(1 + exp(x)) overflows for x = 100")


def verify_conv_block(C) -> None:
    """ConvBlock (batch norm, ReLU) in eval mode against relu(F.batch_norm(conv(x)))."""
    from torch import nn

    block = C.ConvBlock(3, 4, C.ConvNetConfig(batch_norm=True, act="relu", fused_bn=True)).eval()
    x = torch.randn(2, 3, 5, 5)
    want = torch.relu(nn.functional.batch_norm(block.conv(x), block.bn.running_mean, block.bn.running_var,
                                               block.bn.weight, block.bn.bias, False))
    _matches("ConvBlock (batch norm, ReLU) in eval mode", block(x), want, "conv -> bn -> act")


def verify_convnet(C) -> None:
    """ConvNet logits against head(forward_features(x)) in eval mode (dropout is off)."""
    model = C.ConvNet(C.ConvNetConfig(stages=((4,), (6,)), image_size=8, act="relu", num_classes=5)).eval()
    x = torch.randn(2, 3, 8, 8)
    _matches("ConvNet(...)(x)", model(x), model.head(model.forward_features(x)),
               "pooled features -> dropout -> head, logits of shape (B, K)")


PARTS = (
    Part("cnn.batch_norm", 4, "a7_cnn",  # values, gradients and the running statistics, train and eval
         hint=("training: biased batch mean/variance over all axes but 1, running stats updated in place with "
               "the unbiased variance; eval: the running statistics; (x - mean) / sqrt(var + eps)."),
         check=lambda m: verify_batch_norm(m.cnn.batch_norm)),
    Part("cnn.fold_conv_bn", 3, "a7_cnn",
         hint=("s = bn.weight / sqrt(running_var + eps); kernel · s per OUTPUT channel; bias s·(conv.bias or 0 -"
               " running_mean) + bn.bias; a new conv, inputs untouched."),
         check=lambda m: verify_fold_conv_bn(m.cnn.fold_conv_bn)),
    Part("cnn.mish", 1, "a7_cnn",
         hint="x * tanh(F.softplus(x)), in the input's dtype and shape.",
         check=lambda m: verify_mish(m.cnn.mish)),
    Part("cnn.ConvBlock.forward", 1, "a7_cnn",
         hint="self.act(self.bn(self.conv(x))).",
         check=lambda m: verify_conv_block(m.cnn)),
    Part("cnn.ConvNet.forward", 1, "a7_cnn",
         hint="self.head(self.head_drop(self.forward_features(x))): logits (B, K).",
         check=lambda m: verify_convnet(m.cnn)),
)


### BEGIN GRADER
# The grader's side: hidden cases, the run of one case in the sandbox, the catalogued bugs. Not in a release.
from coursecore.parts.draws import BASE_SEED, _gen, _randn  # noqa: E402
from coursecore.parts.part import Bug, grader  # noqa: E402
import re  # noqa: E402
from typing import Optional  # noqa: E402

BATCH_NORM_SIZES = [  # (shape, training, affine, running, momentum, dtype): every rank, both modes, both dtypes
    ((6, 5), True, True, True, 0.1, torch.float32),  # (B, C): after a linear layer
    ((3, 4, 7), True, True, True, 0.3, torch.float64),  # (B, C, L)
    ((2, 3, 5, 4), True, True, True, 0.1, torch.float32),  # (B, C, H, W)
    ((2, 3, 5, 4), False, True, True, 0.1, torch.float64),  # eval: the running statistics, nothing updated
    ((4, 2, 3, 3), True, False, True, 0.2, torch.float64),  # no weight and bias
    ((3, 5, 2, 6), True, True, False, 0.1, torch.float32),  # training without running statistics
    ((5, 3, 4), False, False, True, 0.1, torch.float32),  # eval, (B, C, L), no affine
]


def _batch_norm_cases():
    cases = []
    for i, (shape, training, affine, running, momentum, dtype) in enumerate(BATCH_NORM_SIZES):
        g = _gen(200 + i)
        C = shape[1]
        # Channels with their own offset and scale, so a wrong reduction axis shows.
        x = (_randn(g, *shape, dtype=torch.float64) * (0.5 + torch.rand(C, generator=g, dtype=torch.float64)).view(
            1, C, *(1,) * (len(shape) - 2)) + torch.linspace(-2, 2, C, dtype=torch.float64).view(
            1, C, *(1,) * (len(shape) - 2))).to(dtype)
        t = {"x": x, "g": _randn(g, *shape, dtype=dtype)}
        if running:
            t["running_mean"] = _randn(g, C, dtype=dtype) * 0.5
            t["running_var"] = (0.5 + torch.rand(C, generator=g, dtype=torch.float64)).to(dtype)
        if affine:
            t["weight"] = (1 + 0.5 * _randn(g, C, dtype=torch.float64)).to(dtype)
            t["bias"] = _randn(g, C, dtype=dtype) * 0.5
        label = (f"batch_norm(x of shape {tuple(shape)}, {'training' if training else 'eval'}, "
                 f"{'with' if affine else 'without'} weight and bias, "
                 f"{'with' if running else 'without'} running statistics, momentum={momentum}), {str(dtype)[6:]}")
        cases.append({"op": "batch_norm", "params": {"training": training, "momentum": momentum, "eps": 1e-5},
                      "tensors": t, "label": label})
    return cases


FOLD_SIZES = [  # (C_in, C_out, k, stride, padding, dilation, groups, conv bias, bn affine, dtype)
    (3, 4, 3, 1, 1, 1, 1, False, True, torch.float32),  # the usual conv before a batch norm: no bias
    (3, 4, 3, 1, 1, 1, 1, True, True, torch.float64),
    (4, 6, 3, 2, 0, 1, 2, True, True, torch.float32),  # stride 2, groups
    (2, 5, 5, 1, 2, 2, 1, True, False, torch.float64),  # dilation; a batch norm without weight and bias
    (6, 6, 3, 1, 1, 1, 6, False, True, torch.float32),  # depthwise (groups = C)
    (2, 2, 1, 1, 0, 1, 1, True, True, torch.float64),  # 1×1, C_in = C_out (a scale on the wrong axis still runs)
]


def _fold_cases():
    cases = []
    for i, (cin, cout, k, stride, padding, dilation, groups, conv_bias, affine, dtype) in enumerate(FOLD_SIZES):
        g = _gen(220 + i)
        t = {"w.conv.weight": _randn(g, cout, cin // groups, k, k, dtype=dtype) * 0.5,
             "w.bn.running_mean": _randn(g, cout, dtype=dtype),
             "w.bn.running_var": (0.2 + 2 * torch.rand(cout, generator=g, dtype=torch.float64)).to(dtype),
             "x": _randn(g, 2, cin, 7, 6, dtype=dtype)}
        if conv_bias:
            t["w.conv.bias"] = _randn(g, cout, dtype=dtype)
        if affine:
            t["w.bn.weight"] = (1 + 0.5 * _randn(g, cout, dtype=torch.float64)).to(dtype)
            t["w.bn.bias"] = _randn(g, cout, dtype=dtype) * 0.5
        params = {"in": cin, "out": cout, "k": k, "stride": stride, "padding": padding, "dilation": dilation,
                  "groups": groups, "conv_bias": conv_bias, "affine": affine, "eps": 1e-3 if i % 2 else 1e-5}
        label = (f"fold_conv_bn(Conv2d({cin}, {cout}, {k}, stride={stride}, padding={padding}, dilation={dilation}, "
                 f"groups={groups}, bias={conv_bias}), BatchNorm2d({cout}, eps={params['eps']:g}, affine={affine})), "
                 f"{str(dtype)[6:]}")
        cases.append({"op": "fold_conv_bn", "params": params, "tensors": t, "label": label})
    return cases


def _mish_cases():
    cases = []
    for i, (shape, dtype, spread) in enumerate([((2, 3, 4, 5), torch.float32, 3.0), ((7,), torch.float64, 2.0),
                                                 ((3, 40), torch.float32, 60.0)]):  # large |x|: exp overflows
        g = _gen(240 + i)
        x = _randn(g, *shape, dtype=dtype) * spread
        label = f"mish(x of shape {tuple(shape)}, values up to {x.abs().max().item():.0f}), {str(dtype)[6:]}"
        cases.append({"op": "mish", "params": {}, "tensors": {"x": x, "g": _randn(g, *shape, dtype=dtype)},
                      "label": label})
    return cases


CONV_BLOCK_SIZES = [  # (C_in, C_out, batch_norm, act, training, H, W)
    (3, 4, True, "relu", False, 6, 5),
    (2, 5, False, "relu", True, 5, 5),
    (4, 3, True, "mish", True, 4, 6),
]


def _conv_block_cases(ref):
    cases = []
    for i, (cin, cout, bn, act, training, H, W) in enumerate(CONV_BLOCK_SIZES):
        g = _gen(260 + i)
        torch.manual_seed(BASE_SEED + 260 + i)
        cfg = ref.cnn.ConvNetConfig(batch_norm=bn, act=act)
        block = ref.cnn.ConvBlock(cin, cout, cfg)
        if bn:  # statistics other than 0 and 1, so eval mode differs from an identity
            block.bn.running_mean.copy_(_randn(g, cout))
            block.bn.running_var.copy_(0.5 + torch.rand(cout, generator=g))
            block.bn.weight.data.copy_(1 + 0.3 * _randn(g, cout))
            block.bn.bias.data.copy_(0.3 * _randn(g, cout))
        state = {f"w.{k}": v.detach().clone() for k, v in block.state_dict().items()}
        label = (f"ConvBlock({cin}, {cout}, batch_norm={bn}, act={act!r}) on x of shape {(2, cin, H, W)}, "
                 f"{'train' if training else 'eval'} mode")
        cases.append({"op": "conv_block", "params": {"in": cin, "out": cout, "batch_norm": bn, "act": act,
                                                      "training": training},
                      "tensors": {"x": _randn(g, 2, cin, H, W), "g": _randn(g, 2, cout, H, W), **state},
                      "label": label})
    return cases


CONVNET_SIZES = [  # (stages, batch_norm, act, image_size, in_chans, K, drop_rate, training)
    (((4,), (6,)), True, "relu", 8, 3, 5, 0.0, False),
    (((3, 4), (5,)), False, "mish", 12, 1, 3, 0.0, False),
    (((4,), (7,)), True, "mish", 8, 3, 4, 0.5, False),  # dropout before the head: off in eval mode
    # Train mode, where dropout acts: only here does a dropout left out, put after the head or given another rate
    # change the logits. Every case starts from torch.manual_seed(0), so reference and student draw one mask.
    (((4,), (6,)), False, "relu", 8, 3, 5, 0.4, True),
]


def _convnet_cases(ref):
    cases = []
    for i, (stages, bn, act, size, cin, K, drop, training) in enumerate(CONVNET_SIZES):
        g = _gen(280 + i)
        torch.manual_seed(BASE_SEED + 280 + i)
        config = {"stages": [list(s) for s in stages], "batch_norm": bn, "act": act, "image_size": size,
                  "in_chans": cin, "num_classes": K, "drop_rate": drop}
        model = ref.cnn.ConvNet(ref.cnn.ConvNetConfig(**{**config, "stages": stages}))
        state = {f"w.{k}": v.detach().clone() for k, v in model.state_dict().items()}
        label = (f"ConvNet(stages={stages}, batch_norm={bn}, act={act!r}, K={K}, drop_rate={drop}) in "
                 f"{'train' if training else 'eval'} mode on x of shape {(3, cin, size, size)}")
        cases.append({"op": "convnet", "params": {"config": config, "training": training},
                      "tensors": {"x": _randn(g, 3, cin, size, size), "g": _randn(g, 3, K), **state}, "label": label})
    return cases


def _oracle_conv_block_forward(block, x):
    """ConvBlock.forward done right: conv -> batch norm (or identity) -> activation."""
    return block.act(block.bn(block.conv(x)))


def _oracle_cnn_layers(module) -> None:
    """Swap the student's Mish and BatchNorm2d inside `module` for torch's (nn.Mish, nn.BatchNorm2d with the
    same state): a ConvBlock / ConvNet part is then graded apart from the student's mish and batch_norm."""
    from torch import nn

    for name, child in list(module.named_children()):
        if type(child).__name__ == "Mish":
            setattr(module, name, nn.Mish())
        elif isinstance(child, nn.BatchNorm2d) and type(child) is not nn.BatchNorm2d:
            plain = nn.BatchNorm2d(child.num_features, eps=child.eps, momentum=child.momentum)
            plain.load_state_dict(child.state_dict())
            setattr(module, name, plain)
        else:
            _oracle_cnn_layers(child)


MISH_POINTS = torch.tensor([0.0, -30.0, 30.0])  # mish(0) = 0; mish(x) → 0 far left, → x far right
BLOCK_CALLS = ("conv", "bn", "act")  # ConvBlock.forward calls each once, in this order
NET_CALLS = ("stages", "global_pool", "head_drop", "head")  # ConvNet.forward, through forward_features
# What each recorded layer is, so a finding about calls says which step of the recipe is missing or misplaced.
CALL_ROLES = {"conv": "the convolution", "bn": "the batch norm", "act": "the activation",
              "stages": "the conv stages", "global_pool": "the global average pooling",
              "head_drop": "the dropout before the head", "head": "the linear head"}


def _record_calls(module, names) -> tuple:
    """Forward hooks that append 1, 2, … (the position of the submodule in `names`) to a list at every call: the
    order in which the student's forward calls the layers built for it (an analyser reads it; it is never scored)."""
    calls, hooks = [], []
    for i, name in enumerate(names, 1):
        sub = getattr(module, name, None)
        if sub is not None:
            hooks.append(sub.register_forward_hook(lambda m, args, out, i=i: calls.append(i) and None))
    return calls, hooks


def _run(mods, case: dict, h) -> dict:
    """One case on the student's cnn.py (in the grader's sandbox); `h` is the runner's harness."""
    import types

    torch = h.torch()
    from torch import nn

    op, p, t = case["op"], case["params"], case["tensors"]
    C_, cf = getattr(mods, "cnn", None), "cnn.py"
    if C_ is None:
        raise h.StudentError("cnn.py was not imported for this assignment")
    state = {k[2:]: v for k, v in t.items() if k.startswith("w.")}

    if op == "batch_norm":
        fn = h.need(C_, "batch_norm", cf)
        x = h.leaf(t["x"])
        affine = {k: h.leaf(t[k]) for k in ("weight", "bias") if k in t}
        running = {k: t[k].clone() for k in ("running_mean", "running_var") if k in t}  # updated in place
        result = h.forward_backward(
            lambda: fn(x, running.get("running_mean"), running.get("running_var"), affine.get("weight"),
                       affine.get("bias"), training=p["training"], momentum=p["momentum"], eps=p["eps"]),
            {"x": x, **affine}, {}, t["g"], "batch_norm")
        # Probe for the analysers (never scored): the normalised tensor alone, no weight or bias, on fresh running
        # statistics: it separates the statistics from the affine step. A probe that fails leaves no key.
        try:
            fresh = {k: t[k].clone() for k in running}
            with torch.no_grad():
                xhat = fn(t["x"].clone(), fresh.get("running_mean"), fresh.get("running_var"), None, None,
                          training=p["training"], momentum=p["momentum"], eps=p["eps"])
            result["probe:xhat"] = h.tensor(xhat, "batch_norm")
        except Exception:  # noqa: BLE001 - a probe is for the hint only
            pass
        return {**result, **running}  # the running statistics after the call

    if op == "fold_conv_bn":
        fn = h.need(C_, "fold_conv_bn", cf)
        dtype = t["x"].dtype
        conv = nn.Conv2d(p["in"], p["out"], p["k"], stride=p["stride"], padding=p["padding"], dilation=p["dilation"],
                         groups=p["groups"], bias=p["conv_bias"], dtype=dtype)
        bn = nn.BatchNorm2d(p["out"], eps=p["eps"], affine=p["affine"], dtype=dtype)
        conv.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("conv.")})
        bn.load_state_dict({**{k[3:]: v for k, v in state.items() if k.startswith("bn.")},
                            "num_batches_tracked": torch.tensor(1)}, strict=False)
        bn.eval()
        fused = fn(conv, bn)
        if not isinstance(fused, nn.Conv2d):
            raise h.StudentError(f"fold_conv_bn returned a {type(fused).__name__}; it must return a new nn.Conv2d")
        # The conv and the batch norm as the call left them: the grader compares them with the inputs it sent
        # (a check made here could be fooled by a student file that patched torch.equal at import). Read with
        # the functions captured before the student's import.
        state_dict, clone = h.trusted()["state_dict"], h.trusted()["clone"]
        after = {f"after:{prefix}.{k}": clone(v) for prefix, module in (("conv", conv), ("bn", bn))
                 for k, v in state_dict(module).items() if f"{prefix}.{k}" in state}
        # Plain tensors (a Parameter is not one): only those leave the sandbox.
        result = {"weight": h.tensor(fused.weight.detach(), "fold_conv_bn(...).weight"), **after}
        if fused.bias is not None:
            result["bias"] = h.tensor(fused.bias.detach(), "fold_conv_bn(...).bias")
        with torch.no_grad():
            result["out"] = h.tensor(fused(t["x"]), "the folded convolution")
        return result

    if op == "mish":
        fn = h.need(C_, "mish", cf)
        x = h.leaf(t["x"])
        result = h.forward_backward(lambda: fn(x), {"x": x}, {}, t["g"], "mish")
        try:  # a probe for the analysers (never scored): mish at 0, far left and far right
            with torch.no_grad():
                result["probe:points"] = h.tensor(fn(MISH_POINTS.to(t["x"].dtype)), "mish")
        except Exception:  # noqa: BLE001 - a probe is for the hint only
            pass
        return result

    if op == "conv_block":
        cfg = h.need(C_, "ConvNetConfig", cf)(batch_norm=p["batch_norm"], act=p["act"], fused_bn=True)
        block = h.need(C_, "ConvBlock", cf)(p["in"], p["out"], cfg)
        h.load(block, state, "ConvBlock")
        _oracle_cnn_layers(block)  # this part grades ConvBlock.forward alone, not mish or batch_norm
        block.train(p["training"])
        x = h.leaf(t["x"])
        calls, hooks = _record_calls(block, BLOCK_CALLS)
        result = h.forward_backward(lambda: (calls.clear(), block(x))[1], {"x": x}, h.module_leaves(block), t["g"],
                                    "ConvBlock.forward")
        for hook in hooks:
            hook.remove()
        result["probe:calls"] = torch.tensor([float(c) for c in calls])
        return result

    if op == "convnet":
        config = {**p["config"], "stages": tuple(tuple(s) for s in p["config"]["stages"]), "fused_bn": True}
        model = h.need(C_, "ConvNet", cf)(h.need(C_, "ConvNetConfig", cf)(**config))
        h.load(model, state, "ConvNet")
        _oracle_cnn_layers(model)
        block_type = h.need(C_, "ConvBlock", cf)
        for module in model.modules():  # correct blocks: this part grades ConvNet.forward alone
            if isinstance(module, block_type):
                module.forward = types.MethodType(_oracle_conv_block_forward, module)
        training = p.get("training", False)
        model.train(training)
        x = h.leaf(t["x"])
        seen = {}  # what reaches the head: the analysers read dropout, pooling and flattening mistakes from it
        calls, call_hooks = _record_calls(model, NET_CALLS)

        def record(module, args, out) -> None:  # returns None: a forward hook's return value replaces the output
            seen.setdefault("in", args[0].detach().clone())
        hook = model.head.register_forward_hook(record)
        result = h.forward_backward(lambda: (calls.clear(), model(x))[1], {"x": x}, h.module_leaves(model), t["g"],
                                    "ConvNet.forward", repeat=not training)  # train mode draws a new mask
        hook.remove()
        for call_hook in call_hooks:
            call_hook.remove()
        result["probe:calls"] = torch.tensor([float(c) for c in calls])
        try:  # probes for the analysers (never scored): the given feature extractor's outputs
            with torch.no_grad():
                result["probe:stages"] = h.tensor(model.stages(t["x"]), "ConvNet.stages")
                result["probe:features"] = h.tensor(model.forward_features(t["x"]), "ConvNet.forward_features")
            if "in" in seen:
                result["probe:head.in"] = h.tensor(seen["in"], "the head's input")
        except Exception:  # noqa: BLE001 - a probe is for the hint only
            pass
        return result

    raise ValueError(f"unknown case op {op!r}")


def _batch_norm_variant(kind: str, key: str = "out"):
    """batch_norm with one catalogued mistake on the case's inputs: its `key` output ('out', 'running_mean',
    'running_var'). None when the mistake does not change this case (e.g. eval-mode bugs in training)."""
    def compute(c):
        t, p = c["tensors"], c["params"]
        x, training, m, eps = t["x"], p["training"], p["momentum"], p["eps"]
        dims = [0] + list(range(2, x.dim()))
        shape = (1, -1) + (1,) * (x.dim() - 2)
        rm, rv = t.get("running_mean"), t.get("running_var")
        n = x.numel() // x.shape[1]
        if training or kind == "eval_batch_stats":
            mean = x.mean(dim=dims)
            var = x.var(dim=dims, unbiased=kind == "unbiased_normalise")
        else:
            mean, var = rm, rv
        if key != "out":
            if rm is None or not training:
                return None
            batch_mean, batch_var = x.mean(dim=dims), x.var(dim=dims, unbiased=False)
            if kind == "biased_running_var":
                new_mean, new_var = (1 - m) * rm + m * batch_mean, (1 - m) * rv + m * batch_var
            elif kind == "momentum_swapped":
                new_mean, new_var = m * rm + (1 - m) * batch_mean, m * rv + (1 - m) * batch_var * n / (n - 1)
            elif kind == "not_in_place":
                new_mean, new_var = rm, rv
            else:
                return None
            return new_mean if key == "running_mean" else new_var
        if kind in ("biased_running_var", "momentum_swapped", "not_in_place"):
            return None
        view = lambda v: v.view(shape)  # noqa: E731 - (C,) -> broadcastable over x
        if kind == "eps_outside_sqrt":
            y = (x - view(mean)) / (view(var).sqrt() + eps)
        else:
            y = (x - view(mean)) / (view(var) + eps).sqrt()
        if "weight" in t:
            y = y * t["weight"].view(shape)
        if "bias" in t:
            y = y + t["bias"].view(shape)
        return y
    return compute


def _detached_stats_grad(c):
    """The gradient of x when the batch statistics are constants: cotangent · weight / sqrt(var + eps)."""
    t, p = c["tensors"], c["params"]
    if not p["training"]:
        return None
    x = t["x"]
    dims = [0] + list(range(2, x.dim()))
    shape = (1, -1) + (1,) * (x.dim() - 2)
    scale = (x.var(dim=dims, unbiased=False) + p["eps"]).rsqrt()
    if "weight" in t:
        scale = scale * t["weight"]
    return t["g"] * scale.view(shape)


def _fold_variant(kind: str, key: str):
    """fold_conv_bn with one catalogued mistake: the folded 'weight' or 'bias'."""
    def compute(c):
        t, p = c["tensors"], c["params"]
        w = t["w.conv.weight"]
        mean, var = t["w.bn.running_mean"], t["w.bn.running_var"]
        gamma = t.get("w.bn.weight", torch.ones_like(mean))
        beta = t.get("w.bn.bias", torch.zeros_like(mean))
        conv_bias = t.get("w.conv.bias", torch.zeros_like(mean))
        if kind == "no_conv_bias" and "w.conv.bias" not in t:
            return None
        if kind == "var_not_sqrt":
            scale = gamma / (var + p["eps"])
        else:
            scale = gamma / (var + (0.0 if kind == "no_eps" else p["eps"])).sqrt()
        if key == "weight":
            if kind == "input_axis":
                return w * scale.view(1, -1, 1, 1)
            return w * scale.view(-1, 1, 1, 1)
        if kind == "no_conv_bias":
            return beta - mean * scale
        if kind == "bias_unscaled":
            return conv_bias - mean + beta
        return (conv_bias - mean) * scale + beta
    return compute


def _mish_naive_grad(c):
    """The gradient of x·tanh(log(1 + exp(x))): NaN where exp overflows (the float32 case with large |x|)."""
    with torch.enable_grad():  # diagnose() runs under no_grad
        x = c["tensors"]["x"].detach().clone().requires_grad_(True)
        y = x * torch.tanh(torch.log(1 + torch.exp(x)))
        (grad,) = torch.autograd.grad((y * c["tensors"]["g"]).sum(), x)
    return grad


def _conv_block_act_first(c):
    """ConvBlock with the activation before the batch norm: bn(act(conv(x)))."""
    from torch import nn

    p, t = c["params"], c["tensors"]
    if not p["batch_norm"]:
        return None
    conv = nn.Conv2d(p["in"], p["out"], 3, padding=1, bias=False)
    conv.load_state_dict({"weight": t["w.conv.weight"]})
    bn = nn.BatchNorm2d(p["out"])
    bn.load_state_dict({k[5:]: v for k, v in t.items() if k.startswith("w.bn.")})
    bn.train(p["training"])
    act = nn.Mish() if p["act"] == "mish" else nn.ReLU()
    return bn(act(conv(t["x"])))


BUGS = (
    Bug("cnn.biased_running_var", "cnn.batch_norm",
        "running_var is updated with the biased variance (divided by n): the running update uses the UNBIASED "
        "one, biased · n / (n - 1), n = values per channel, while the normalisation itself uses the biased one, "
        "as F.batch_norm does.",
        variant=_batch_norm_variant("biased_running_var", "running_var"), key="running_var",
        mutation=("momentum * var.detach() * (n / (n - 1))",
                  "momentum * var.detach()")),
    Bug("cnn.momentum_swapped", "cnn.batch_norm",
        "the running statistics keep `momentum` of the old value: momentum is the weight of the NEW batch, "
        "running = (1 - momentum)·running + momentum·batch.",
        variant=_batch_norm_variant("momentum_swapped", "running_mean"), key="running_mean",
        mutation=("running_mean.mul_(1 - momentum).add_(momentum * mean.detach())",
                  "running_mean.mul_(momentum).add_((1 - momentum) * mean.detach())")),
    Bug("cnn.running_not_in_place", "cnn.batch_norm",
        "the running statistics the caller passed did not change: update them in place (running_mean.mul_(...)"
        ".add_(...) under torch.no_grad()); `running_mean = ...` only rebinds a local name.",
        variant=_batch_norm_variant("not_in_place", "running_mean"), key="running_mean",
        mutation=("running_mean.mul_(1 - momentum).add_(momentum * mean.detach())",
                  "running_mean = (1 - momentum) * running_mean + momentum * mean")),
    Bug("cnn.unbiased_normalise", "cnn.batch_norm",
        "the batch is normalised with the unbiased variance (divided by n - 1): normalise with the biased one "
        "(unbiased=False); only the running update uses n / (n - 1).",
        variant=_batch_norm_variant("unbiased_normalise"),
        mutation=("var = x.var(dim=_reduce_dims(x), unbiased=False)",
                  "var = x.var(dim=_reduce_dims(x))")),
    Bug("cnn.detached_statistics", "cnn.batch_norm",
        "the values are right but the gradient of x is not: the batch mean and variance are cut from the graph "
        "(.detach() or torch.no_grad() around them). In training they depend on x, and the gradient flows "
        "through them too; only the running update goes under torch.no_grad().",
        variant=_detached_stats_grad, key="grad:x",
        mutation=("        mean = x.mean(dim=_reduce_dims(x))  # (C,)\n"
                   "        var = x.var(dim=_reduce_dims(x), unbiased=False)",
                  "        mean = x.detach().mean(dim=_reduce_dims(x))\n"
                  "        var = x.detach().var(dim=_reduce_dims(x), unbiased=False)")),
    Bug("cnn.eval_batch_stats", "cnn.batch_norm",
        "eval mode (training=False) normalises with the batch's statistics: in eval mode use running_mean and "
        "running_var, so a prediction does not depend on the other images of the batch.",
        variant=_batch_norm_variant("eval_batch_stats"),
        mutation=("    else:\n"
                   "        mean, var = running_mean, running_var\n",
                  "    else:\n"
                  "        mean, var = x.mean(dim=_reduce_dims(x)), x.var(dim=_reduce_dims(x), unbiased=False)\n")),
    Bug("cnn.eps_outside_sqrt", "cnn.batch_norm",
        "eps is added after the square root: divide by sqrt(var + eps).",
        variant=_batch_norm_variant("eps_outside_sqrt"),
        mutation=("torch.rsqrt(var.view(shape) + eps)",
                  "1 / (var.view(shape).sqrt() + eps)")),
    Bug("cnn.fold_no_conv_bias", "cnn.fold_conv_bn",
        "the convolution's own bias is left out of the fold: the new bias is s·(conv.bias - running_mean) + "
        "bn.bias (conv.bias counts as 0 only when it is None).",
        variant=_fold_variant("no_conv_bias", "bias"), key="bias",
        mutation=("conv_bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)",
                  "conv_bias = torch.zeros_like(bn.running_mean)")),
    Bug("cnn.fold_bias_unscaled", "cnn.fold_conv_bn",
        "the bias is not scaled: batch norm multiplies (conv output - running_mean) by s = weight / sqrt(var + "
        "eps), so the new bias is s·(conv.bias - running_mean) + bn.bias.",
        variant=_fold_variant("bias_unscaled", "bias"), key="bias",
        mutation=("(conv_bias - bn.running_mean) * scale + shift",
                  "conv_bias - bn.running_mean + shift")),
    Bug("cnn.fold_no_eps", "cnn.fold_conv_bn",
        "bn.eps is missing from the scale: s = bn.weight / sqrt(bn.running_var + bn.eps), as in eval mode.",
        variant=_fold_variant("no_eps", "weight"), key="weight",
        mutation=("scale = torch.rsqrt(bn.running_var + bn.eps)",
                  "scale = torch.rsqrt(bn.running_var)")),
    Bug("cnn.fold_var_not_sqrt", "cnn.fold_conv_bn",
        "the scale divides by the variance: batch norm divides by the standard deviation, sqrt(var + eps).",
        variant=_fold_variant("var_not_sqrt", "weight"), key="weight",
        mutation=("scale = torch.rsqrt(bn.running_var + bn.eps)",
                  "scale = 1 / (bn.running_var + bn.eps)")),
    Bug("cnn.fold_input_axis", "cnn.fold_conv_bn",
        "the kernel is scaled along its input-channel axis: batch norm scales OUTPUT channels, and the kernel is "
        "(C_out, C_in / groups, k, k), so use scale.view(-1, 1, 1, 1).",
        variant=_fold_variant("input_axis", "weight"), key="weight",
        mutation=("conv.weight * scale.view(-1, 1, 1, 1)",
                  "conv.weight * scale.view(1, -1, 1, 1)")),
    Bug("cnn.mish_naive_softplus", "cnn.mish",
        "NaN gradients for large inputs: log(1 + exp(x)) overflows (exp(100) is inf in float32) and its "
        "gradient becomes inf/inf. Use F.softplus, which is stable.",
        variant=_mish_naive_grad, key="grad:x",
        mutation=("return x * torch.tanh(F.softplus(x))",
                  "return x * torch.tanh(torch.log(1 + torch.exp(x)))")),
    Bug("cnn.mish_no_tanh", "cnn.mish",
        "mish is x · tanh(softplus(x)); the tanh is missing.",
        variant=lambda c: c["tensors"]["x"] * F.softplus(c["tensors"]["x"]),
        mutation=("return x * torch.tanh(F.softplus(x))",
                  "return x * F.softplus(x)")),
    Bug("cnn.block_act_before_bn", "cnn.ConvBlock.forward",
        "the activation runs before the batch norm: the order is conv -> bn -> act (the norm sees the conv's "
        "raw output, and the next layer a non-linear one).",
        variant=_conv_block_act_first,
        mutation=("return self.act(self.bn(self.conv(x)))",
                  "return self.bn(self.act(self.conv(x)))")),
    Bug("cnn.convnet_head_on_unpooled", "cnn.ConvNet.forward",
        "self.head is a linear layer on the pooled features: give it self.forward_features(x), which is "
        "(B, C_last), not the image or an un-pooled (B, C, H, W) map.",
        error=r"mat1 and mat2 shapes cannot be multiplied",
        mutation=("return self.head(self.head_drop(self.forward_features(x)))",
                  "return self.head(self.head_drop(x.flatten(1)))")),
)


def _describe_fold(key: str, expected, actual, case: dict, compare) -> str | None:
    """fold_conv_bn's outputs: the new kernel and bias, its output, and whether the inputs were left alone."""
    if key == "inputs_unchanged" and type(actual) is torch.Tensor and actual.numel() == 1 and not actual.item():
        return ("fold_conv_bn changed the conv or the batch norm it was given: build the folded weights into the "
                "new convolution (fused) and leave the inputs untouched (the caller may still use them)")
    if key == "bias" and actual is None:
        return "the folded convolution has no bias: the fold always needs one (keep fused's bias=True)"
    return compare(key, expected, actual)


# fold_conv_bn's checks per case and the outputs each looks at: a right kernel with a wrong bias keeps the kernel's
# credit; a fold that changes its inputs (the folded conv right) loses only "inputs unchanged".
FOLD_CHECKS = {"kernel": ("weight",), "bias": ("bias",), "output": ("out",), "inputs unchanged": ("inputs_unchanged",)}


def _fold_inputs(case: dict, values: dict) -> dict:
    """fold_conv_bn's `after:*` tensors (the conv and batch norm as the call left them) folded into one
    `inputs_unchanged` flag, computed in the grader's process against the inputs the grader sent: never in the
    student's, where a file could have patched torch.equal at import."""
    state = {k[2:]: v for k, v in case["tensors"].items() if k.startswith("w.")}
    after = {k[len("after:"):]: v for k, v in values.items() if k.startswith("after:")}
    unchanged = set(after) == set(state) and all(
        type(v) is torch.Tensor and v.shape == state[k].shape and v.dtype == state[k].dtype and torch.equal(v, state[k])
        for k, v in after.items())
    return {**{k: v for k, v in values.items() if not k.startswith("after:")},
            "inputs_unchanged": torch.tensor(float(unchanged))}


# ---- the analysers: each part's intermediate quantities, in the order the data flows, with generated wrong versions
# (analysers.decompose). Computed here from the case's inputs (float64), never from the reference's source.
def _error_hint(part: str, message: str, c: Optional[dict] = None) -> Optional[str]:
    """torch's error, said for cnn.py (the generic translation when none of these applies). With the case `c`,
    sizes in the message that are the block's C_in and C_out say which tensor went where."""
    from coursecore.parts import analysers

    if part == "cnn.ConvBlock.forward" and c is not None:
        found = _block_size_error(message, c["params"]["in"], c["params"]["out"])
        if found:
            return found

    if part == "cnn.ConvNet.forward" and re.search(r"mat1 and mat2 shapes cannot be multiplied", message):
        return ("self.head is a Linear on the pooled features: it got more features per image than C_last, the "
                "feature map flattened without the global average pooling. Pass self.forward_features(x), (B, C_last).")
    if part == "cnn.batch_norm" and re.search(r"Dimension out of range|shape '\[.*\]' is invalid|too many indices|"
                                              r"size of tensor a \(\d+\) must match", message):
        return ("batch norm averages over _reduce_dims(x), every axis but C (axis 1): x may be (B, C), (B, C, L) or "
                "(B, C, H, W), so do not hard-code (0, 2, 3), and keep the statistics of shape (C,).")
    if part == "cnn.ConvBlock.forward" and re.search(r"size mismatch|running_mean should contain \d+ elements",
                                                     message):
        return ("the layers run in the wrong order: ConvBlock is conv -> bn -> act, and the batch norm normalises the "
                "conv's C_out output channels")
    if part == "cnn.ConvBlock.forward" and re.search(r"modified by an inplace operation", message):
        return ("self.act is nn.ReLU(inplace=True) for ReLU blocks: it overwrites its input, so applying it to a tensor "
                "that is still needed (twice, or before the batch norm) breaks the gradient: conv -> bn -> act, with "
                "self.act applied once, last")
    if re.search(r"NoneType", message):
        what = {"cnn.fold_conv_bn": "bn.weight, bn.bias or conv.bias is None here (a batch norm without affine, a conv "
                                    "without bias): count a missing weight as 1 and a missing bias as 0",
                "cnn.batch_norm": "weight and bias may be None (then they count as 1 and 0), and so may the running "
                                  "statistics in training: update them only when they are given"}.get(part)
        if what:
            return what
    if part == "cnn.fold_conv_bn" and re.search(r"size of tensor a \(\d+\) must match", message):
        return ("the scale s (C_out,) does not broadcast against the kernel (C_out, C_in / groups, k, k): reshape it "
                "to one value per OUTPUT channel, s.view(-1, 1, 1, 1)")
    return analysers.explain_error(message, "", {})  # torch's wording, never another module's


def _block_size_error(message: str, cin: int, cout: int) -> Optional[str]:
    """A ConvBlock error whose sizes are C_in and C_out (distinct in every erroring case): the conv fed its own
    output, or the output combined element-wise with the input. Other size errors get torch's wording."""
    conv = re.search(r"expected input\[[\d, ]+\] to have (\d+) channels, but got (\d+) channels", message)
    if conv and (int(conv.group(1)), int(conv.group(2))) == (cin, cout):
        return (f"self.conv received a tensor of {cout} channels (C_out, the size of its own output) where it takes "
                f"x's {cin} (C_in): the convolution is called more than once, on its own output. ConvBlock calls it "
                "once, on x: self.act(self.bn(self.conv(x)))")
    mixed = re.search(r"size of tensor a \((\d+)\) must match the size of tensor b \((\d+)\) at non-singleton "
                      r"dimension 1", message)
    if mixed and {int(mixed.group(1)), int(mixed.group(2))} == {cin, cout}:
        return (f"an element-wise operation combined a tensor of {cout} channels (C_out, the block's output) with one "
                f"of {cin} (C_in, like the input x): ConvBlock adds nothing to its output (no residual connection, "
                "no + x): self.act(self.bn(self.conv(x)))")
    return None


def _bn_hypotheses(c: dict, key: str, actual=None):
    """Wrong versions of batch_norm's quantities on case `c`: 'xhat' (the normalised tensor), 'out' (after the
    affine step, given the right xhat), 'running_mean' and 'running_var' (after the call)."""
    from coursecore.parts import analysers

    t, p = c["tensors"], c["params"]
    x = t["x"].double()
    training, m, eps = p["training"], p["momentum"], p["eps"]
    dims = [0] + list(range(2, x.dim()))
    shape = (1, -1) + (1,) * (x.dim() - 2)
    B, n = x.shape[0], x.numel() // x.shape[1]
    mu, var_b = x.mean(dims), x.var(dims, unbiased=False)
    var_u = var_b * n / (n - 1)
    rm = t["running_mean"].double() if "running_mean" in t else None
    rv = t["running_var"].double() if "running_var" in t else None
    w = t["weight"].double() if "weight" in t else None
    b = t["bias"].double() if "bias" in t else None
    if key == "xhat":
        means = [("batch", None), ("running", None), ("updated", None), ("per_image", None), ("batch_axis", None),
                 ("zero", None), ("running_var", None)]
        variances = [("biased", None), ("unbiased", None), ("running", None), ("updated", None), ("per_image", None),
                     ("batch_axis", None), ("running_mean", None), ("uncentred", None)]
        if not training:  # eval: the running statistics are the right ones
            means[0], means[1] = means[1], means[0]
            variances[0], variances[2] = variances[2], variances[0]
        forms = [("rsqrt", None), ("eps_outside", "eps is added outside the square root: divide by sqrt(var + eps)"),
                 ("no_sqrt", "x - mean is divided by the variance, not by its square root (the standard deviation)"),
                 ("no_eps", "eps is missing from the denominator: sqrt(var + eps)")]
        mode = "training" if training else "eval mode (training=False)"
        source_words = {"batch": "the batch's", "running": "running_mean / running_var",
                        "updated": "the running statistics just updated by this call",
                        "per_image": "statistics of each image alone (over the spatial axes only, as instance norm)",
                        "batch_axis": "statistics over the batch axis only (one per channel *and* position)"}
        right_source = "the batch's statistics (biased variance)" if training else "running_mean and running_var"

        def stat(which, kind):
            if which == "batch":
                return mu.view(shape) if kind == "mean" else var_b.view(shape)
            if which == "unbiased":
                return var_u.view(shape)
            if which == "uncentred":
                return (x * x).mean(dims).view(shape)
            if which == "biased":
                return var_b.view(shape)
            if which == "running":
                return None if rm is None else (rm if kind == "mean" else rv).view(shape)
            if which in ("running_var", "running_mean"):  # the two running statistics exchanged
                return None if rm is None else (rv if which == "running_var" else rm).view(shape)
            if which == "updated":
                if rm is None:
                    return None
                return ((1 - m) * rm + m * mu).view(shape) if kind == "mean" else ((1 - m) * rv + m * var_u).view(shape)
            if which in ("per_image", "batch_axis"):
                axes = dims[1:] if which == "per_image" else [0]
                if not axes:
                    return None
                return x.mean(axes, keepdim=True) if kind == "mean" else x.var(axes, unbiased=False, keepdim=True)
            return torch.zeros(())  # zero: the mean is not subtracted

        def describe(mean, var, form):
            words = []
            correct_mean = "batch" if training else "running"
            correct_var = "biased" if training else "running"
            if (mean, var) == ("running_var", "running_mean"):
                words.append(f"{mode} uses running_var as the mean and running_mean as the variance: they are "
                             "exchanged")
            elif mean == var and mean != correct_mean and mean in source_words:
                words.append(f"{mode} normalises with {source_words[mean]} instead of {right_source}")
            else:
                if mean == "running_var":
                    words.append(f"{mode} subtracts running_var instead of running_mean")
                elif mean != correct_mean:
                    words.append("the mean is not subtracted" if mean == "zero" else
                                 f"{mode} subtracts {source_words.get(mean, mean)} mean instead of {right_source}")
                if var == "running_mean":
                    words.append(f"{mode} divides by running_mean instead of running_var")
                elif var == "uncentred":
                    words.append("the variance is the mean of x², not of (x - mean)²: var = ((x - mean)²).mean over "
                                 "_reduce_dims(x), or x.var(..., unbiased=False)")
                elif var != correct_var:
                    if var == "unbiased" and training:
                        words.append("the batch is normalised with the unbiased variance (divided by n - 1): "
                                     "normalise with the biased one (unbiased=False); only the running update uses "
                                     "n / (n - 1)")
                    elif var == "biased" or var == "unbiased":
                        words.append(f"{mode} divides by the batch's variance instead of running_var")
                    else:
                        words.append(f"{mode} divides by {source_words[var]} variance instead of {right_source}")
            if form is not None:
                words.append(form)
            return "; ".join(words)

        out = []
        for picks, wrong in analysers.variants({"mean": means, "var": variances, "form": forms}):
            mean, var = stat(picks["mean"], "mean"), stat(picks["var"], "var")
            if mean is None or var is None:
                continue
            if picks["mean"] == "zero" and len(wrong) > 1:
                continue
            form = dict(forms)[picks["form"]] if picks["form"] != "rsqrt" else None
            denom = {"rsqrt": (var + eps).sqrt(), "eps_outside": var.sqrt() + eps, "no_sqrt": var + eps,
                     "no_eps": var.sqrt()}[picks["form"]]
            out.append((describe(picks["mean"], picks["var"], form), (x - mean) / denom))
        out += _bn_fitted_xhat(x, actual, mu if training else rm, var_b if training else rv, eps, dims, shape,
                               mode, right_source)
        return out
    if key == "out":
        if w is None and b is None:
            return []
        mean, var = (mu, var_b) if training else (rm, rv)
        xhat = (x - mean.view(shape)) / (var.view(shape) + eps).sqrt()
        W = w.view(shape) if w is not None else torch.ones(())
        Bb = b.view(shape) if b is not None else torch.zeros(())
        hyps = [("weight and bias are exchanged: y = x̂ · weight + bias", xhat * Bb + W),
                ("the bias is added before the weight multiplies: y = x̂ · weight + bias, not (x̂ + bias) · weight",
                 (xhat + Bb) * W)]
        scaled = {"mul": xhat * W, "div": xhat / W, "none": xhat, "add": xhat + W}
        shifts = {"add": Bb, "none": torch.zeros(()), "sub": -Bb}
        for picks, wrong in analysers.variants({
                "weight": [("mul", None), ("div", "x̂ is divided by the weight: multiply, y = x̂ · weight + bias"),
                           ("none", "the weight does not multiply: y = x̂ · weight + bias"),
                           ("add", "the weight is added: multiply, y = x̂ · weight + bias")],
                "bias": [("add", None), ("none", "the bias is not added: y = x̂ · weight + bias"),
                         ("sub", "the bias is subtracted: y = x̂ · weight + bias")]}):
            hyps.append(("; ".join(wrong), scaled[picks["weight"]] + shifts[picks["bias"]]))
        if type(actual) is torch.Tensor and actual.shape == x.shape:  # y = x̂·α_c + β_c fitted per channel
            y = actual.double().transpose(0, 1).reshape(x.shape[1], -1)
            z = xhat.transpose(0, 1).reshape(x.shape[1], -1)
            zc, yc = z - z.mean(1, keepdim=True), y - y.mean(1, keepdim=True)
            alpha = (zc * yc).sum(1) / (zc * zc).sum(1)
            beta = y.mean(1) - alpha * z.mean(1)
            fit = (xhat * alpha.view(shape) + beta.view(shape))
            W1 = w if w is not None else torch.ones_like(alpha)
            B1 = b if b is not None else torch.zeros_like(alpha)
            scale_ok = bool(torch.allclose(alpha, W1, 1e-4, 1e-6))
            shift_ok = bool(torch.allclose(beta, B1, 1e-4, 1e-6))
            if scale_ok != shift_ok:
                hyps.append(("the normalised tensor is right, but the shift per channel is not the bias: add bias once, "
                             "y = x̂ · weight + bias" if scale_ok else
                             "the normalised tensor is right, but the scale per channel is not the weight: multiply by "
                             "weight once, y = x̂ · weight + bias", fit))
        return hyps
    if rm is None:
        return []
    old = rm if key == "running_mean" else rv
    batch = mu if key == "running_mean" else var_u
    name = key
    if not training:
        hyps = [(f"{name} is updated in eval mode (training=False): eval mode only reads the running statistics, "
                 "update them when training", (1 - m) * old + m * batch),
                (f"{name} is replaced in eval mode (training=False): eval mode only reads the running statistics",
                 batch)]
        if type(actual) is torch.Tensor and actual.shape == old.shape:  # any other change: the same fact
            hyps.append((f"{name} changes in eval mode (training=False): eval mode only reads the running statistics "
                         "and leaves them as they are", actual.double()))
        return hyps
    hyps = [(f"{name} did not change: update the caller's tensor in place ({name}.mul_(1 - momentum).add_(...)); "
             f"`{name} = ...` only rebinds a local name", old)]
    values = [(batch, None)]
    if key == "running_var":
        values += [(var_b, f"running_var is updated with the biased variance (divided by n): the running update uses "
                           f"the UNBIASED one, biased · n / (n - 1), with n = B·H·W = {n} values per channel"),
                   (var_b * (n - 1) / n, "Bessel's correction is inverted: the unbiased variance is biased · n / (n - 1), "
                                         "not · (n - 1) / n"),
                   (var_u * n / (n - 1), "Bessel's correction is applied twice: the unbiased variance (n - 1) times "
                                         "n / (n - 1) again"),
                   (var_u.sqrt(), "running_var is updated with the standard deviation, not the variance"),
                   (var_b.sqrt(), "running_var is updated with the (biased) standard deviation, not the unbiased "
                                  "variance")]
        if B > 1 and B != n:
            values.append((var_b * B / (B - 1), f"Bessel's correction uses n = B = {B}, the batch size: n is the number "
                                                f"of values per channel, B·H·W = {n} here (x.numel() // C)"))
    else:
        values.append((x.mean(), "running_mean is updated with the mean over every axis, C too: one mean per channel"))
    blends = [("new", None),
              ("old", f"{name} keeps `momentum` of the old value: momentum is the weight of the NEW batch, "
                      "running = (1 - momentum)·running + momentum·batch"),
              ("replace", f"{name} is replaced by the batch value: blend it, (1 - momentum)·running + momentum·batch"),
              ("no_factor", f"{name} gets the batch value without the factor momentum: (1 - momentum)·running + "
                            "momentum·batch"),
              ("no_decay", f"the old {name} is not multiplied by (1 - momentum): running = (1 - momentum)·running + "
                           "momentum·batch")]
    delta = batch - old  # a momentum other than the one passed: fitted from the student's own update
    if actual is not None and type(actual) is torch.Tensor and actual.shape == old.shape and delta.abs().max() > 1e-6:
        fitted = float(((actual.double() - old) * delta).sum() / (delta * delta).sum())
        if abs(fitted - m) > 1e-3 and abs(fitted - (1 - m)) > 1e-3 and 0 < fitted < 1:
            hyps.append((f"{name} is blended with momentum {fitted:.3g}, not the momentum passed ({m:g}): use the "
                         "argument, running = (1 - momentum)·running + momentum·batch", old + fitted * delta))
    for picks, wrong in analysers.variants({"value": values, "blend": blends}):
        v = picks["value"]
        blended = {"new": (1 - m) * old + m * v, "old": m * old + (1 - m) * v, "replace": v * torch.ones_like(old),
                   "no_factor": (1 - m) * old + v, "no_decay": old + m * v}[picks["blend"]]
        hyps.append(("; ".join(wrong), blended))
    return hyps


def _bn_fitted_xhat(x, actual, mean, var, eps, dims, shape, mode, right_source) -> list:
    """The student's x̂ read as (x - μ'_c) / d'_c per channel (a least-squares fit): which of the two pieces is
    wrong when one is right, and what the wrong denominator is when it is a known function of the variance."""
    if type(actual) is not torch.Tensor or actual.shape != x.shape or mean is None:
        return []
    C = x.shape[1]
    xs = x.transpose(0, 1).reshape(C, -1)
    ys = actual.double().transpose(0, 1).reshape(C, -1)
    xc, yc = xs - xs.mean(1, keepdim=True), ys - ys.mean(1, keepdim=True)
    slope = (xc * yc).sum(1) / (xc * xc).sum(1)  # 1 / d'
    if not torch.isfinite(slope).all() or (slope.abs() < 1e-12).any():
        return []
    mu_fit = xs.mean(1) - ys.mean(1) / slope
    fit = (x - mu_fit.view(shape)) * slope.view(shape)
    d_fit = 1 / slope
    mean_ok = bool(torch.allclose(mu_fit, mean, 1e-4, 1e-5))
    denominators = {"sqrt(var + eps)": (var + eps).sqrt(), "var + eps": var + eps, "(var + eps)²": (var + eps) ** 2,
                    "sqrt(var) + eps": var.sqrt() + eps, "1": torch.ones_like(var),
                    "sqrt(var + eps) twice": var + eps}
    named = next((k for k, v in denominators.items() if torch.allclose(d_fit, v, 1e-4, 1e-6)), None)
    if mean_ok and named != "sqrt(var + eps)":
        how = f"by {named}" if named else "by something else per channel"
        return [(f"the mean subtracted is right, but x - mean is divided {how}: divide by sqrt(var + eps), with "
                 f"{right_source}", fit)]
    if not mean_ok and named == "sqrt(var + eps)":
        return [(f"the denominator is right, but {mode} subtracts another mean than {right_source}", fit)]
    return []


def _analyse_batch_norm(c: dict, expected: dict, result: dict) -> list:
    from coursecore.parts import analysers

    if not result.get("ok"):
        return [_error_hint("cnn.batch_norm", result.get("error", ""))]
    a = result["outputs"]
    steps = [analysers.Step("the normalised tensor x̂ = (x - mean) / sqrt(var + eps) (batch_norm called without "
                            "weight and bias)", expected.get("probe:xhat"), a.get("probe:xhat"),
                            lambda: _bn_hypotheses(c, "xhat", a.get("probe:xhat"))),
             analysers.Step("the output (x̂ · weight + bias)", expected.get("out"), a.get("out"),
                            lambda: _bn_hypotheses(c, "out", a.get("out")), name_unexplained=False)]
    if "running_mean" in expected:
        steps += [analysers.Step("running_mean after the call", expected["running_mean"], a.get("running_mean"),
                                 lambda: _bn_hypotheses(c, "running_mean", a.get("running_mean"))),
                  analysers.Step("running_var after the call", expected["running_var"], a.get("running_var"),
                                 lambda: _bn_hypotheses(c, "running_var", a.get("running_var")))]
    found = analysers.decompose(steps)
    return [found.message] if found else []


def _fold_scales(c: dict):
    """(s, description) of the scale per output channel: the right one first, then generated wrong ones."""
    from coursecore.parts import analysers

    t, p = c["tensors"], c["params"]
    var, eps = t["w.bn.running_var"].double(), p["eps"]
    gamma = t["w.bn.weight"].double() if "w.bn.weight" in t else None
    numer = [(gamma if gamma is not None else 1.0, None)]
    if gamma is not None:
        numer.append((1.0, "bn.weight (γ) is missing from the scale s = bn.weight / sqrt(running_var + eps)"))
    denom = [((var + eps).sqrt(), None), (var.sqrt(), "bn.eps is ignored: s = bn.weight / sqrt(running_var + bn.eps)"),
             (var.sqrt() + eps, "eps is added outside the square root: s = bn.weight / sqrt(running_var + eps)"),
             (var + eps, "the scale divides by the variance, not by its square root: sqrt(running_var + eps)"),
             (1.0 / (var + eps).sqrt(), "the scale multiplies by sqrt(running_var + eps) instead of dividing by it"),
             (1.0, "the scale does not divide by sqrt(running_var + eps)")]
    yield (numer[0][0] / denom[0][0]) * torch.ones_like(var), None
    for picks, wrong in analysers.variants({"numer": numer, "denom": denom, "power": [
            (1, None), (2, "the scale is applied twice (s²): multiply by s = bn.weight / sqrt(running_var + eps) once")]}):
        yield ((picks["numer"] / picks["denom"]) ** picks["power"]) * torch.ones_like(var), "; ".join(wrong)


def _fold_hypotheses(c: dict, key: str, student_weight=None):
    t = c["tensors"]
    w = t["w.conv.weight"].double()
    mean = t["w.bn.running_mean"].double()
    beta = t["w.bn.bias"].double() if "w.bn.bias" in t else torch.zeros_like(mean)
    cb = t["w.conv.bias"].double() if "w.conv.bias" in t else torch.zeros_like(mean)
    out = []
    if key == "weight":
        out.append(("the kernel is not scaled: multiply each output channel of conv.weight by s = bn.weight / "
                    "sqrt(running_var + eps)", w))
        for s, words in _fold_scales(c):
            if words:
                out.append((words, w * s.view(-1, 1, 1, 1)))
            out.append(("the kernel is divided by the scale s: multiply each output channel by s = bn.weight / "
                        "sqrt(running_var + eps)" + (f"; {words}" if words else ""), w / s.view(-1, 1, 1, 1)))
            if w.shape[1] == s.shape[0]:
                out.append(("the kernel is scaled along its input-channel axis: batch norm scales OUTPUT channels, "
                            "the kernel is (C_out, C_in / groups, k, k), so use s.view(-1, 1, 1, 1)"
                            + (f"; {words}" if words else ""), w * s.view(1, -1, 1, 1)))
        return out
    scales = list(_fold_scales(c))
    kernel_wrong = type(student_weight) is torch.Tensor and student_weight.shape == w.shape \
        and not agrees_kernel(student_weight, w * scales[0][0].view(-1, 1, 1, 1))
    if kernel_wrong:  # the bias most likely uses the scale the student's kernel used
        for s, words in scales[1:]:
            if agrees_kernel(student_weight, w * s.view(-1, 1, 1, 1)):
                scales = [(s, words)] + scales[:1]
                break
    from coursecore.parts import analysers

    components = {
        "cb": [("s·cb", None), ("cb", "conv.bias is not scaled by s"),
               ("0", "the convolution's own bias is left out: it counts as 0 only when conv.bias is None")],
        "mean": [("-s·mean", None), ("-mean", "running_mean is not scaled by s: batch norm multiplies "
                                              "(conv output - running_mean) by s"),
                 ("0", "running_mean is not subtracted"),
                 ("-s·var", "running_var is subtracted where the bias needs running_mean"),
                 ("+s·mean", "running_mean is added: the bias subtracts it, s·(conv.bias - running_mean)")],
        "beta": [("beta", None), ("0", "bn.bias (β) is not added"), ("-beta", "bn.bias (β) is subtracted"),
                 ("s·beta", "bn.bias (β) is scaled by s: batch norm adds it after the scaling")],
    }
    for s, s_words in scales:
        terms = {"s·cb": s * cb, "cb": cb, "0": torch.zeros_like(mean), "-s·mean": -s * mean, "-mean": -mean,
                 "beta": beta, "-beta": -beta, "-s·var": -s * t["w.bn.running_var"].double(), "s·beta": s * beta, "+s·mean": s * mean}
        prefix = f"{s_words}; " if s_words else ""
        out.append((prefix + "the bias's sign is flipped: s·(conv.bias - running_mean) + bn.bias, not "
                    "s·(running_mean - conv.bias)", s * (mean - cb) + beta))
        for picks, wrong in analysers.variants(components):
            out.append((prefix + "; ".join(wrong), terms[picks["cb"]] + terms[picks["mean"]] + terms[picks["beta"]]))
        if s_words:
            out.append((s_words + " (in the bias too)", s * (cb - mean) + beta))
    return out


def agrees_kernel(a, b) -> bool:
    from coursecore.parts import analysers

    return analysers.agrees(a, b, a.dtype)


def _analyse_fold(c: dict, expected: dict, result: dict) -> list:
    from coursecore.parts import analysers

    if not result.get("ok"):
        return [_error_hint("cnn.fold_conv_bn", result.get("error", ""))]
    a = result["outputs"]
    if not _fold_inputs(c, a)["inputs_unchanged"].item():
        return ["fold_conv_bn changed the conv or the batch norm it was given (e.g. conv.weight scaled in place): "
                "compute the folded kernel and bias as new tensors and write them into fused only"]
    steps = [analysers.Step("the folded kernel (fused.weight = conv.weight · s per output channel)",
                            expected.get("weight"), a.get("weight"), lambda: _fold_hypotheses(c, "weight")),
             analysers.Step("the folded bias (fused.bias = s·(conv.bias - running_mean) + bn.bias)", expected.get("bias"),
                            a.get("bias"), lambda: _fold_hypotheses(c, "bias", a.get("weight")))]
    found = analysers.decompose(steps)
    return [found.message] if found else []


def _mish_hypotheses(c: dict):
    from coursecore.parts import analysers

    x = c["tensors"]["x"].double()
    sp = F.softplus(x)
    grid = []  # outer · g(inner): every way of getting one or two of mish's three pieces wrong
    for picks, wrong in analysers.variants({
            "outer": [("x", None), ("softplus", "the factor in front is softplus(x), not x"),
                      ("sigmoid", "the factor in front is sigmoid(x), not x"),
                      ("one", "the result is not multiplied by x")],
            "g": [("tanh", None), ("sigmoid", "sigmoid is used where mish has tanh"),
                  ("id", "the tanh is missing")],
            "inner": [("softplus", None), ("x", "tanh's argument is x, not softplus(x)"),
                      ("sigmoid", "tanh's argument is sigmoid(x), not softplus(x) = log(1 + eˣ)"),
                      ("relu", "ReLU is used where mish has softplus(x) = log(1 + eˣ)"),
                      ("exp", "exp(x) is used where mish has softplus(x) = log(1 + eˣ)")]}):
        outer = {"x": x, "softplus": sp, "one": torch.ones_like(x), "sigmoid": torch.sigmoid(x)}[picks["outer"]]
        inner = {"softplus": sp, "x": x, "sigmoid": torch.sigmoid(x), "relu": torch.relu(x),
                 "exp": torch.exp(x.clamp(max=80))}[picks["inner"]]
        g = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "id": lambda v: v}[picks["g"]]
        grid.append(("; ".join(wrong) + ": mish is x · tanh(softplus(x))", outer * g(inner)))
    return [("this is Swish (SiLU), x · sigmoid(x): mish is x · tanh(softplus(x))", x * torch.sigmoid(x)),
            ("sigmoid is used where mish has tanh: x · tanh(softplus(x))", x * torch.sigmoid(sp)),
            ("the result is not multiplied by x: mish is x · tanh(softplus(x))", torch.tanh(sp)),
            ("the tanh is missing: mish is x · tanh(softplus(x))", x * sp),
            ("softplus is missing: x · tanh(x) instead of x · tanh(softplus(x))", x * torch.tanh(x)),
            ("ReLU is used where mish has softplus: softplus(x) = log(1 + eˣ)", x * torch.tanh(torch.relu(x))),
            ("exp(x) is used where mish has softplus(x) = log(1 + eˣ)", x * torch.tanh(torch.exp(x))),
            ("this is GELU: mish is x · tanh(softplus(x))", F.gelu(x)),
            ("this is ReLU: mish is x · tanh(softplus(x))", torch.relu(x)),
            ("this is softplus alone: mish is x · tanh(softplus(x))", sp)] + grid


def _analyse_mish(c: dict, expected: dict, result: dict) -> list:
    from coursecore.parts import analysers

    if not result.get("ok"):
        return [_error_hint("cnn.mish", result.get("error", ""))]
    found = analysers.decompose([analysers.Step("mish(x)", expected.get("out"), result["outputs"].get("out"),
                                                lambda: _mish_hypotheses(c), name_unexplained=False)])
    if found:
        return [found.message]
    points = result["outputs"].get("probe:points")
    if type(points) is not torch.Tensor or points.shape != MISH_POINTS.shape:
        return []
    zero, left, right = points.double().tolist()
    x, out, want = c["tensors"]["x"], result["outputs"].get("out"), expected.get("out")
    if type(out) is torch.Tensor and out.shape == want.shape:  # the sign of x where it is wrong
        bad = ~torch.isclose(out.double(), want.double(), 1e-4, 1e-5)
        if bad.any() and not bad.all():
            for side, where in (("negative", x < 0), ("positive", x > 0)):
                if bool((bad <= where).all()):
                    other = "positive" if side == "negative" else "negative"
                    return [f"mish(x) is right for {other} x and wrong for {side} x: check what the formula gives "
                            f"there (x · tanh(softplus(x)) is {'small and negative' if side == 'negative' else '≈ x'})"]
    facts = []  # what mish must give at three points, said without guessing the cause
    if abs(zero) > 1e-6:
        facts.append(f"mish(0) is {zero:.4g}, but x · tanh(softplus(x)) is 0 at x = 0")
    if abs(right - 30) > 1e-3:
        facts.append(f"mish(30) is {right:.4g}, but mish(x) ≈ x for large x (tanh(softplus(x)) → 1)")
    if abs(left) > 1e-3:
        facts.append(f"mish(-30) is {left:.4g}, but mish(x) → 0 for very negative x (softplus(x) → 0)")
    return ["; ".join(facts) + "."] if facts else []


def _block_hypotheses(c: dict):
    p, t = c["params"], c["tensors"]
    x = t["x"].double()
    z = F.conv2d(x, t["w.conv.weight"].double(), t["w.conv.bias"].double() if "w.conv.bias" in t else None, padding=1)

    def bn(v, training=None):
        if not p["batch_norm"]:
            return v
        return F.batch_norm(v, t["w.bn.running_mean"].double().clone(), t["w.bn.running_var"].double().clone(),
                            t["w.bn.weight"].double(), t["w.bn.bias"].double(),
                            p["training"] if training is None else training, 0.1, 1e-5)

    act = F.mish if p["act"] == "mish" else torch.relu
    other, other_name = (torch.relu, "ReLU") if p["act"] == "mish" else (F.mish, "Mish")
    hyps = [("the batch norm is skipped: conv -> bn -> act (self.bn is nn.Identity() when the config has none)",
             act(z)),
            ("the activation is missing: conv -> bn -> act", bn(z)),
            ("the activation runs before the batch norm: the order is conv -> bn -> act", bn(act(z))),
            ("the activation runs twice, before and after the batch norm: conv -> bn -> act, once", act(bn(act(z)))),
            ("a max-pool is added: ConvBlock is conv -> bn -> act, the stage's 2×2 pool comes after the blocks "
             "(ConvNet adds it)", F.max_pool2d(act(bn(z)), 2)),
            (f"the activation is {other_name}, not self.act (the config chooses it): conv -> bn -> self.act",
             other(bn(z))),
            ("only the convolution runs: conv -> bn -> act", z),
            ("the batch norm runs twice: conv -> bn -> act, each once", act(bn(bn(z))))]
    if p["batch_norm"]:
        mode = "eval" if not p["training"] else "train"
        flipped = not p["training"]
        hyps.append((f"the batch norm runs in the other mode than the block ({mode}): call self.bn, which follows "
                     "the module's train() / eval()", act(bn(z, training=flipped))))
    return hyps


def _analyse_block(c: dict, expected: dict, result: dict) -> list:
    from coursecore.parts import analysers

    if not result.get("ok"):
        return [_error_hint("cnn.ConvBlock.forward", result.get("error", ""), c)]
    out = result["outputs"].get("out")
    found = analysers.decompose([analysers.Step("the block's output", expected.get("out"), out,
                                                lambda: _block_hypotheses(c), name_unexplained=False)])
    if found:
        return [found.message]
    calls = _calls_finding(expected.get("probe:calls"), result["outputs"].get("probe:calls"), BLOCK_CALLS,
                           "ConvBlock.forward is self.act(self.bn(self.conv(x))), each layer once")
    return [calls] if calls else []


def _net_hypotheses(c: dict, expected: dict):
    t = c["tensors"]
    W, b = t["w.head.weight"].double(), t["w.head.bias"].double()
    # What the reference's head read: the pooled features, after dropout in a train-mode case.
    feats = expected.get("probe:head.in", expected.get("probe:features"))
    stages = expected.get("probe:stages") if not c["params"].get("training") else None  # dropout lies between
    if feats is None:
        return []
    f = feats.double()
    logits = f @ W.T + b
    hyps = [("softmax is applied to the logits: return the raw logits (B, K); the loss applies log-softmax itself",
             logits.softmax(-1)),
            ("log-softmax is applied to the logits: return the raw logits (B, K); the loss applies it itself",
             logits.log_softmax(-1)),
            ("ReLU is applied to the logits: the head's output is returned as it is (logits may be negative)",
             torch.relu(logits)),
            ("sigmoid is applied to the logits: return the raw logits (B, K)", torch.sigmoid(logits)),
            ("the argmax of the logits is returned, class indices of shape (B,): return the logits (B, K) "
             "themselves; the loss and the accuracy take them", logits.argmax(-1).double()),
            ("the head is missing: the logits are self.head(...) of the pooled features", f)]
    if stages is not None:
        s = stages.double()
        hyps += [("the feature map is max-pooled: forward_features pools with the global AVERAGE "
                  "(self.forward_features(x))", s.amax((2, 3)) @ W.T + b),
                 ("the feature map is summed over H and W: forward_features AVERAGES it (self.forward_features(x))",
                  s.sum((2, 3)) @ W.T + b)]
    return hyps


def _dropped(clean, got) -> bool:
    """`got` is `clean` with some entries zeroed and the rest scaled by one factor above 1 (1 / (1 - p), whatever
    p the code used): the signature of dropout, whichever mask it drew."""
    if type(got) is not torch.Tensor or type(clean) is not torch.Tensor or got.shape != clean.shape:
        return False
    g, f = got.double(), clean.double()
    zero = g.abs() <= 1e-6
    live = ~zero & (f.abs() > 1e-6)
    if not live.any() or not zero.any():
        return False
    factor = float((g[live] / f[live]).median())
    scaled = (g - f * factor).abs() <= 1e-4 * (1 + f.abs())
    return factor > 1 + 1e-3 and bool((zero | scaled).all()) and not torch.allclose(g, f)  # 1: a ReLU, not dropout


def _dropout_misplaced(c: dict, expected: dict, actual: dict) -> Optional[str]:
    """Dropout that ran where it does not belong, read from its signature: on the pooled features in eval mode,
    or on the logits (after the head) in either mode."""
    got_in = actual.get("probe:head.in")
    if not c["params"].get("training") and _dropped(expected.get("probe:features"), got_in):
        return ("dropout is active in eval mode: some pooled features are zeroed and the rest scaled by "
                "1 / (1 - drop_rate). Use self.head_drop (an nn.Dropout follows model.eval()), or F.dropout(..., "
                "training=self.training)")
    if type(got_in) is torch.Tensor and got_in.dim() == 2 and got_in.shape[1] == c["tensors"]["w.head.weight"].shape[1]:
        t = c["tensors"]
        logits = got_in.double() @ t["w.head.weight"].double().T + t["w.head.bias"].double()  # from the student's input
        if _dropped(logits, actual.get("out")):
            return ("dropout is applied to the logits, after self.head: it belongs before the head, on the pooled "
                    "features: self.head(self.head_drop(self.forward_features(x)))")
    return None


def _dropout_hypotheses(c: dict, expected: dict):
    """Ways of getting the head's input wrong around dropout: left out in training, the original paper's
    (1 - p) scaling instead of a mask, a mask without the 1 / (1 - p) rescaling of the kept features."""
    feats, dropped = expected.get("probe:features"), expected.get("probe:head.in")
    if type(feats) is not torch.Tensor or type(dropped) is not torch.Tensor:
        return []
    f, rate = feats.double(), float(c["params"]["config"]["drop_rate"])
    hyps = [("the pooled features are multiplied by (1 - drop_rate): nn.Dropout (self.head_drop) rescales the kept "
             "features by 1 / (1 - drop_rate) in training instead, so in eval mode dropout passes them unchanged",
             f * (1 - rate))]
    if c["params"].get("training"):
        keep = (dropped.double() != 0).double()  # the reference's mask (one draw after torch.manual_seed(0))
        hyps = [("dropout is not applied in train mode: self.head_drop zeroes a random drop_rate share of the "
                 "pooled features and scales the rest by 1 / (1 - drop_rate)", f)] + hyps + \
               [("the dropout mask is applied but the kept features are not scaled by 1 / (1 - drop_rate), which "
                 "keeps their expected value: use self.head_drop (nn.Dropout does both)", f * keep)]
    return hyps


def _analyse_net(c: dict, expected: dict, result: dict) -> list:
    from coursecore.parts import analysers

    if not result.get("ok"):
        return [_error_hint("cnn.ConvNet.forward", result.get("error", ""))]
    a = result["outputs"]
    dropped = _dropout_misplaced(c, expected, a)
    if dropped:
        return [dropped]
    found = analysers.decompose([analysers.Step("the output (the logits)", expected.get("out"), a.get("out"),
                                                lambda: _net_hypotheses(c, expected), name_unexplained=False)])
    if found:
        return [found.message]
    mode = "train mode, one mask drawn after torch.manual_seed(0)" if c["params"].get("training") else \
        "which is off in eval mode"
    head_in = analysers.decompose([analysers.Step(f"the head's input (the pooled features after dropout, {mode})",
                                                  expected.get("probe:head.in"), a.get("probe:head.in"),
                                                  lambda: _dropout_hypotheses(c, expected), name_unexplained=False)])
    if head_in:
        return [head_in.message]
    calls = _calls_finding(expected.get("probe:calls"), a.get("probe:calls"), NET_CALLS,
                           "ConvNet.forward is self.head(self.head_drop(self.forward_features(x))), and "
                           "forward_features runs self.stages, then self.global_pool")
    if calls:
        return [calls]
    monotone = _elementwise_of(expected.get("out"), a.get("out"))
    return [monotone] if monotone else []


def _elementwise_of(expected, actual) -> Optional[str]:
    """The logits passed through some increasing elementwise function (their order kept, values changed)."""
    if type(expected) is not torch.Tensor or type(actual) is not torch.Tensor or actual.shape != expected.shape:
        return None
    offset = actual.double() - expected.double()  # (B, K): one constant per class is a term added to the logits
    if analysers_agree(offset, offset[:1].expand_as(offset)) and offset.abs().max() > 1e-4:
        return ("the logits are off by one constant per class: a term is added to self.head's output (its bias "
                "twice?); return self.head(...) as it is")
    e, a = expected.double().flatten(), actual.double().flatten()
    order = e.argsort()
    steps = a[order].diff()
    if (steps >= -1e-9).all() and not analysers_agree(a, e):
        return ("the output is an increasing function of the correct logits, applied elementwise: return the head's "
                "output as it is (raw logits, no activation or normalisation after self.head)")
    return None


def analysers_agree(a, e) -> bool:
    from coursecore.parts import analysers

    return analysers.agrees(a, e)


def _calls_finding(expected, actual, names, recipe: str) -> Optional[str]:
    """What the student's forward called, against the recipe: a layer never called, called twice, or out of order."""
    if type(expected) is not torch.Tensor or type(actual) is not torch.Tensor or torch.equal(expected, actual):
        return None
    got = [names[int(c) - 1] for c in actual.tolist()]
    counts = {n: got.count(n) for n in names}
    role = lambda n: f"self.{n} ({CALL_ROLES[n]})" if n in CALL_ROLES else f"self.{n}"  # noqa: E731
    never = [role(n) for n in names if counts[n] == 0 and n in [names[int(c) - 1] for c in expected.tolist()]]
    twice = [role(n) for n in names if counts[n] > 1]
    if never:
        return f"{', '.join(never)} {'is' if len(never) == 1 else 'are'} never called: {recipe}"
    if twice:
        return f"{', '.join(twice)} {'is' if len(twice) == 1 else 'are'} called more than once: {recipe}"
    return f"the layers are called in the order {', '.join('self.' + n for n in got)}: {recipe}"


ANALYSERS = {"cnn.batch_norm": _analyse_batch_norm, "cnn.fold_conv_bn": _analyse_fold, "cnn.mish": _analyse_mish,
             "cnn.ConvBlock.forward": _analyse_block, "cnn.ConvNet.forward": _analyse_net}


FOLD_HOOKS = dict(describe=_describe_fold, checks=FOLD_CHECKS, prepare=_fold_inputs)
for _part, _cases in (("cnn.batch_norm", lambda ref: _batch_norm_cases()),
                      ("cnn.fold_conv_bn", lambda ref: _fold_cases()),
                      ("cnn.mish", lambda ref: _mish_cases()),
                      ("cnn.ConvBlock.forward", _conv_block_cases),
                      ("cnn.ConvNet.forward", _convnet_cases)):
    grader(_part, cases=_cases, run=_run, bugs=[b for b in BUGS if b.part == _part], analyse=ANALYSERS[_part],
           **(FOLD_HOOKS if _part == "cnn.fold_conv_bn" else {}))
### END GRADER
