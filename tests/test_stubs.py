"""The student stubs: generated from the reference, in sync, importable, and honest about what is missing."""
import pytest
import torch

from coursecore import impl
from coursetools.stubs import StubError, generate, make_stub, todos

# How to reach each student-owed part of a stub module pair (`s.transformer`, `s.ViT`).
CALLS = {
    "attention": lambda s: s.transformer.attention(*(torch.zeros(1, 2, 3, 4),) * 3),
    "Attention.split_heads": lambda s: s.transformer.Attention(8, 2).split_heads(torch.zeros(1, 3, 8)),
    "Attention.merge_heads": lambda s: s.transformer.Attention(8, 2).merge_heads(torch.zeros(1, 2, 3, 4)),
    "Mlp.forward": lambda s: s.transformer.Mlp(8, 16)(torch.zeros(1, 3, 8)),
    "Block.forward": lambda s: s.transformer.Block(8, 2)(torch.zeros(1, 3, 8)),
    "patchify": lambda s: s.ViT.patchify(torch.zeros(1, 3, 8, 8), 4),
    "unpatchify": lambda s: s.ViT.unpatchify(torch.zeros(1, 4, 48), 4, 8),
    "sincos_1d_embedding": lambda s: s.ViT.sincos_1d_embedding(4, 8),
    "sincos_2d_embedding": lambda s: s.ViT.sincos_2d_embedding(2, 2, 8),
    "PatchEmbed.forward": lambda s: s.ViT.PatchEmbed(8, 4, 3, 8)(torch.zeros(1, 3, 8, 8)),
    "ViT.forward_features": lambda s: s.ViT.ViT(image_size=8)(torch.zeros(1, 3, 8, 8)),
    "set_trainable": lambda s: s.finetune.set_trainable(torch.nn.Sequential(torch.nn.Linear(2, 2)), "full"),
    "attention_rollout": lambda s: s.finetune.attention_rollout([torch.full((1, 1, 3, 3), 1 / 3)]),
    "attention_statistics": lambda s: s.finetune.attention_statistics(torch.full((1, 9), 1 / 9), (3, 3)),
    "batch_norm": lambda s: s.cnn.batch_norm(torch.zeros(2, 3), torch.zeros(3), torch.ones(3)),
    "fold_conv_bn": lambda s: s.cnn.fold_conv_bn(torch.nn.Conv2d(2, 3, 1), torch.nn.BatchNorm2d(3).eval()),
    "mish": lambda s: s.cnn.mish(torch.zeros(2)),
    "ConvBlock.forward": lambda s: s.cnn.ConvBlock(3, 4, s.cnn.ConvNetConfig())(torch.zeros(1, 3, 4, 4)),
    "ConvNet.forward": lambda s: s.cnn.ConvNet(image_size=8)(torch.zeros(1, 3, 8, 8)),
}


def test_student_src_is_in_sync_with_a_fresh_generation(tmp_path):
    problems = generate(impl.solutions_dir(), impl.stubs_dir(), check=True)
    assert not problems, "\n".join(problems)


def test_the_issue_lists_student_owed_parts_and_each_has_a_call():
    names = [t.name for t in todos(impl.solutions_dir())]
    assert set(CALLS) == set(names), "add a call for every TODO of solutions/ to CALLS"
    required = {"patchify", "attention", "Attention.split_heads", "Attention.merge_heads", "Mlp.forward",
                "Block.forward", "sincos_1d_embedding", "sincos_2d_embedding", "ViT.forward_features"}
    assert required <= set(names)


@pytest.mark.parametrize("part", list(CALLS))
def test_each_stub_raises_not_implemented_naming_itself(stubs, part):
    file = next(t.file for t in todos(impl.solutions_dir()) if t.name == part)
    with pytest.raises(NotImplementedError, match=rf"^{file}: implement {part}$"):
        CALLS[part](stubs)


@pytest.mark.parametrize("config", [dict(), dict(pool="mean", qkv_bias=False, depth=3), dict(num_classes=100)])
def test_stub_models_have_the_reference_state_dict(ref, stubs, config):
    theirs = ref.ViT.ViT(**config).state_dict()
    mine = stubs.ViT.ViT(**config)
    assert {k: v.shape for k, v in mine.state_dict().items()} == {k: v.shape for k, v in theirs.items()}
    mine.load_state_dict(theirs, strict=True)


def test_stub_keeps_given_code_and_replaces_solutions():
    source = impl.solutions_dir().joinpath("transformer.py").read_text()
    stub = impl.stubs_dir().joinpath("transformer.py").read_text()
    assert "### BEGIN SOLUTION" not in stub and "### END SOLUTION" not in stub
    assert "F.scaled_dot_product_attention" in stub  # the fused path is given to students
    assert "self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)" in stub  # so are the layers
    assert "scores.softmax(dim=-1)" in source and "scores.softmax(dim=-1)" not in stub
    assert "Our solution is 3 lines." in stub


def test_generator_counts_code_lines_and_rejects_broken_markers():
    good = ("def f(x):\n    ### TODO f: double x.\n    ###   1. multiply by two.\n    ### BEGIN SOLUTION\n"
            "    # a comment does not count\n    y = 2 * x\n\n    return y\n    ### END SOLUTION\n")
    text, found = make_stub(good, "m.py")
    assert [(t.name, t.solution_lines, t.line) for t in found] == [("f", 2, 2)]
    assert 'raise NotImplementedError("m.py: implement f")' in text and "2 * x" not in text
    assert "#   1. multiply by two." in text
    broken = {
        "without a '### TODO": "x = 1\n### BEGIN SOLUTION\n### END SOLUTION\n",
        "has no '### END SOLUTION'": "### TODO f: a.\n### BEGIN SOLUTION\nx = 1\n",
        "used twice": "### TODO f: a.\n### BEGIN SOLUTION\n### END SOLUTION\n" * 2,
        "nested": "### TODO f: a.\n### BEGIN SOLUTION\n### TODO g: b.\n### END SOLUTION\n",
        "expected a '###' hint line": "### TODO f: a.\nx = 1\n### BEGIN SOLUTION\n### END SOLUTION\n",
    }
    for message, source in broken.items():
        with pytest.raises(StubError, match=message):
            make_stub(source, "m.py")


def test_check_mode_reports_a_stale_stub(tmp_path):
    generate(impl.solutions_dir(), tmp_path)
    assert generate(impl.solutions_dir(), tmp_path, check=True) == []
    (tmp_path / "ViT.py").write_text((tmp_path / "ViT.py").read_text() + "# edited by hand\n")
    problems = generate(impl.solutions_dir(), tmp_path, check=True)
    assert len(problems) == 1 and "run `make stubs`" in problems[0] and "edited by hand" in problems[0]
