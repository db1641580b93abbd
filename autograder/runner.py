"""Run grading cases on one implementation; the only autograder code that executes next to student code.

Shape legend (the same in every file of the course):
    B batch, C channels, H/W image height/width, P patch size, N tokens,
    D embedding (embed_dim), h heads (num_heads), d head dim (D / h), K classes.

This file is used twice, with the same code path on both sides:

* in the grader's process, `run_case(reference, case)` computes the expected outputs with the reference;
* in the sandbox, `python -I -S runner.py JOBDIR` imports the student's modules the parts need (`transformer.py`
  and `ViT.py`, or `finetune.py`, or `cnn.py`),
  runs the cases the grader wrote to `JOBDIR/cases.pt`, and writes the outputs (plain tensors only) to
  `JOBDIR/out/<part>.pt`. Progress goes to `JOBDIR/out/status.jsonl`, one JSON object per line, so that
  the grader knows which part was running when the process died or hung.

It imports nothing but the standard library and torch (it is copied alone into the sandbox) and it never
sees the expected outputs: the grader compares. The oracle layers below are written with torch
built-ins so that a part can be graded in isolation (Block.forward with correct sub-layers, ViT parts when
the student's transformer.py does not import).
"""
from __future__ import annotations

import errno
import json
import os
import sys
import types
from typing import Optional

# The student modules, in import order, come in job.json from coursecore/registry.py (this file is copied
# alone into the sandbox, so it does not import the registry).
# What a Python error message relayed to the grader may keep (first line, this many characters).
MESSAGE_CHARS = 400


class StudentError(Exception):
    """The student's code did something the template does not allow (wrong return type, renamed class)."""


# --------------------------------------------------------------------------------------------- oracles
def _torch():
    import torch  # noqa: PLC0415 - imported late: the sandbox sets sys.path first
    return torch


def _oracle_activations():
    from torch import nn
    return {"gelu": nn.GELU, "gelu_tanh": lambda: nn.GELU(approximate="tanh"), "relu": nn.ReLU,
            "tanh": nn.Tanh, "silu": nn.SiLU}


_ORACLES = []


def oracle_classes():
    """Oracle layers with the template's parameter names, built from torch built-ins only (built once)."""
    if not _ORACLES:
        _ORACLES.append(_build_oracles())
    return _ORACLES[0]


def _build_oracles():
    torch = _torch()
    from torch import nn
    import torch.nn.functional as F

    class OracleAttention(nn.Module):
        def __init__(self, dim, num_heads, qkv_bias=True):
            super().__init__()
            self.num_heads = num_heads
            self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
            self.proj = nn.Linear(dim, dim)

        def forward(self, x, mask=None):
            B, N, D = x.shape
            qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, D // self.num_heads)  # (B, N, 3, h, d)
            q, k, v = qkv.permute(2, 0, 3, 1, 4)  # 3 × (B, h, N, d)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, h, N, d)
            return self.proj(out.transpose(1, 2).reshape(B, N, D))  # (B, N, D)

    class OracleMlp(nn.Module):
        def __init__(self, dim, hidden_dim, act="gelu"):
            super().__init__()
            self.fc1 = nn.Linear(dim, hidden_dim)
            self.act = _oracle_activations()[act]()
            self.fc2 = nn.Linear(hidden_dim, dim)

        def forward(self, x):
            return self.fc2(self.act(self.fc1(x)))

    class OracleBlock(nn.Module):
        def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=True, drop=0.0, attn_drop=0.0,
                     drop_path=0.0, act="gelu", norm_eps=1e-6, fused_attn=True):
            super().__init__()
            self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
            self.attn = OracleAttention(dim, num_heads, qkv_bias)
            self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
            self.mlp = OracleMlp(dim, int(dim * mlp_ratio), act)

        def forward(self, x, mask=None):
            x = x + self.attn(self.norm1(x), mask)
            return x + self.mlp(self.norm2(x))

    class OraclePatchEmbed(nn.Module):
        def __init__(self, in_chans, embed_dim, patch_size):
            super().__init__()
            self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

        def forward(self, x):
            return self.proj(x).flatten(2).transpose(1, 2)  # (B, N, D)

    def oracle_sincos_1d(num_positions, dim):
        pos = torch.arange(num_positions, dtype=torch.float32)
        omega = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float32) / dim)
        angles = torch.outer(pos, omega)  # (num_positions, D/2)
        return torch.stack([angles.sin(), angles.cos()], dim=-1).reshape(num_positions, dim)

    def oracle_sincos_2d(grid_h, grid_w, dim):
        rows = oracle_sincos_1d(grid_h, dim // 2)[:, None, :].expand(grid_h, grid_w, dim // 2)
        cols = oracle_sincos_1d(grid_w, dim // 2)[None, :, :].expand(grid_h, grid_w, dim // 2)
        return torch.cat([rows, cols], dim=-1).reshape(grid_h * grid_w, dim)

    def oracle_attention(q, k, v, mask=None, dropout=None):
        # The weights come out of the built-in too: attending to the identity matrix returns them.
        eye = torch.eye(q.shape[-2], dtype=q.dtype).expand(*q.shape[:-1], q.shape[-2])
        weights = F.scaled_dot_product_attention(q, k, eye, attn_mask=mask)  # (B, h, N, N)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask), weights

    def oracle_split_heads(attn, x):
        return x.unflatten(-1, (attn.num_heads, -1)).transpose(1, 2)  # (B, h, N, d)

    def oracle_merge_heads(attn, x):
        return x.transpose(1, 2).flatten(2)  # (B, N, D)

    def oracle_mlp_forward(mlp, x):
        return mlp.fc2(mlp.act(mlp.fc1(x)))

    def oracle_block_forward(block, x, mask=None):
        x = x + block.attn(block.norm1(x), mask)
        return x + block.mlp(block.norm2(x))

    def oracle_patch_embed_forward(embed, x):
        return embed.proj(x).flatten(2).transpose(1, 2)  # (B, N, D)

    def oracle_forward_features(model, x):
        x = model.patch_embed(x)
        if model.cls_token is not None:
            x = torch.cat([model.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        if model.pos_embed is not None:
            x = x + model.pos_embed
        for block in model.blocks:
            x = block(x)
        return model.norm(x)

    return types.SimpleNamespace(Attention=OracleAttention, Mlp=OracleMlp, Block=OracleBlock,
                                 PatchEmbed=OraclePatchEmbed, sincos_1d=oracle_sincos_1d, sincos_2d=oracle_sincos_2d,
                                 attention=oracle_attention, split_heads=oracle_split_heads,
                                 merge_heads=oracle_merge_heads, mlp_forward=oracle_mlp_forward,
                                 block_forward=oracle_block_forward, patch_embed_forward=oracle_patch_embed_forward,
                                 forward_features=oracle_forward_features)


def fallback_transformer(reason: str) -> types.ModuleType:
    """A stand-in `transformer` module so that ViT.py imports when the student's transformer.py does not."""
    module = types.ModuleType("transformer")
    module.ACTIVATIONS = _oracle_activations()
    module.Block = oracle_classes().Block
    module.AUTOGRADER_FALLBACK = reason
    return module


# --------------------------------------------------------------------------------------------- helpers
def _need(module, name: str, filename: str):
    """module.name, or a StudentError that says the template's name is missing."""
    reason = getattr(module, "AUTOGRADER_FALLBACK", None)
    if reason:
        raise StudentError(f"{filename} could not be imported, so this could not run ({reason})")
    obj = module
    for piece in name.split("."):
        try:
            obj = getattr(obj, piece)
        except AttributeError:
            raise StudentError(f"{filename} has no `{name}`: keep the names of the template "
                               f"(was it renamed or deleted?)") from None
    return obj


def _tensor(value, what: str):
    torch = _torch()
    if type(value) is not torch.Tensor:
        raise StudentError(f"{what} returned a {type(value).__name__}, not a torch.Tensor")
    return value


def _leaf(t):
    return t.detach().clone().requires_grad_(True)


def _load(module, state: dict, what: str) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()
        raise StudentError(f"the parameters of {what} do not match the template ({' '.join(first[1:3])[:300]}); "
                           "keep the layers that __init__ builds, with their names") from None


def _grads(total, named: dict) -> dict:
    """Gradients of the scalar `total` w.r.t. every tensor in `named`; a missing one is left out."""
    torch = _torch()
    names = list(named)
    grads = torch.autograd.grad(total, [named[n] for n in names], allow_unused=True)
    return {f"grad:{n}": g for n, g in zip(names, grads) if g is not None}


def _forward_backward(call, inputs: dict, params: dict, cotangent, what: str, repeat: bool = False,
                      permuted=None) -> dict:
    """Run `call()` (which uses the leaves in inputs/params), then backpropagate a fixed cotangent.

    `repeat` adds a second call ("out@2"; eval mode must be deterministic) and `permuted`, a call on the
    input with its tokens permuted ("out@perm"; for the permutation-equivariance property).
    """
    out = _tensor(call(), what)
    result = {"out": out}
    with _torch().no_grad():
        if repeat:
            result["out@2"] = _tensor(call(), what)
        if permuted is not None:
            result["out@perm"] = _tensor(permuted(), what)
    if out.shape != cotangent.shape:
        # The grader reports the shape (and reads the values, which may be right in the wrong layout).
        return result
    if out.requires_grad:
        result.update(_grads((out * cotangent.to(out.dtype)).sum(), {**inputs, **params}))
    return result


def _permuted(module, x, t: dict):
    """A call of `module` on x with its tokens permuted by t["perm"] (cases without a mask only)."""
    if "perm" not in t:
        return None
    return lambda: module(x.detach()[:, t["perm"]])


def _detach(value):
    torch = _torch()
    if isinstance(value, (tuple, list)):
        value = value[0] if value else None
    return value.detach().clone() if isinstance(value, torch.Tensor) else None  # a Parameter too


def _trace(module, names, store: dict) -> list:
    """Record the first input and output of each named submodule as `trace:<name>.in` / `.out`."""
    handles = []
    for name in names:
        try:
            sub = module.get_submodule(name)
        except AttributeError:
            continue

        def hook(mod, args, out, name=name):
            for key, value in ((f"trace:{name}.in", args), (f"trace:{name}.out", out)):
                if key not in store and _detach(value) is not None:
                    store[key] = _detach(value)
        handles.append(sub.register_forward_hook(hook))
    return handles


def _recording(fn, key: str, store: dict):
    """`fn` that also records its first output under `trace:<key>`, and its later ones as `<key>#i`."""
    def wrapped(*args, **kwargs):
        out = fn(*args, **kwargs)
        name, i = f"trace:{key}", 1
        while name in store:
            name, i = f"trace:{key}#{i}", i + 1
        if _detach(out) is not None:
            store[name] = _detach(out)
        return out
    return wrapped


class _Patch:
    """Set attributes for the duration of a case (substitutions, recording wrappers), then restore them."""

    def __init__(self):
        self.saved = []

    def set(self, obj, name, value):
        had = name in vars(obj) if hasattr(obj, "__dict__") else False
        self.saved.append((obj, name, had, vars(obj).get(name) if had else None))
        setattr(obj, name, value)

    def restore(self):
        for obj, name, had, value in reversed(self.saved):
            if had:
                setattr(obj, name, value)
            else:
                try:
                    delattr(obj, name)
                except AttributeError:
                    pass
        self.saved.clear()


def _substitute_attention(T, attns, oracle_parts, patch: _Patch, store: Optional[dict] = None) -> None:
    """Correct stand-ins for the student's attention / split / merge (parts that failed on their own)."""
    oracle = oracle_classes()
    if "transformer.attention" in oracle_parts:
        patch.set(T, "attention", oracle.attention)
    if store is not None:
        patch.set(T, "attention", _recording(T.attention, "attention", store))
    for attn in attns:
        for part, method in (("transformer.Attention.split_heads", "split_heads"),
                             ("transformer.Attention.merge_heads", "merge_heads")):
            fn = getattr(attn, method)
            if part in oracle_parts:
                fn = types.MethodType(getattr(oracle, method), attn)
            if store is not None:
                fn = _recording(fn, method, store)
            if part in oracle_parts or store is not None:
                patch.set(attn, method, fn)


def _module_leaves(module) -> dict:
    return {f"param:{n}": p for n, p in module.named_parameters()}


# --------------------------------------------------------------------------------------------- cases
def run_case(mods, case: dict) -> dict:
    """Run one case on an implementation (`mods.transformer`, `mods.ViT`); return named output tensors."""
    if "part" in case:  # a part declared whole in coursecore/parts/<module>.py (the job's lib/ in the sandbox)
        from coursecore.parts import GRADER

        return GRADER[case["part"]].run(mods, case, harness())
    torch = _torch()
    op, p, t = case["op"], case["params"], case["tensors"]
    T, V = getattr(mods, "transformer", None), getattr(mods, "ViT", None)
    tf, vf = "transformer.py", "ViT.py"
    oracle = oracle_classes()
    state = {k[2:]: v for k, v in t.items() if k.startswith("w.")}

    if op == "attention":
        q, k, v = _leaf(t["q"]), _leaf(t["k"]), _leaf(t["v"])
        res = _need(T, "attention", tf)(q, k, v, t.get("mask"))
        if not isinstance(res, (tuple, list)) or len(res) != 2:
            raise StudentError(f"attention returned a {type(res).__name__}; it must return the pair (out, weights)")
        out, weights = _tensor(res[0], "attention (out)"), _tensor(res[1], "attention (weights)")
        result = {"out": out, "weights": weights}
        if out.requires_grad and out.shape == t["g"].shape and weights.shape == t["gw"].shape:
            total = (out * t["g"]).sum() + (weights * t["gw"]).sum()
            result.update(_grads(total, {"q": q, "k": k, "v": v}))
        return result

    if op in ("split_heads", "merge_heads"):
        attn = _need(T, "Attention", tf)(p["dim"], p["heads"])
        x = _leaf(t["x"])
        return _forward_backward(lambda: getattr(attn, op)(x), {"x": x}, {}, t["g"], f"Attention.{op}")

    if op == "attention_forward":
        attn = _need(T, "Attention", tf)(p["dim"], p["heads"], p["qkv_bias"], fused_attn=False)
        _load(attn, state, "Attention")
        attn.eval()
        x = _leaf(t["x"])
        traces: dict = {}
        patch = _Patch()
        handles = _trace(attn, ["qkv", "proj"], traces)
        try:
            _substitute_attention(T, [attn], p.get("oracle", ()), patch, traces)
            result = _forward_backward(lambda: attn(x, t.get("mask")), {"x": x}, _module_leaves(attn), t["g"],
                                       "Attention.forward", permuted=_permuted(attn, x, t))
        finally:
            patch.restore()
            for handle in handles:
                handle.remove()
        return {**result, **traces}

    if op == "mlp":
        mlp = _need(T, "Mlp", tf)(p["dim"], p["hidden"], p["act"], p["drop"])
        _load(mlp, state, "Mlp")
        mlp.eval()
        x = _leaf(t["x"])
        return _forward_backward(lambda: mlp(x), {"x": x}, _module_leaves(mlp), t["g"], "Mlp.forward", repeat=True,
                                 permuted=_permuted(mlp, x, t))

    if op == "block":
        block = _need(T, "Block", tf)(p["dim"], p["heads"], p["mlp_ratio"], True, p["drop"], p["drop"],
                                      p["drop"], p["act"], p["norm_eps"])
        # Correct sub-layers: this part grades Block.forward alone, not Attention or Mlp.
        block.attn = oracle.Attention(p["dim"], p["heads"])
        block.mlp = oracle.Mlp(p["dim"], int(p["dim"] * p["mlp_ratio"]), p["act"])
        _load(block, state, "Block")
        block.eval()
        x = _leaf(t["x"])
        mask = t.get("mask")
        traces: dict = {}
        handles = _trace(block, ["norm1", "attn", "norm2", "mlp"], traces)
        call = (lambda: block(x, mask)) if mask is not None else (lambda: block(x))
        try:
            result = _forward_backward(call, {"x": x}, _module_leaves(block), t["g"], "Block.forward", repeat=True,
                                       permuted=_permuted(block, x, t))
        finally:
            for handle in handles:
                handle.remove()
        return {**result, **traces}

    if op == "patchify":
        x = _leaf(t["x"])
        fn = _need(V, "patchify", vf)
        return _forward_backward(lambda: fn(x, p["patch_size"]), {"x": x}, {}, t["g"], "patchify")

    if op == "unpatchify":
        x = _leaf(t["x"])
        fn = _need(V, "unpatchify", vf)
        size = tuple(p["image_size"])
        return _forward_backward(lambda: fn(x, p["patch_size"], size), {"x": x}, {}, t["g"], "unpatchify")

    if op == "sincos_1d":
        return {"out": _tensor(_need(V, "sincos_1d_embedding", vf)(p["n"], p["dim"]), "sincos_1d_embedding")}

    if op == "sincos_2d":
        fn = _need(V, "sincos_2d_embedding", vf)
        # A correct 1-D table underneath: this part grades the 2-D layout alone.
        saved = V.sincos_1d_embedding
        V.sincos_1d_embedding = oracle.sincos_1d
        try:
            return {"out": _tensor(fn(p["grid_h"], p["grid_w"], p["dim"]), "sincos_2d_embedding")}
        finally:
            V.sincos_1d_embedding = saved

    if op == "patch_embed":
        embed = _need(V, "PatchEmbed", vf)(tuple(p["image_size"]), p["patch_size"], p["in_chans"], p["dim"])
        _load(embed, state, "PatchEmbed")
        embed.eval()
        x = _leaf(t["x"])
        return _forward_backward(lambda: embed(x), {"x": x}, _module_leaves(embed), t["g"], "PatchEmbed.forward")

    if op in ("forward_features", "model"):
        cfg = dict(p["config"])
        cfg["image_size"] = tuple(cfg["image_size"])
        vit_class = _need(V, "ViT", vf)
        subs = set(p.get("oracle", ()))
        patch = _Patch()
        traces: dict = {}
        handles = []
        try:
            # Correct sin-cos tables where the student's failed on their own (they are built in __init__).
            if "ViT.sincos_1d_embedding" in subs and hasattr(V, "sincos_1d_embedding"):
                patch.set(V, "sincos_1d_embedding", oracle.sincos_1d)
            if "ViT.sincos_2d_embedding" in subs and hasattr(V, "sincos_2d_embedding"):
                patch.set(V, "sincos_2d_embedding", oracle.sincos_2d)
            if op == "forward_features" and hasattr(V, "Block"):
                # Build with correct blocks: a broken transformer.py must not cost forward_features' points.
                patch.set(V, "Block", oracle.Block)
            model = vit_class(**cfg)
            if op == "forward_features":
                patch.restore()
                # Correct patch embedding and blocks: this part grades forward_features' own steps.
                model.patch_embed = oracle.PatchEmbed(cfg["in_chans"], cfg["embed_dim"], cfg["patch_size"])
                model.blocks = torch.nn.ModuleList(
                    oracle.Block(cfg["embed_dim"], cfg["num_heads"], cfg["mlp_ratio"], act=cfg["act"],
                                 norm_eps=cfg["norm_eps"]) for _ in range(cfg["depth"]))
                call, what = (lambda: model.forward_features(x)), "ViT.forward_features"
            else:
                _need(T, "Block", tf)  # says so when transformer.py did not import
                _substitute_model(T, model, subs, patch)
                call, what = (lambda: model(x)), "ViT.forward"
            names = ["patch_embed", *(f"blocks.{i}" for i in range(cfg["depth"])), "norm", "head"]
            handles = _trace(model, names, traces)
            _load(model, state, "ViT")
            model.eval()
            x = _leaf(t["x"])
            result = _forward_backward(call, {"x": x}, _module_leaves(model), t["g"], what, repeat=True)
        finally:
            patch.restore()
            for handle in handles:
                handle.remove()
        return {**result, **traces}

    raise ValueError(f"unknown case op {op!r}")


def _substitute_model(T, model, subs: set, patch: _Patch) -> None:
    """Correct stand-ins inside a whole student ViT for the parts that already failed on their own."""
    oracle = oracle_classes()
    if "ViT.ViT.forward_features" in subs:
        patch.set(model, "forward_features", types.MethodType(oracle.forward_features, model))
    if "ViT.PatchEmbed.forward" in subs and hasattr(model, "patch_embed"):
        patch.set(model.patch_embed, "forward", types.MethodType(oracle.patch_embed_forward, model.patch_embed))
    for block in getattr(model, "blocks", ()):
        if "transformer.Block.forward" in subs:
            patch.set(block, "forward", types.MethodType(oracle.block_forward, block))
        if "transformer.Mlp.forward" in subs and hasattr(block, "mlp"):
            patch.set(block.mlp, "forward", types.MethodType(oracle.mlp_forward, block.mlp))
    attns = [b.attn for b in getattr(model, "blocks", ()) if hasattr(b, "attn")]
    if "transformer.Attention.forward" in subs:
        for attn in attns:
            patch.set(attn, "forward", types.MethodType(_oracle_attention_forward, attn))
    _substitute_attention(T, attns, subs, patch)


def _oracle_attention_forward(attn, x, mask=None):
    """Attention.forward from the module's own qkv / proj layers and torch's fused attention."""
    F = _torch().nn.functional
    B, N, D = x.shape
    q, k, v = attn.qkv(x).reshape(B, N, 3, attn.num_heads, D // attn.num_heads).permute(2, 0, 3, 1, 4)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, h, N, d)
    return attn.proj(out.transpose(1, 2).reshape(B, N, D))


def harness() -> types.SimpleNamespace:
    """What a declared part's run(mods, case, h) may use: the runner's own helpers and its trusted captures."""
    return types.SimpleNamespace(torch=_torch, need=_need, leaf=_leaf, load=_load, tensor=_tensor, grads=_grads,
                                 forward_backward=_forward_backward, module_leaves=_module_leaves, trusted=_trusted,
                                 StudentError=StudentError)


def describe_error(err: BaseException) -> str:
    """One line a student can act on: the exception type and the first line of its message."""
    text = str(err).strip().splitlines()
    first = text[0] if text else ""
    if isinstance(err, StudentError):
        return first[:MESSAGE_CHARS]
    return f"{type(err).__name__}: {first}"[:MESSAGE_CHARS]


# torch's functions the runner itself uses after the student's modules are imported, captured before: a student
# file may replace torch.save, Tensor.clone or Module.state_dict at import; the runner's results do not change.
TRUSTED: dict = {}


class Guard:
    """What a student file may patch at import or during a call — torch's functions, Tensor's and Module's
    methods, the builtins, this runner's own helpers — put back as they were before every case.

    So a file that replaces torch.equal, torch.allclose, Tensor.__eq__ or torch.testing.assert_close gets what its
    honest twin gets: its own code and the runner both run with the originals.
    """

    def __init__(self, objects):
        self.saved = [(obj, dict(vars(obj))) for obj in objects]
        self.trusted = dict(TRUSTED)

    def restore(self) -> None:
        for obj, saved in self.saved:
            current = vars(obj)
            is_class = isinstance(obj, type)
            if is_class:  # a method added to a class (Tensor.__eq__ over TensorBase's) is taken away again;
                for key in [k for k in current if k not in saved]:  # a module keeps what imports added to it
                    try:
                        delattr(obj, key)
                    except (AttributeError, TypeError):
                        pass
            for key, value in saved.items():
                if current.get(key, _MISSING) is not value:
                    try:
                        setattr(obj, key, value) if is_class else current.__setitem__(key, value)
                    except (AttributeError, TypeError):
                        pass
        TRUSTED.clear()
        TRUSTED.update(self.trusted)


_MISSING = object()


def guard(torch) -> Guard:
    import builtins

    import torch.nn.functional as F
    import torch.testing

    runner_globals = sys.modules[__name__] if __name__ in sys.modules else None
    objects = [torch, torch.Tensor, torch.nn.Module, torch.nn.Parameter, F, torch.testing, builtins]
    return Guard(objects + ([runner_globals] if runner_globals is not None else []))


def capture_trusted(torch) -> None:
    TRUSTED.update(save=torch.save, clone=torch.Tensor.clone, detach=torch.Tensor.detach,
                   contiguous=torch.Tensor.contiguous, cpu=torch.Tensor.cpu, state_dict=torch.nn.Module.state_dict)


def _trusted() -> dict:
    if not TRUSTED:  # the grader's own process (expected outputs): captured on first use, nothing to distrust
        capture_trusted(_torch())
    return TRUSTED


def clean_outputs(outputs: dict) -> dict:
    """Detached, contiguous, plain tensors: the only thing that leaves the sandbox."""
    torch = _torch()
    T = _trusted()
    clean = {}
    for name, value in outputs.items():
        if type(value) is torch.Tensor:
            clean[name] = T["clone"](T["contiguous"](T["cpu"](T["detach"](value)))) if value.device.type != "meta" else value
    return clean


# --------------------------------------------------------------------------------------------- sandbox
def _hide(paths) -> None:
    """Cover each path with an empty tmpfs (directory) or /dev/null (file) in this mount namespace."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    ms_bind, ms_rdonly = 4096, 1
    for path in paths:
        if os.path.isdir(path):
            rc = libc.mount(b"tmpfs", path.encode(), b"tmpfs", ms_rdonly, b"size=4k")
        else:
            rc = libc.mount(b"/dev/null", path.encode(), None, ms_bind, None)
        if rc != 0 and ctypes.get_errno() != errno.ENOENT:  # a path that vanished needs no hiding
            raise OSError(ctypes.get_errno(), f"cannot hide {path}")


def main(jobdir: str) -> int:
    with open(os.path.join(jobdir, "job.json")) as fh:
        job = json.load(fh)
    if job.get("hide"):
        _hide(job["hide"])
    sys.dont_write_bytecode = True
    sys.path[:] = [job["student_dir"], *job["sys_path"]]
    os.chdir(job["student_dir"])
    out_dir = os.path.join(jobdir, "out")
    status = open(os.path.join(out_dir, "status.jsonl"), "a", buffering=1)

    def say(**event):
        status.write(json.dumps(event) + "\n")
        status.flush()

    torch = _torch()
    torch.set_num_threads(1)
    capture_trusted(torch)
    cases = torch.load(os.path.join(jobdir, "cases.pt"), weights_only=True)
    originals = guard(torch)
    say(event="ready")

    loaded = {}
    for name in job["modules"]:
        if name in job["skip"]:
            reason = job["skip"][name]
        else:
            say(event="import", module=name)
            try:
                loaded[name] = __import__(name)
                originals.restore()  # whatever the import patched
                say(event="imported", module=name)
                continue
            except BaseException as err:  # noqa: BLE001 - SystemExit and KeyboardInterrupt included
                reason = describe_error(err)
                if isinstance(err, SyntaxError) and "codec can't decode" in str(err.msg):
                    reason = (f"{name}.py is not UTF-8 text ({err.msg.split(': ', 1)[-1][:120]}): save it as UTF-8 "
                              "(your editor's 'Save with encoding'), or retype the characters it cannot read")
                elif isinstance(err, SyntaxError):
                    reason = f"SyntaxError: {err.msg} ({name}.py, line {err.lineno})"
                say(event="import_failed", module=name, reason=reason)
                sys.modules.pop(name, None)
        if name == "transformer":
            loaded[name] = sys.modules["transformer"] = fallback_transformer(reason)
        else:
            loaded[name] = types.SimpleNamespace(AUTOGRADER_FALLBACK=reason)
    mods = types.SimpleNamespace(**loaded)

    for part in job["parts"]:
        say(event="start", part=part)
        results = []
        for case in cases[part]:
            # Global state a student file may have changed at import time: every case starts the same.
            originals.restore()
            torch.manual_seed(0)
            torch.set_default_dtype(torch.float32)
            torch.set_grad_enabled(True)
            try:
                results.append({"ok": True, "outputs": clean_outputs(run_case(mods, case))})
            except BaseException as err:  # noqa: BLE001 - the student's error is this case's result
                results.append({"ok": False, "error": describe_error(err)})
        originals.restore()
        TRUSTED["save"](results, os.path.join(out_dir, f"{part}.pt"))
        say(event="done", part=part)
    status.close()
    return 0


if __name__ == "__main__":
    os._exit(main(sys.argv[1]))
