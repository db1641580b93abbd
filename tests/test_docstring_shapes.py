"""Every shape promised in a docstring is the shape returned.

The promised shape is read from the docstring itself (the last "(...)" of its first line or of its
"Returns:" section) and evaluated with the repository's letter legend, so a docstring that drifts from
the code fails here.
"""
import inspect
import re

import pytest
import torch

B, C, H, W, P, D, h, K = 2, 3, 8, 12, 4, 12, 3, 7
LEGEND = dict(B=B, C=C, H=H, W=W, P=P, D=D, h=h, d=D // h, K=K)


def promised_shapes(fn):
    """Shapes named in the part of the docstring that describes the result."""
    doc = inspect.getdoc(fn)
    returns = doc.split("Returns:", 1)[1] if "Returns:" in doc else doc.splitlines()[0].split("->")[-1]
    groups = re.findall(r"\(([^()]*(?:, [^()]*)+)\)", returns)
    term = re.compile(r"^[A-Za-z_]\w*( ?· ?[A-Za-z_]\w*)*$")  # a legend letter, a name, or a product
    return [g for g in groups if all(term.match(t.strip()) for t in g.split(","))]


def evaluate(shape_text, env):
    dims = []
    for term in shape_text.split(","):
        expr = term.strip().replace("·", "*")
        dims.append(int(eval(expr, {}, env)))  # only legend letters and names from env
    return tuple(dims)


def cases(ref):
    t, v = ref.transformer, ref.ViT
    N = (H // P) * (W // P)
    attn = t.Attention(D, h)
    model = v.ViT(image_size=(H, W), patch_size=P, in_chans=C, num_classes=K, embed_dim=D, depth=2, num_heads=h)
    x = torch.randn(B, N, D)
    images = torch.randn(B, C, H, W)
    q = torch.randn(B, h, N, D // h)
    return [
        (t.attention, lambda: t.attention(q, q, q), {}),
        (t.Attention.split_heads, lambda: attn.split_heads(x), {}),
        (t.Attention.merge_heads, lambda: attn.merge_heads(attn.split_heads(x)), {}),
        (t.Attention.forward, lambda: attn(x), {}),
        (t.Mlp.forward, lambda: t.Mlp(D, 20)(x), {}),
        (t.Block.forward, lambda: t.Block(D, h)(x), {}),
        (v.patchify, lambda: v.patchify(images, P), {}),
        (v.unpatchify, lambda: v.unpatchify(v.patchify(images, P), P, (H, W)), {}),
        (v.sincos_1d_embedding, lambda: v.sincos_1d_embedding(5, D), dict(num_positions=5)),
        (v.sincos_2d_embedding, lambda: v.sincos_2d_embedding(2, 3, D), dict(grid_h=2, grid_w=3)),
        (v.PatchEmbed.forward, lambda: model.patch_embed(images), {}),
        (v.ViT.forward_features, lambda: model.forward_features(images), dict(N=N + 1)),
        (v.ViT.forward, lambda: model(images), {}),
        (v.ViT.get_attention_maps, lambda: model.get_attention_maps(images)[0], dict(N=N + 1)),
    ], N


def test_returned_shapes_match_docstrings(ref):
    table, N = cases(ref)
    for fn, call, extra in table:
        env = {**LEGEND, "N": N, **extra}
        shapes = promised_shapes(fn)
        assert shapes, f"{fn.__qualname__}: its docstring promises no shape"
        out = call()
        outs = out if isinstance(out, tuple) else (out,)
        promised = [evaluate(s, env) for s in shapes[-len(outs):]]
        assert [tuple(o.shape) for o in outs] == promised, fn.__qualname__


@pytest.mark.parametrize("module", ["transformer", "ViT"])
def test_every_public_callable_with_tensors_documents_a_shape(ref, module):
    mod = getattr(ref, module)
    documented = {fn.__qualname__ for fn, _, _ in cases(ref)[0]}
    for name, obj in vars(mod).items():
        if inspect.isfunction(obj) and obj.__module__ == mod.__name__ and not name.startswith("_"):
            if "Tensor" in str(inspect.signature(obj).return_annotation):
                assert name in documented, f"{module}.{name} returns tensors but its shape is not checked here"
