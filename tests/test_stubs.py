"""The student stubs: generated from the reference, in sync, importable, and honest about what is missing."""
from pathlib import Path

import pytest

from coursecore import impl
from coursecore.parts import POINTS
from coursetools.stubs import StubError, generate, make_stub, todos

def test_student_src_is_in_sync_with_a_fresh_generation(tmp_path):
    problems = generate(impl.solutions_dir(), impl.stubs_dir(), check=True)
    assert not problems, "\n".join(problems)


TODOS = todos(impl.solutions_dir())


def test_every_student_owed_part_is_a_declared_part():
    names = [t.name for t in TODOS]
    assert {f"{Path(t.file).stem}.{t.name}" for t in TODOS} <= set(POINTS), "declare every TODO in coursecore/parts/"
    required = {"patchify", "attention", "Attention.split_heads", "Attention.merge_heads", "Mlp.forward",
                "Block.forward", "sincos_1d_embedding", "sincos_2d_embedding", "ViT.forward_features"}
    assert required <= set(names)


@pytest.mark.parametrize("todo", TODOS, ids=lambda t: f"{t.file}:{t.name}")
def test_each_stub_raises_not_implemented_naming_itself(ref, stubs, todo):
    """The part's first hidden case, run on the generated stubs the way the grader runs it, stops at this part's
    own stub (the runner gives a part the reference, or an oracle, for the parts it uses): its declaration reaches
    it with no table kept here."""
    from autograder import cases, runner

    case = cases.build_cases(ref, f"{Path(todo.file).stem}.{todo.name}")[0]
    with pytest.raises(NotImplementedError, match=rf"^{todo.file}: implement {todo.name}$"):
        runner.run_case(stubs, case)


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
