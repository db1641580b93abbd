"""Assignment 8's student module `deit.py`: graded against the reference with partial credit and hints.

The grader's oracle is the reference (solutions/deit.py); the reference itself is checked here against timm's
VisionTransformerDistilled, torch's F.cross_entropy / F.kl_div and a loop over the patches, and so are the
self-check and the notebook's visible checks. Bugs are text edits of the reference (what students write); three
independent, differently written implementations (einsum, torch.cdist, the KL by hand, ...) keep full marks.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from autograder import bugs, cases, grader
from coursecore import impl
from coursecore.parts import BY_ID, GRADER, POINTS, parts_for
from coursecore.parts import deit as declared
from vitcourse.course import selfcheck

A8 = "a8_data"
REFERENCE = (impl.solutions_dir() / "deit.py").read_text()
STUB = (impl.stubs_dir() / "deit.py").read_text()

# The four solution regions written three other ways.
STYLES = {
    "einsum_cdist_manual_kl": [
        '''        B = x.shape[0]
        prefix = torch.cat((self.cls_token, self.dist_token), dim=1).expand(B, -1, -1)  # (B, 2, D)
        x = torch.cat((prefix, x), dim=1) + self.pos_embed
        x = self.pos_drop(x)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        logits = torch.stack((self.head(x[:, 0]), self.head_dist(x[:, 1])))  # (2, B, K)
        return (logits[0], logits[1]) if self.training else logits.mean(0)
''',
        '''    log_p = F.log_softmax(cls_logits, dim=-1)
    log_q = F.log_softmax(dist_logits, dim=-1)
    target = teacher_logits.argmax(-1).detach()
    ce_cls = -log_p.gather(1, labels[:, None]).mean()
    ce_dist = -log_q.gather(1, target[:, None]).mean()
    return (ce_cls + ce_dist) / 2
''',
        '''    log_s = torch.log_softmax(dist_logits / T, dim=-1)
    with torch.no_grad():
        log_t = torch.log_softmax(teacher_logits / T, dim=-1)
    kl = (log_t.exp() * (log_t - log_s)).sum(dim=-1).mean()
    return (1.0 - alpha) * F.cross_entropy(cls_logits, labels) + alpha * T ** 2 * kl
''',
        '''    p = num_prefix_tokens
    a = attn[..., p:, p:]
    a = a / a.sum(-1, keepdim=True)
    idx = torch.arange(gh * gw, device=attn.device)
    pos = torch.stack((idx // gw, idx % gw), dim=1).to(attn.dtype) * patch_size
    dist = torch.cdist(pos, pos, compute_mode="donot_use_mm_for_euclid_dist")
    return torch.einsum("bhqk,qk->h", a, dist) / (a.shape[0] * a.shape[2])
'''],
    "repeat_onehot_probs": [
        '''        B = x.shape[0]
        x = torch.cat([self.cls_token.repeat(B, 1, 1), self.dist_token.repeat(B, 1, 1), x], dim=1)
        x = self.norm(self.blocks(self.pos_drop(x + self.pos_embed)))
        c, d = self.head(x[:, 0]), self.head_dist(x[:, 1])
        if not self.training:
            return 0.5 * (c + d)
        return c, d
''',
        '''    K = cls_logits.shape[-1]
    hard = F.one_hot(teacher_logits.detach().argmax(dim=1), K).to(dist_logits.dtype)
    true = F.one_hot(labels, K).to(cls_logits.dtype)
    ce_cls = -(true * cls_logits.log_softmax(-1)).sum(-1).mean()
    ce_dist = -(hard * dist_logits.log_softmax(-1)).sum(-1).mean()
    return 0.5 * ce_cls + 0.5 * ce_dist
''',
        '''    p_t = F.softmax(teacher_logits.detach() / T, dim=1)
    kl = F.kl_div(F.log_softmax(dist_logits / T, dim=1), p_t, reduction="sum") / dist_logits.shape[0]
    return alpha * (T * T) * kl + (1 - alpha) * F.cross_entropy(cls_logits, labels)
''',
        '''    rows, cols = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
    pos = torch.stack([rows.flatten(), cols.flatten()], -1).to(attn.dtype) * patch_size  # (M, 2)
    dist = torch.hypot(pos[:, None, 0] - pos[None, :, 0], pos[:, None, 1] - pos[None, :, 1])
    w = attn[:, :, num_prefix_tokens:, num_prefix_tokens:]
    w = w / w.sum(dim=3, keepdim=True)
    per_query = torch.einsum("bhqk,qk->bhq", w, dist)
    return per_query.mean(dim=2).mean(dim=0)
'''],
    "list_xlogy_normalize": [
        '''        n = x.shape[0]
        tokens = [self.cls_token.expand(n, 1, -1), self.dist_token.expand(n, 1, -1), x]
        h = self.pos_drop(torch.cat(tokens, dim=1) + self.pos_embed)
        h = self.norm(self.blocks(h))
        logits = [self.head(h[:, 0]), self.head_dist(h[:, 1])]
        return tuple(logits) if self.training else sum(logits) / len(logits)
''',
        '''    with torch.no_grad():
        teacher_labels = torch.argmax(teacher_logits, dim=-1)
    terms = torch.stack([F.cross_entropy(cls_logits, labels), F.cross_entropy(dist_logits, teacher_labels)])
    return terms.mean()
''',
        '''    p_t = torch.softmax(teacher_logits.detach() / T, dim=-1)
    kl = torch.sum(torch.xlogy(p_t, p_t) - p_t * torch.log_softmax(dist_logits / T, dim=-1)) / len(dist_logits)
    ce = F.cross_entropy(cls_logits, labels)
    return ce + alpha * (T * T * kl - ce)
''',
        '''    w = F.normalize(attn[:, :, num_prefix_tokens:, num_prefix_tokens:], p=1, dim=-1)
    i = torch.arange(gh * gw, device=attn.device)
    dr = (i[:, None] // gw - i[None] // gw).to(attn.dtype)
    dc = (i[:, None] % gw - i[None] % gw).to(attn.dtype)
    dist = patch_size * torch.sqrt(dr ** 2 + dc ** 2)
    return (w * dist).sum(-1).mean(dim=(0, 2))
'''],
}


def _restyled(bodies) -> str:
    regions = re.compile(r"(### BEGIN SOLUTION\n).*?(\s*### END SOLUTION)", re.S)
    it = iter(bodies)
    text = regions.sub(lambda m: m.group(1) + next(it).rstrip("\n") + m.group(2), REFERENCE)
    assert next(it, None) is None
    return text


def _folder(tmp_path: Path, text: str) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "deit.py").write_text(text)
    return tmp_path


def _in_process(tmp_path: Path, text: str):
    return {r.part: r for r in grader.grade_in_process(_folder(tmp_path, text), list(parts_for(A8))).parts}


def test_a8_grades_the_four_deit_parts():
    assert list(parts_for(A8)) == ["deit.DistilledViT.forward", "deit.hard_distillation_loss",
                                   "deit.soft_distillation_loss", "deit.mean_attention_distance"]
    assert all(p in GRADER and BY_ID[p].check is not None for p in parts_for(A8))


def test_the_reference_gets_full_marks_and_the_stub_zero_in_the_sandbox(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    # The two sandboxed gradings at once: each is mostly a subprocess starting torch (the other styles: in process).
    with ThreadPoolExecutor(2) as pool:
        ref, stub = pool.map(lambda nt: grader.grade(_folder(tmp_path / nt[0], nt[1]), assignment=A8),
                             (("ref", REFERENCE), ("stub", STUB)))
    assert [r.part for r in ref.parts] == list(parts_for(A8))
    assert ref.score == ref.max_score == sum(POINTS[p] for p in parts_for(A8)), ref.table()
    assert not any(r.hints for r in ref.parts), ref.table()
    assert stub.score == 0
    assert all("not implemented" in r.feedback().lower() for r in stub.parts), stub.table()


@pytest.mark.parametrize("style", list(STYLES))
def test_other_correct_styles_keep_full_marks_without_hints(style, tmp_path):
    for part, r in _in_process(tmp_path, _restyled(STYLES[style])).items():
        assert r.score == POINTS[part] and not r.hints, r.feedback()


def test_the_reference_outputs_are_timms_and_torchs():
    """The grader's expected outputs (the reference's) equal the oracles' on every hidden case."""
    from timm.models.deit import VisionTransformerDistilled

    for case, expected in cases.graded_part(str(impl.solutions_dir()), "deit.DistilledViT.forward"):
        p, t = case["params"], case["tensors"]
        model = VisionTransformerDistilled(img_size=tuple(p["image_size"]), patch_size=p["patch_size"],
                                           in_chans=p["in_chans"], num_classes=p["num_classes"],
                                           embed_dim=p["embed_dim"], depth=p["depth"], num_heads=p["num_heads"],
                                           mlp_ratio=2.0).to(t["x"].dtype)
        model.load_state_dict({k[2:]: v for k, v in t.items() if k.startswith("w.")})
        model.set_distilled_training(True)  # timm returns the pair in train mode only when told to
        x = case["tensors"]["x"]
        assert isinstance(model, VisionTransformerDistilled)
        model.train()
        cls, dist = model(x)
        torch.testing.assert_close(expected["cls"], cls.detach(), msg=case["label"])
        torch.testing.assert_close(expected["dist"], dist.detach(), msg=case["label"])
        torch.testing.assert_close(expected["out"], model.eval()(x).detach(), msg=case["label"])
    for part, op in (("deit.hard_distillation_loss", "hard"), ("deit.soft_distillation_loss", "soft")):
        for case, expected in cases.graded_part(str(impl.solutions_dir()), part):
            t, p = case["tensors"], case["params"]
            if op == "hard":
                want = 0.5 * F.cross_entropy(t["cls_logits"], t["labels"]) + 0.5 * F.cross_entropy(
                    t["dist_logits"], t["teacher_logits"].argmax(-1))
            else:
                want = declared.soft_by_hand(t["cls_logits"], t["dist_logits"], t["labels"], t["teacher_logits"],
                                             p["T"], p["alpha"])
            torch.testing.assert_close(expected["out"], want, msg=case["label"])
            assert not expected["grad:teacher_logits"].any()
    for case, expected in cases.graded_part(str(impl.solutions_dir()), "deit.mean_attention_distance"):
        p = case["params"]
        want = declared.distance_by_hand(case["tensors"]["attn"], tuple(p["grid"]), p["patch_size"], p["prefix"])
        torch.testing.assert_close(expected["out"], want, msg=case["label"])


def test_the_cases_cover_the_sizes_the_issue_names():
    grids = {tuple(c["params"]["grid"]) for c in declared._distance_cases()}
    assert (2, 2) in grids and (8, 8) in grids and any(a != b for a, b in grids)
    assert {c["params"]["prefix"] for c in declared._distance_cases()} == {1, 2}
    vit = declared._vit_cases(impl.reference())
    assert len({c["params"]["num_heads"] for c in vit}) >= 3
    for make in (lambda: vit, declared._distance_cases, lambda: declared._loss_cases("soft")):
        assert {next(v for k, v in c["tensors"].items() if v.is_floating_point()).dtype for c in make()} \
            == {torch.float32, torch.float64}


BUG_IDS = [b.id for p in parts_for(A8) for b in GRADER[p].bugs]


@pytest.mark.parametrize("bug_id", BUG_IDS)
def test_each_catalogued_bug_loses_points_in_its_part_only_with_its_hint(bug_id, tmp_path):
    bug = bugs.by_id(bug_id)
    old, new = bug.mutation
    assert old in REFERENCE, f"{bug_id}: the reference changed"
    by_part = _in_process(tmp_path, REFERENCE.replace(old, new))
    assert by_part[bug.part].score < POINTS[bug.part]
    assert bug.hint in by_part[bug.part].feedback(), by_part[bug.part].feedback()
    for other, r in by_part.items():
        if other != bug.part:
            assert r.score == POINTS[other], f"{bug_id} cost {other} points"


# Mistakes no catalogued bug names: the analysers say them in deit.py's words.
ANALYSED = {
    "teacher_not_softened": ("teacher = F.log_softmax(teacher_logits.detach() / T, dim=-1)",
                             "teacher = F.log_softmax(teacher_logits.detach(), dim=-1)",
                             "deit.soft_distillation_loss", "teacher_logits are not divided by T"),
    "squared_distance": ("(pos[:, None] - pos[None]).norm(dim=-1)", "(pos[:, None] - pos[None]).pow(2).sum(dim=-1)",
                         "deit.mean_attention_distance", "the distance is squared"),
    "summed_queries": (".sum(dim=-1).mean(dim=(0, 2))", ".sum(dim=(-1, -2)).mean(dim=0)",
                       "deit.mean_attention_distance", "summed over the query patches"),
    "pos_embed_twice": ("self.pos_drop(x + self.pos_embed)", "self.pos_drop(x + 2 * self.pos_embed)",
                        "deit.DistilledViT.forward", "self.pos_embed is added twice"),
    "no_final_norm": ("x = self.norm(self.blocks(self.pos_drop(x + self.pos_embed)))",
                      "x = self.blocks(self.pos_drop(x + self.pos_embed))",
                      "deit.DistilledViT.forward", "self.norm is not applied"),
    "hard_argmin": ("teacher_logits.detach().argmax(dim=-1)", "teacher_logits.detach().argmin(dim=-1)",
                    "deit.hard_distillation_loss", "the teacher's argmin"),
}


@pytest.mark.parametrize("name", ANALYSED)
def test_uncatalogued_mistakes_get_the_analysers_hint(name, tmp_path):
    old, new, part, words = ANALYSED[name]
    assert old in REFERENCE
    by_part = _in_process(tmp_path, REFERENCE.replace(old, new))
    assert by_part[part].score < POINTS[part]
    assert any(words in h for h in by_part[part].hints), by_part[part].feedback()
    assert all(r.score == POINTS[p] for p, r in by_part.items() if p != part)


def _load(tmp_path: Path, text: str):
    return impl.load(_folder(tmp_path, text), modules=("deit",), reload=True).deit


def test_visible_checks_pass_correct_code_and_catch_the_bugs(tmp_path):
    from types import SimpleNamespace

    for i, text in enumerate((REFERENCE, *(_restyled(b) for b in STYLES.values()))):
        mods = SimpleNamespace(deit=_load(tmp_path / f"ok{i}", text))
        for part in parts_for(A8):
            BY_ID[part].check(mods)
    for bug_id in ("deit.token_order", "deit.eval_sum", "deit.train_returns_mean", "deit.hard.dist_learns_labels",
                   "deit.soft.no_t_squared", "deit.soft.teacher_not_detached", "deit.distance.patches",
                   "deit.distance.not_renormalised", "deit.distance.grid_transposed"):
        bug = bugs.by_id(bug_id)
        mods = SimpleNamespace(deit=_load(tmp_path / bug_id, REFERENCE.replace(*bug.mutation)))
        with pytest.raises(AssertionError):
            BY_ID[bug.part].check(mods)


def test_selfcheck_knows_deit(tmp_path):
    assert {r.part: r.status for r in selfcheck.check_all(_folder(tmp_path / "ok", REFERENCE))} \
        == {p: selfcheck.OK for p in parts_for(A8)}
    results = selfcheck.check_all(_folder(tmp_path / "stub", STUB))
    assert {r.status for r in results} == {selfcheck.TODO}
    assert all("deit.py: implement" in r.message for r in results), [r.message for r in results]
    bug = bugs.by_id("deit.distance.manhattan")
    status = {r.part: r.status for r in selfcheck.check_all(_folder(tmp_path / "bug", REFERENCE.replace(*bug.mutation)))}
    assert status[bug.part] == selfcheck.WRONG and {s for p, s in status.items() if p != bug.part} == {selfcheck.OK}


def test_the_notebook_check_says_not_implemented_on_the_stub_and_ok_on_the_reference(tmp_path, monkeypatch, capsys):
    import sys

    from vitcourse.course import nbchecks

    for name, text, words in (("stub", STUB, "not implemented yet"), ("ref", REFERENCE, None)):
        monkeypatch.setitem(sys.modules, "deit", _load(tmp_path / name, text))
        for part in parts_for(A8):
            nbchecks.check_part(part)
            printed = "".join(capsys.readouterr())  # a failure goes to stderr (a red box in Jupyter)
            if words:
                assert words in printed and not nbchecks.RESULTS[part][0], printed
            else:  # the cell says so: a check cell that prints nothing looks like one that never ran
                assert nbchecks.RESULTS[part][0] and f"OK: {part}" in printed, printed
