"""Ablations: the interval maths (by hand and against scipy), resume, the table vs the per-run JSONs, a tiny grid."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import stats as scipy_stats

from autograder import quiz
from vitcourse.analysis import ablate, stats


# ---- interval maths -------------------------------------------------------------------------------------------

def test_summary_matches_a_hand_computed_example():
    # values 0.90, 0.92, 0.94: mean 0.92; deviations -0.02, 0, 0.02 -> s^2 = 0.0008 / 2 = 0.0004, s = 0.02;
    # t(0.975, df=2) = 4.302653; half-width = 4.302653 * 0.02 / sqrt(3) = 0.049683.
    s = stats.summarize([0.90, 0.92, 0.94])
    assert s.n == 3 and s.mean == pytest.approx(0.92) and s.std == pytest.approx(0.02)
    assert s.half_width == pytest.approx(0.049683, abs=1e-6)
    assert (s.low, s.high) == pytest.approx((0.92 - 0.049683, 0.92 + 0.049683), abs=1e-6)


@pytest.mark.parametrize("n", [2, 3, 5, 12])
def test_summary_matches_scipy(n):
    x = np.random.default_rng(n).normal(0.8, 0.03, size=n)
    s = stats.summarize(x)
    low, high = scipy_stats.t.interval(0.95, df=n - 1, loc=x.mean(), scale=scipy_stats.sem(x))
    assert s.std == pytest.approx(x.std(ddof=1)) and (s.low, s.high) == pytest.approx((low, high))


def test_paired_difference_is_the_one_sample_interval_of_the_differences_and_matches_scipy_ttest():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.8, 0.03, 5), rng.normal(0.79, 0.03, 5)
    d = stats.paired_difference(a, b)
    res = scipy_stats.ttest_rel(a, b)
    low, high = res.confidence_interval(0.95)
    assert d.mean == pytest.approx((a - b).mean()) and (d.low, d.high) == pytest.approx((low, high))
    with pytest.raises(ValueError, match="same seeds"):
        stats.paired_difference([0.1, 0.2], [0.1])


def test_a_single_run_has_no_interval_and_the_sentence_says_so():
    s = stats.summarize([0.5])
    assert math.isnan(s.low) and math.isnan(s.std)
    assert "single seed" in stats.verdict("tanh", "relu", s)


def test_verdict_sentences():
    same = stats.Interval(5, -0.012, 0.02, -0.030, 0.006)
    assert stats.verdict("tanh", "ReLU", same) == (
        "tanh vs ReLU: \u22121.2 points, 95% interval [\u22123.0, +0.6] over 5 seeds: not distinguishable at this budget")
    assert stats.verdict("a", "b", stats.Interval(3, 0.05, 0.01, 0.02, 0.08)).endswith("a is better at this budget")
    assert stats.verdict("a", "b", stats.Interval(3, -0.05, 0.01, -0.08, -0.02)).endswith("a is worse at this budget")


def test_seeds_needed_is_the_smallest_n_whose_interval_is_narrow_enough():
    for std, half in [(0.02, 0.01), (0.01, 0.01), (0.03, 0.005)]:
        n = quiz.seeds_needed(std, half)
        width = lambda k: scipy_stats.t.ppf(0.975, k - 1) * std / math.sqrt(k)  # noqa: E731
        assert width(n) <= half and (n == 2 or width(n - 1) > half)


# ---- the grid ---------------------------------------------------------------------------------------------

def test_parse_grid_and_expand():
    grid = ablate.parse_grid(["pos_embed=learnable,none", "depth=2,3", "classes=1+3,0+2"])
    assert grid == {"pos_embed": ["learnable", "none"], "depth": [2, 3], "classes": [(1, 3), (0, 2)]}
    variants = ablate.expand(grid)
    assert len(variants) == 8 and variants[0] == {"pos_embed": "learnable", "depth": 2, "classes": (1, 3)}
    assert ablate.variant_name(variants[0]) == "pos_embed=learnable,depth=2,classes=1+3"
    assert ablate.parse_grid(["drop_rate=0,0.1"]) == {"drop_rate": [0.0, 0.1]}  # the regulariser of the digits table
    assert ablate.parse_grid(["drop_path_rate=0.1"]) == {"drop_path_rate": [0.1]}  # stochastic depth
    for bad, msg in [("colour=red", "unknown option"), ("depth=two", "int values"), ("act", "OPTION=VALUE")]:
        with pytest.raises(ablate.AblationError, match=msg):
            ablate.parse_grid([bad])


TINY = ablate.Settings(data="digits", epochs=1, max_train=96, threads=1,
                       overrides=dict(batch_size=32, warmup_epochs=0.5))
TINY_GRID = {"pos_embed": ["learnable", "sincos2d"], "embed_dim": [16], "depth": [1], "num_heads": [2]}


@pytest.fixture(scope="module")
def tiny_grid(tmp_path_factory):
    out = tmp_path_factory.mktemp("ablate")
    variants = ablate.expand(TINY_GRID)
    results = ablate.run_grid(variants, [0, 1], TINY, out, log=lambda _: None)
    return out, variants, results


def test_tiny_grid_end_to_end_writes_one_json_per_run_and_a_table(tiny_grid):
    out, variants, results = tiny_grid
    assert len(results) == 4 and len(list((out / ablate.RUNS_DIR).glob("*/seed*.json"))) == 4
    assert (out / ablate.TABLE_MD).is_file() and (out / ablate.TABLE_CSV).is_file()
    md = (out / ablate.TABLE_MD).read_text()
    assert "pos_embed=sincos2d" in md and "over 2 seeds" in md
    # Each run keeps its cost and the machine's load beside it (a busy shared machine explains a slow run),
    # and the CPU it ran on (the same seed can end a few images apart on another instruction set).
    for r in results:
        assert r["wall_time_s"] > 0 and r["cpu_time_s"] > 0 and len(r["load_average_1min"]) == 2
        assert r["hardware"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()


def test_table_numbers_equal_the_per_run_jsons(tiny_grid):
    out, _, _ = tiny_grid
    runs = [json.loads(p.read_text()) for p in (out / ablate.RUNS_DIR).glob("*/seed*.json")]
    rows = {r["variant"]: r for r in ablate.summary_rows(ablate.load_results(out))}
    for name, row in rows.items():
        accs = [r["test_accuracy"] for r in runs if r["variant"] == name]
        assert row["seeds"] == len(accs) == 2
        assert row["mean_acc"] == pytest.approx(np.mean(accs)) and row["std_acc"] == pytest.approx(np.std(accs, ddof=1))
    import csv
    with (out / ablate.TABLE_CSV).open() as fh:
        for line in csv.DictReader(fh):
            assert float(line["mean_acc"]) == pytest.approx(rows[line["variant"]]["mean_acc"])
    (comp,) = ablate.comparisons(runs, baseline="pos_embed=learnable,embed_dim=16,depth=1,num_heads=2")
    by = {(r["variant"], r["seed"]): r["test_accuracy"] for r in runs}
    diffs = [by[(comp["variant"], s)] - by[(comp["baseline"], s)] for s in (0, 1)]
    assert comp["diff"] == pytest.approx(np.mean(diffs))


def test_resume_skips_finished_runs(tiny_grid, monkeypatch):
    out, variants, results = tiny_grid
    calls = []
    monkeypatch.setattr(ablate, "train_variant", lambda *a, **k: calls.append(a) or {"test_accuracy": 0.0})
    again = ablate.run_grid(variants, [0, 1], TINY, out, log=lambda _: None)
    assert calls == [] and [r["test_accuracy"] for r in again] == [r["test_accuracy"] for r in results]
    # A deleted run (as if the session died before its JSON was written) is trained again, alone.
    (out / ablate.RUNS_DIR / results[0]["variant"] / "seed1.json").unlink()
    monkeypatch.setattr(ablate, "write_outputs", lambda *a, **k: [])
    ablate.run_grid(variants, [0, 1], TINY, out, log=lambda _: None)
    assert len(calls) == 1 and calls[0][1] == 1


def test_position_similarity_against_a_loop_and_the_heat_maps_of_trained_models(tiny_grid):
    table = torch.randn(6, 8)
    sim = ablate.position_similarity(table, (2, 3))
    for i in range(6):
        for j in range(6):
            expected = torch.dot(table[i], table[j]) / (table[i].norm() * table[j].norm())
            assert sim[i // 3, i % 3, j // 3, j % 3] == pytest.approx(expected.item(), abs=1e-6)
    out, _, results = tiny_grid
    runs = ablate.load_results(out)
    learned = next(r for r in runs if r["options"]["pos_embed"] == "learnable" and r["seed"] == 0)
    rows = ablate.trained_patch_table(learned, out)
    state = torch.load(out / learned["checkpoint"] / "best.pt", weights_only=True)["model"]
    torch.testing.assert_close(rows, state["pos_embed"][0, 1:])  # the class token's row dropped
    fig, path = ablate.plot_position_similarity(runs, out)
    assert path.is_file() and len(fig.axes) >= 4  # 2 trained + 2 fixed tables (+ colour bar)


def test_a_pick_at_the_edge_of_the_grid_says_to_widen_it():
    """Issue 29: a7's tuning picked 1e-2, the end of its grid, and the text did not say so."""
    from vitcourse.analysis.ablate import edge_of_grid

    grid = {"lr": [1e-3, 3e-3, 1e-2]}
    assert "Add 0.03" in edge_of_grid(grid, {"lr": 1e-2}) and "largest" in edge_of_grid(grid, {"lr": 1e-2})
    assert "Add 0.0003" in edge_of_grid(grid, {"lr": 1e-3})
    assert edge_of_grid(grid, {"lr": 3e-3}) is None  # bracketed
    assert "Add 8" in edge_of_grid({"depth": [2, 4, 6]}, {"depth": 6})
    assert edge_of_grid({"act": ["relu", "mish"]}, {"act": "mish"}) is None  # not a numeric axis
