"""Analysers: they name generated mistakes they were not told about, and stay silent on correct code.

Most tests grade in this process (`grader.grade_in_process`: the grader's cases, comparisons, analysers and
substitutions without the sandbox) so that many generated mutants stay cheap; one test goes through the
sandboxed grader end to end.
"""
from __future__ import annotations

import contextlib
import io
import itertools
import math

import pytest
import torch

import feedback_variants as fv
from coursecore.parts import analysers
from vitcourse.course import selfcheck
from autograder import bugs, grader
from coursecore.parts import POINTS
from coursecore import impl
from vitcourse.course import nbchecks

NON_SPECIFIC = {grader.NOT_IMPLEMENTED_HINT, grader.GRADIENT_HINT, *bugs.GENERIC_HINTS.values()}
CATALOGUE_HINTS = {b.hint for b in bugs.catalogue()}


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------- each analyser, generated mistakes
@pytest.mark.parametrize("d", [3, 4, 6, 16])
def test_scale_names_generated_factors(d):
    x = torch.randn(2, 5, 7, generator=_gen(d))
    sizes = {"d": d, "D": 3 * d}
    for value, label in analysers._named_constants(sizes):
        found = analysers.scale(x, x * value, sizes)
        assert found and f"{value:.4g}" in found.message, (value, found)
    shifted = analysers.scale(x, x + 0.37, sizes)
    assert shifted and "plus the constant 0.37" in shifted.message


@pytest.mark.parametrize("d", [4, 6, 9])
def test_softmax_scale_reads_the_factor_in_the_log_domain(d):
    g = _gen(d)
    q, k = torch.randn(2, 3, 5, d, generator=g), torch.randn(2, 3, 5, d, generator=g)
    scores = q @ k.transpose(-2, -1)
    want = (scores / math.sqrt(d)).softmax(-1)
    for s, words in ((math.sqrt(d), "not divided by √d"), (1 / math.sqrt(d), "divided by d instead"), (1.7, "1.7")):
        got = (scores / math.sqrt(d) * s).softmax(-1)
        found = analysers.softmax_scale(want, got, {"d": d})
        assert found and words in found.message, (s, found)


def _random_views():
    for seed, shape in enumerate([(2, 3, 5, 4), (2, 3, 4, 2, 2, 3), (5, 3, 2), (3, 4, 2, 2, 2)]):
        names = tuple(f"axis{i}" for i in range(len(shape)))
        yield seed, analysers.View(shape, names)


@pytest.mark.parametrize("seed,view", list(_random_views()))
def test_layout_names_the_exchanged_axes_of_generated_permutations(seed, view):
    x = torch.randn(*view.shape, generator=_gen(seed))
    for a, b in itertools.combinations(range(len(view.shape)), 2):
        if view.shape[a] == view.shape[b]:
            continue  # two axes of one size: several readings are equally right
        perm = list(range(len(view.shape)))
        perm[a], perm[b] = perm[b], perm[a]
        wrong = x.permute(perm).reshape(x.shape)  # a reshape where a transpose was needed
        found = analysers.layout(x, wrong, view)
        assert found and f"«axis{a}»" in found.message and f"«axis{b}»" in found.message, (a, b, found)


def test_attention_properties_on_generated_weight_mistakes():
    g = _gen(3)
    scores = torch.randn(2, 2, 6, 6, generator=g)
    mask = (torch.rand(2, 2, 6, 6, generator=g) > 0.4) | torch.eye(6, dtype=torch.bool)
    right = scores.masked_fill(~mask, float("-inf")).softmax(-1)
    cases = {
        "over the queries": scores.softmax(-2),
        "the wrong way round": scores.masked_fill(mask, float("-inf")).softmax(-1).nan_to_num(0.0),
        "still get weight": scores.softmax(-1),
        "after the softmax": scores.softmax(-1) * mask,
        "negative": right - 0.05,
    }
    for words, weights in cases.items():
        m = None if words == "over the queries" else mask
        found = analysers.attention_properties(weights, m, right if m is not None else scores.softmax(-1))
        assert found and words in found.message, (words, found)


def test_additive_and_sincos_hypotheses():
    x, pos = torch.randn(2, 5, 6, generator=_gen(4)), torch.randn(1, 5, 6, generator=_gen(5))
    terms = {"pos_embed": (pos, "not added", "added twice")}
    assert "not added" in analysers.additive(x + pos, x, terms).message
    assert "added twice" in analysers.additive(x + pos, x + 2 * pos, terms).message
    # Tables built entry by entry from a formula with one change each: the analyser names the change.
    for n, D in ((5, 12), (9, 6)):
        for offset, sign, twice, words in ((1, -1, 2, "start at 1"), (0, 1, 2, "sign of the exponent"),
                                           (0, -1, 1, "i instead of 2i")):
            table = torch.tensor([[(math.sin if c % 2 == 0 else math.cos)(
                (p + offset) * 10000.0 ** (sign * twice * (c // 2) / D)) for c in range(D)] for p in range(n)])
            found = analysers.sincos(table, n, D)
            assert found and words in found.message, (n, D, words, found)


def _error(fn):
    try:
        fn()
    except RuntimeError as err:
        return str(err)
    raise AssertionError("expected torch to raise")


def test_torch_errors_translated():
    cls, x = torch.zeros(1, 1, 6), torch.randn(2, 4, 6)
    q = torch.randn(2, 3, 5, 4)
    cases = {
        ("ViT.ViT.forward_features", "expand it to the batch"): lambda: torch.cat([cls, x], dim=1),
        ("ViT.ViT.forward_features", "after prepending the class token"): lambda: x + torch.zeros(1, 5, 6),
        ("transformer.attention", "k must be transposed"): lambda: q @ q,
        ("transformer.Attention.merge_heads", "use .reshape"): lambda: q.transpose(1, 2).view(2, 5, 12),
        ("ViT.patchify", "must multiply"): lambda: q.reshape(3, 7),
        ("transformer.Mlp.forward", "dtype"): lambda: torch.nn.Linear(4, 4)(q.double()),
        ("transformer.Block.forward", "in-place"): lambda: (lambda t: (t.sigmoid_(), t.sum().backward()))(
            torch.randn(3, requires_grad=True).exp()),
    }
    for (part, words), fn in cases.items():
        message = _error(fn)
        hint = analysers.explain_error(message, part, {"B": 2, "N": 4})
        assert hint and words in hint, (part, message, hint)
    assert analysers.explain_error("ValueError: something else entirely", "ViT.patchify") is None


# --------------------------------------------------------------------------------- silence on correct code
def test_correct_variants_keep_full_marks_and_get_no_hint(tmp_path):
    assert len(fv.VARIANTS) >= 15
    for name, edits in fv.VARIANTS.items():
        report = grader.grade_in_process(fv.make(tmp_path, name, edits))
        noisy = [(p.part, p.score, p.hints) for p in report.parts if p.score < p.max_score or p.hints]
        assert not noisy, f"{name}: {noisy}"


def test_analysers_silent_on_correct_outputs_and_on_unrelated_wrong_ones():
    """Every analyser on (correct, correct) and on (correct, something unrelated): nothing specific."""
    g = _gen(7)
    sizes = {"B": 2, "h": 3, "N": 5, "d": 4, "D": 12, "C": 3, "H": 8, "W": 12, "P": 4, "n": 5}
    for part in POINTS:
        for key in ("out", "weights"):
            view = analysers.views(part, sizes).get(key)
            shape = view.shape if view else (2, 5, 12)
            right = torch.randn(*shape, generator=g).softmax(-1)
            unrelated = torch.randn(*shape, generator=g)
            assert analysers.analyse_part(part, {key: right}, {key: right.clone()}, sizes) == []
            noisy = right + 1e-3 * torch.randn(*shape, generator=g)
            for wrong in (unrelated, noisy):
                found = analysers.analyse_part(part, {key: right}, {key: wrong}, sizes)
                # Facts read off the weights themselves (negative, rows not summing to 1) are not guesses.
                assert all(f.kind == "properties" for f in found), (part, found)


# --------------------------------------------------------------------------------- generated source mutants
MUTANTS = list(fv.mutants())


def test_mutation_operators_cover_every_part():
    parts = {m[0] for m in MUTANTS}
    # The generator mutates transformer.py and ViT.py; finetune.py and cnn.py have their own mutant tables.
    todo_parts = {p for p in POINTS if p not in ("transformer.Attention.forward", "ViT.model")
                  and p.split(".", 1)[0] in ("transformer", "ViT")}
    assert parts == todo_parts and len(MUTANTS) >= 60


@pytest.mark.parametrize("chunk", range(3))
def test_generated_mutants_get_a_specific_hint_in_their_own_part_only(tmp_path, chunk):
    """A third of the mutants per chunk (every third one): detected ones lose points only in their part and
    get a hint that names a cause; most of them are not in the bug catalogue."""
    beyond_catalogue = 0
    for i, (part, op, line, edit) in enumerate(MUTANTS):
        if i % 3 != chunk:
            continue
        report = grader.grade_in_process(fv.make(tmp_path, f"m{i}", [edit]))
        lost = {p.part for p in report.parts if p.score < p.max_score}
        if not lost:
            continue  # an equivalent mutant
        assert lost == {part}, f"{op} `{line}` cost points in {lost}"
        hints = report.part(part).hints
        assert any(h not in NON_SPECIFIC for h in hints), f"{op} `{line}`: only {hints}"
        beyond_catalogue += not any(h in CATALOGUE_HINTS for h in hints)
    assert beyond_catalogue >= 3, "the analysers, not the catalogue, must explain part of the mutants"


# --------------------------------------------------------------------------------- issue 9.5 and 9.3
SOFTMAX = (fv.T, "weights = scores.softmax(dim=-1)", "weights = scores.softmax(dim=-2)")
CLS = (fv.V, "cls = self.cls_token.expand(x.shape[0], -1, -1)  # (B, 1, D)", "cls = self.cls_token")
SIN_FROM_1 = (fv.V, "pos = torch.arange(num_positions, dtype=torch.float32)",
              "pos = torch.arange(1, num_positions + 1, dtype=torch.float32)")


def test_one_softmax_bug_costs_only_attention_in_the_sandboxed_grader(tmp_path):
    report = grader.grade(fv.make(tmp_path, "softmax", [SOFTMAX, CLS]))
    lost = {p.part: p.max_score - p.score for p in report.parts if p.score < p.max_score}
    assert set(lost) == {"transformer.attention", "ViT.ViT.forward_features"}, report.table()
    assert lost["transformer.attention"] == POINTS["transformer.attention"]
    assert "stand-ins" in report.part("ViT.model").summary
    features = report.part("ViT.ViT.forward_features").hints
    assert any("expand it to the batch" in h for h in features), features


def _nb(fn, arg) -> str:
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            fn(arg)
    except AssertionError as err:
        return str(err)
    return "ok"


def test_notebook_checks_blame_the_right_part(tmp_path):
    softmax = impl.load(fv.make(tmp_path, "nb_softmax", [SOFTMAX]))
    message = _nb(nbchecks.check_attention_module.strict, softmax.transformer.Attention)
    assert "your attention" in message and "split_heads/merge_heads" not in message, message
    assert "over the queries" in _nb(nbchecks.check_attention.strict, softmax.transformer.attention)
    sin = impl.load(fv.make(tmp_path, "nb_sin", [SIN_FROM_1]))
    assert _nb(nbchecks.check_sincos_2d.strict, sin.ViT.sincos_2d_embedding) == "ok"  # not a row/column bug
    assert "start at 1" in _nb(nbchecks.check_sincos_1d.strict, sin.ViT.sincos_1d_embedding)
    cls = impl.load(fv.make(tmp_path, "nb_cls", [CLS]))
    message = _nb(nbchecks.check_forward_features.strict, cls.ViT.ViT)
    assert "expand it to the batch" in message and "Traceback" not in message, message


def test_selfcheck_names_the_part_really_missing(tmp_path):
    stub = (impl.stubs_dir() / "ViT.py").read_text()
    start = stub.index("def patchify")
    body = stub[start:stub.index("def unpatchify")]
    # A student who finished everything but patchify: PatchEmbed is checked without it.
    no_patchify = fv.make(tmp_path, "no_patchify")
    text = (no_patchify / "ViT.py").read_text()
    ref_start = text.index("def patchify")
    (no_patchify / "ViT.py").write_text(text[:ref_start] + body + text[text.index("def unpatchify"):])
    status = {r.part: r for r in selfcheck.check_all(no_patchify)}
    assert status["ViT.patchify"].status == selfcheck.TODO
    assert status["ViT.PatchEmbed.forward"].status == selfcheck.OK, status["ViT.PatchEmbed.forward"]
    # Block.forward left undone: forward_features is checked with built-in blocks; the model names Block.forward.
    no_block = fv.make(tmp_path, "no_block", [(fv.T, "        x = x + self.drop_path1(self.attn(self.norm1(x), mask))",
                                               "        raise NotImplementedError('transformer.py: implement Block.forward')")])
    status = {r.part: r for r in selfcheck.check_all(no_block)}
    assert status["ViT.ViT.forward_features"].status == selfcheck.OK, status["ViT.ViT.forward_features"]
    assert status["ViT.model"].status == selfcheck.TODO and "needs Block.forward" in status["ViT.model"].message
    stubs = {r.part: r for r in selfcheck.check_all(impl.stubs_dir())}
    assert "needs Attention.split_heads" in stubs["transformer.Attention.forward"].message


def test_selfcheck_and_analysers_ship_without_reference_material():
    from coursetools import release

    from coursecore.course_root import STUDENT_PACKAGES

    assert "coursecore" in STUDENT_PACKAGES  # the analysers ship with the core
    text = (impl.REPO_ROOT / "coursecore" / "parts" / "analysers.py").read_text()
    assert "import autograder" not in text and "from autograder" not in text and "vitcourse" not in text
    secret = set()
    for path in (impl.solutions_dir() / name for name in release.STUB_FILES):  # what the leak check reads
        secret |= release._distinctive(release._region_lines(path.read_text().splitlines(),
                                                             "### BEGIN SOLUTION", "### END SOLUTION"))
    for stub in impl.stubs_dir().glob("*.py"):  # lines the students are given anyway, as the leak check does
        secret -= release._distinctive(stub.read_text().splitlines())
    for module in ("coursecore/parts/analysers.py", "vitcourse/course/selfcheck.py"):
        lines = {line.strip() for line in (impl.REPO_ROOT / module).read_text().splitlines()}
        assert not (secret & lines), f"{module}: {secret & lines}"
