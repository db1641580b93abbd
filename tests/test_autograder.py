"""Autograder: reference and stubs, bad submissions, the bug catalogue, CLI, nbgrader hooks, self-check.

Every submission is graded once, all of them concurrently in a module fixture (the cost is one torch
import per student process), with small timeouts so that the hanging ones stay cheap.
"""
from __future__ import annotations

import json
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from vitcourse.course import selfcheck

from autograder import bugs, cases, grader, sandbox
from autograder.nb import grade_part
from coursecore.parts import POINTS, max_score
from coursecore import impl

LIMITS = sandbox.Limits(startup_timeout=90, import_timeout=8, part_timeout=8, total_timeout=150)
WORKERS = 6  # gradings in flight; each is mostly a waiting subprocess
T_PARTS = [p for p in POINTS if p.startswith("transformer.")]
V_PARTS = [p for p in POINTS if p.startswith("ViT.")]
ALL = set(POINTS)


def _source(name):
    return (impl.solutions_dir() / name).read_text()


def _make(root: Path, name: str, edits=(), prepend=None, drop=(), extra=None) -> Path:
    """A submission folder: the reference with `edits` ((file, old, new)), code prepended, files dropped."""
    folder = root / name
    folder.mkdir(parents=True)
    for filename in sandbox.STUDENT_FILES:
        if filename in drop:
            continue
        text = _source(filename)
        for file, old, new in edits:
            if file == filename:
                assert old in text, f"{name}: {old!r} not in {filename}"
                text = text.replace(old, new)
        if prepend and filename in prepend:  # after `from __future__ ...`, which must come first
            future = "from __future__ import annotations\n"
            text = text.replace(future, future + prepend[filename] + "\n", 1)
        (folder / filename).write_text(text)
    for filename, text in (extra or {}).items():
        (folder / filename).write_text(text)
    return folder


T, V = "transformer.py", "ViT.py"
SOL = str(impl.solutions_dir() / "transformer.py")

# --------------------------------------------------------------------------------- bad submissions
# name -> (how to build it, parts allowed to lose points (None: none), text that must appear in feedback)
BAD = {
    "reference": (dict(), set(), None),
    "syntax_error": (dict(edits=[(T, "class Mlp(nn.Module):", "class Mlp(nn.Module)")]),
                     set(T_PARTS) | {"ViT.model"}, "SyntaxError"),
    "missing_vit": (dict(drop=[V]), set(V_PARTS), "ViT.py is missing"),
    "renamed_class": (dict(edits=[(T, "class Mlp(nn.Module):", "class MLP(nn.Module):")]),
                      {"transformer.Mlp.forward", "transformer.Block.forward", "ViT.model"}, "no `Mlp`"),
    "import_sys_exit": (dict(prepend={T: "import sys\nsys.exit(0)"}), set(T_PARTS) | {"ViT.model"}, "SystemExit"),
    "import_os_exit": (dict(prepend={V: "import os\nos._exit(3)"}), set(V_PARTS), "exit status 3"),
    "import_infinite_loop": (dict(prepend={T: "while True:\n    pass"}), set(T_PARTS) | {"ViT.model"},
                             "did not finish within"),
    "forward_infinite_loop": (dict(edits=[(T, "x = self.drop1(self.act(self.fc1(x)))",
                                           "while True:\n            pass")]),
                              {"transformer.Mlp.forward", "ViT.model"}, "did not finish within"),
    "alloc_10gb": (dict(edits=[(T, "    scores = (q @ k.transpose(-2, -1))",
                                "    torch.ones(10 * 2**30, dtype=torch.uint8)\n    scores = (q @ k.transpose(-2, -1))")]),
                   {"transformer.attention", "transformer.Attention.forward", "ViT.model"}, "alloc"),
    "fork_bomb": (dict(prepend={V: "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"}),
                  set(V_PARTS), "did not finish within"),
    "print_100mb": (dict(prepend={T: "print('x' * 100_000_000)"}), set(), None),
    "monkeypatch_torch": (dict(prepend={T: "import torch\ntorch.allclose = lambda *a, **k: True\n"
                                           "torch.equal = lambda *a, **k: True\n"
                                           "torch.testing.assert_close = lambda *a, **k: None"},
                               edits=[(T, "    return dropped @ v, weights  # (B, h, N, d), (B, h, N, N)",
                                       "    return torch.zeros_like(v), weights")]),
                          {"transformer.attention", "transformer.Attention.forward", "ViT.model"}, "differs"),
    "tensor_subclass": (dict(edits=[(V, "    return x.reshape(B, gh * gw, patch_size * patch_size * C)  # (B, N, P·P·C)",
                                     "    class Sneaky(torch.Tensor):\n        def __eq__(self, other):\n"
                                     "            return True\n"
                                     "    return x.reshape(B, gh * gw, patch_size * patch_size * C).as_subclass(Sneaky)")]),
                        {"ViT.patchify"}, "not a torch.Tensor"),
    "equals_everything": (dict(edits=[(V, "    return emb\n", "    class Eq:\n        def __eq__(self, other):\n"
                                                                "            return True\n    return Eq()\n")]),
                          {"ViT.sincos_1d_embedding", "ViT.model"}, "not a torch.Tensor"),
    "nan_outputs": (dict(edits=[(T, "return self.drop2(self.fc2(x))  # (B, N, D)",
                                 "return self.drop2(self.fc2(x)) * float('nan')")]),
                    {"transformer.Mlp.forward", "ViT.model"}, "NaN"),
    "wrong_dtype": (dict(edits=[(V, "    return emb\n", "    return emb.double()\n")]),
                    {"ViT.sincos_1d_embedding", "ViT.model"}, "dtype float64"),
    "wrong_device": (dict(edits=[(V, "return x.flatten(2).transpose(1, 2)  # (B, N, D)",
                                  "return x.flatten(2).transpose(1, 2).to('meta')")]),
                     {"ViT.PatchEmbed.forward", "ViT.model"}, None),
    "broadcastable_shape": (dict(edits=[(V, "    return x.reshape(B, gh * gw, patch_size * patch_size * C)  # (B, N, P·P·C)",
                                         "    return x.reshape(B, gh * gw, patch_size * patch_size * C)[:, :1]")]),
                            {"ViT.patchify"}, "shape"),
    "reads_solutions": (dict(edits=[(T, "    B, N, _ = x.shape\n        x = x.reshape(B, N, self.num_heads",
                                     f"    B, N, _ = x.shape\n        open({SOL!r}).read()\n"
                                     "        x = x.reshape(B, N, self.num_heads")]),
                        {"transformer.Attention.split_heads", "transformer.Attention.forward", "ViT.model"},
                        "FileNotFoundError"),
    "shipped_files": (dict(extra={"torch.py": "raise SystemExit('fake torch')\n",
                                  "sitecustomize.py": "import os\nos._exit(1)\n",
                                  "conftest.py": "raise SystemExit(1)\n"}), set(), None),
    "warnings": (dict(prepend={T: "import warnings, sys\nwarnings.warn('careful')\nprint('noise', file=sys.stderr)"},
                      edits=[(T, "    weights = scores.softmax(dim=-1)",
                              "    warnings.warn('softmax!')\n    weights = scores.softmax(dim=-1)")]),
                 set(), None),
    "other_layer_order": (dict(edits=[
        (T, "        self.fc1 = nn.Linear(dim, hidden_dim)\n        self.act = get_activation(act)\n"
            "        self.drop1 = nn.Dropout(drop)\n        self.fc2 = nn.Linear(hidden_dim, dim)",
         "        self.fc2 = nn.Linear(hidden_dim, dim)\n        self.drop1 = nn.Dropout(drop)\n"
         "        self.act = get_activation(act)\n        self.fc1 = nn.Linear(dim, hidden_dim)"),
        (T, "    scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])  # (B, h, N, N)",
         "    scores = torch.einsum('bhnd,bhmd->bhnm', q / math.sqrt(q.shape[-1]), k)")]), set(), None),
    "nested_upload": (dict(), set(), None),
}


NEEDS_NAMESPACES = {"reads_solutions"}  # expectations that hold only where Linux namespaces work

# --------------------------------------------------------------------------------- bug catalogue
# (bug id -> file, old, new): each catalogued bug's own mutation of the reference (Bug.mutation: autograder/bugs.py,
# or the `bugs=` of a part's grader region in coursecore/parts/<module>.py).
def _file_of(bug) -> str:
    """The reference file the mutation edits: the bug's module, or for a bug of any part the one holding the text."""
    module = bug.part.split(".", 1)[0]
    if module != "*":
        return f"{module}.py"
    holding = [n for n in (T, V) if bug.mutation[0] in (impl.solutions_dir() / n).read_text()]
    assert len(holding) == 1, (bug.id, holding)
    return holding[0]


MUTATIONS = {b.id: (_file_of(b), *b.mutation) for b in bugs.catalogue() if not b.part.startswith(("finetune.", "cnn."))}
# Bugs graded together: one bug per part in a group (the parts are graded in isolation, with oracle
# sub-layers), so each group costs one grading. Composite parts may lose points for any bug. Derived from the
# catalogue: group i holds the i-th bug of every part, in catalogue order, so a new bug needs no entry here.
BUG_PART = {"dropout_in_eval": "transformer.Mlp.forward", "inplace": "transformer.Block.forward"}
COMPOSITES = {"transformer.Attention.forward", "ViT.model"}


def _bug_part(bug_id):
    return BUG_PART.get(bug_id) or bugs.by_id(bug_id).part


def _groups() -> list[list[str]]:
    rank, groups = {}, []
    for bug in bugs.catalogue():
        if bug.id in MUTATIONS:
            part = _bug_part(bug.id)
            rank[part] = rank.get(part, -1) + 1
            groups += [[] for _ in range(rank[part] + 1 - len(groups))]
            groups[rank[part]].append(bug.id)
    return groups


GROUPS = _groups()


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    root = tmp_path_factory.mktemp("submissions")
    jobs = {}
    for name, (spec, _, _) in BAD.items():
        jobs[name] = _make(root, name, **spec)
    nested = root / "nested_upload"
    (nested / "upload" / "src").mkdir(parents=True)
    for f in sandbox.STUDENT_FILES:
        (nested / f).rename(nested / "upload" / "src" / f)
    for i, group in enumerate(GROUPS):
        edits = [MUTATIONS[b] for b in group]
        jobs[f"group{i}"] = _make(root, f"group{i}", edits=edits)
    jobs["stubs"] = root / "stubs"
    jobs["stubs"].mkdir()
    for f in sandbox.STUDENT_FILES:
        (jobs["stubs"] / f).write_text((impl.stubs_dir() / f).read_text())
    cases.graded_cases(str(impl.solutions_dir().resolve()))  # the reference outputs, built once
    with ThreadPoolExecutor(WORKERS) as pool:
        futures = {name: pool.submit(grader.grade, folder, None, LIMITS) for name, folder in jobs.items()}
        return {name: f.result() for name, f in futures.items()}


def test_catalogue_mutations_cover_every_bug():
    # finetune.py's bugs (assignment 6) have their mutants in tests/test_finetune_grading.py, cnn.py's
    # (assignment 7) in tests/test_cnn_grading.py.
    assert all(b.mutation for b in bugs.catalogue()), [b.id for b in bugs.catalogue() if not b.mutation]
    assert sorted(b for g in GROUPS for b in g) == sorted(MUTATIONS)
    for group in GROUPS:
        own = [_bug_part(b) for b in group]
        assert len(own) == len(set(own)), f"two bugs of one part in a group: {group}"


def test_reference_gets_full_marks_and_stubs_get_zero(reports):
    ref = reports["reference"]
    assert ref.score == ref.max_score == max_score(), ref.table()
    stubs = reports["stubs"]
    assert stubs.score == 0
    assert all("not implemented yet" in p.feedback() for p in stubs.parts)


@pytest.mark.parametrize("name", list(BAD))
def test_bad_submission_scores_and_messages(reports, name):
    if name in NEEDS_NAMESPACES and not sandbox.isolation()[0]:
        pytest.skip("no Linux namespaces here: files outside the submission are not hidden")
    _, losing, text = BAD[name]
    report = reports[name]
    for part in report.parts:
        if part.part not in losing:
            assert part.score == part.max_score, f"{name}: {part.part} lost points\n{report.table()}"
    lost = {p.part for p in report.parts if p.score < p.max_score}
    own = {p for p in losing if p not in COMPOSITES} or losing
    assert own <= lost, report.table()
    if text:
        assert any(text in p.feedback() for p in report.parts if p.part in losing), report.table()
    assert "BEGIN SOLUTION" not in report.table() and "def attention" not in report.table()


@pytest.mark.parametrize("group", range(len(GROUPS)))
def test_each_catalogued_bug_gets_its_hint_and_only_its_part_loses(reports, group):
    report = reports[f"group{group}"]
    own = {_bug_part(b) for b in GROUPS[group]}
    for part in report.parts:
        if part.part not in own | COMPOSITES:
            assert part.score == part.max_score, f"{part.part} lost points\n{report.table()}"
    for bug_id in GROUPS[group]:
        part = report.part(_bug_part(bug_id))
        assert part.score < part.max_score, f"{bug_id} was not caught\n{report.table()}"
        assert bugs.by_id(bug_id).hint in part.hints, f"{bug_id}: hints were {part.hints}"


def test_scores_are_deterministic(reports, tmp_path):
    again = grader.grade(_make(tmp_path, "again", edits=[MUTATIONS[b] for b in GROUPS[0]]), limits=LIMITS)
    first = reports["group0"]
    assert [(p.part, p.score) for p in again.parts] == [(p.part, p.score) for p in first.parts]


def test_solutions_and_other_submissions_are_not_reachable(reports):
    if not sandbox.isolation()[0]:
        pytest.skip("no Linux namespaces here: files outside the submission are not hidden")
    feedback = reports["reads_solutions"].part("transformer.Attention.split_heads").feedback()
    assert "FileNotFoundError" in feedback or "Permission" in feedback


def test_no_network_no_environment_no_other_students(tmp_path, monkeypatch):
    """Each leak would make one part wrong; with the sandbox none of them happens."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    monkeypatch.setenv("GRADER_TEST_SECRET", "hunter2")
    other = tmp_path / "other_student"
    other.mkdir()
    (other / "ViT.py").write_text("# another student's work\n")
    probe = (
        "import os, socket\n"
        "def _leaks():\n"
        "    found = []\n"
        "    try:\n"
        f"        socket.create_connection(('127.0.0.1', {port}), timeout=1).close()\n"
        "        found.append('network')\n"
        "    except OSError:\n"
        "        pass\n"
        "    if 'GRADER_TEST_SECRET' in os.environ:\n"
        "        found.append('environment')\n"
        f"    if os.path.exists({str(other / 'ViT.py')!r}):\n"
        "        found.append('other student')\n"
        "    return found\n"
        "LEAKS = _leaks()\n")
    sub = _make(tmp_path, "snoop", prepend={V: probe},
                edits=[(V, "    return emb\n", "    return emb + len(LEAKS)\n")])
    try:
        report = grader.grade(sub, only=["ViT.sincos_1d_embedding"], limits=LIMITS)
    finally:
        listener.close()
    prefix, _ = sandbox.isolation()
    if not prefix:
        pytest.skip("no Linux namespaces here: network and file isolation are not available")
    assert report.score == report.max_score, report.table()


def test_gradescope_json_and_cli(tmp_path):
    if not sandbox.isolation()[0]:
        pytest.skip("no Linux namespaces here: the results folder cannot be hidden from the student")
    out = tmp_path / "out" / "results.json"
    out.parent.mkdir()
    out.write_text("{}")  # a results file from an earlier run: the student tries to overwrite it
    attack = (f"try:\n    open({str(out)!r}, 'w').write('hacked')\n    WROTE = 1\n"
              "except OSError:\n    WROTE = 0\n")
    sub = _make(tmp_path, "cli", prepend={V: attack}, edits=[(V, "    return x.reshape(B, gh * gw, patch_size * patch_size * C)  # (B, N, P·P·C)",
                                                          "    return x.reshape(B, gh * gw, patch_size * patch_size * C) + WROTE")])
    done = subprocess.run([sys.executable, "-m", "autograder", "grade", str(sub), "--json", str(out),
                           "--only", "ViT.patchify", "--only", "transformer.attention"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    assert data["score"] == data["max_score"] == POINTS["ViT.patchify"] + POINTS["transformer.attention"]
    assert {t["name"] for t in data["tests"]} == {"ViT.patchify", "transformer.attention"}
    assert all({"name", "score", "max_score", "output", "visibility"} <= set(t) for t in data["tests"])
    missing = subprocess.run([sys.executable, "-m", "autograder", "grade", str(tmp_path / "nope")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode != 0 and "does not exist" in missing.stderr


def test_grade_part_prints_a_number_and_no_stderr(tmp_path, capsys):
    sub = _make(tmp_path, "nb", edits=[MUTATIONS["patchify.channel_first"]])
    score = grade_part("ViT.patchify", sub, limits=LIMITS)
    captured = capsys.readouterr()
    assert 0 <= float(score) < POINTS["ViT.patchify"] and captured.err == ""
    assert repr(score) == repr(float(score))  # plain number: what nbgrader parses as partial credit
    assert "Hint" in captured.out
    assert repr(grade_part("ViT.unpatchify", sub, limits=LIMITS)) == repr(float(POINTS["ViT.unpatchify"]))
    assert repr(grade_part("no.such.part", sub)) == "0.0"


def test_selfcheck_reference_stubs_and_a_bug(tmp_path):
    assert all(r.status == selfcheck.OK for r in selfcheck.check_all(impl.solutions_dir()))
    assert all(r.status == selfcheck.TODO for r in selfcheck.check_all(impl.stubs_dir()))
    bug = _make(tmp_path, "bug", edits=[MUTATIONS["attention.no_scale"], MUTATIONS["patchify.column_major"]])
    status = {r.part: r.status for r in selfcheck.check_all(bug)}
    assert status["transformer.attention"] == status["ViT.patchify"] == selfcheck.WRONG
    assert status["ViT.unpatchify"] == selfcheck.OK


def test_selfcheck_does_not_touch_the_reference():
    """It ships to students (vitcourse/): no reference, nothing of the grader (the layers: tests/test_layers.py)."""
    text = Path(selfcheck.__file__).read_text()
    assert Path(selfcheck.__file__).parent.parent.name == "vitcourse"
    assert "solutions" not in text.replace("solutions_dir", "")
    assert "import autograder" not in text and "from autograder" not in text


def test_hidden_paths_cover_siblings_of_what_the_runner_needs(tmp_path):
    for folder in ("solutions", ".venv/lib", "course"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "data.txt").write_text("x")
    hidden = sandbox.hidden_paths([tmp_path], keep=[tmp_path / ".venv" / "lib"])
    assert set(hidden) == {str(tmp_path / n) for n in ("solutions", "course", "data.txt")}


def test_without_namespaces_grading_still_works_and_says_so(tmp_path):
    sub = _make(tmp_path, "plain")
    report = grader.grade(sub, only=["ViT.patchify"], limits=LIMITS, use_namespaces=False)
    assert report.score == report.max_score
    assert any("WITHOUT namespace isolation" in note for note in report.notes)


def test_assignment_grades_only_its_parts_out_of_its_own_maximum(tmp_path):
    from autograder import __main__ as cli
    from coursecore.parts import ASSIGNMENT_PARTS, max_score

    assert sorted(p for parts in ASSIGNMENT_PARTS.values() for p in parts) == sorted(POINTS)
    out = tmp_path / "results.json"
    assert cli.main(["grade", str(impl.solutions_dir()), "--assignment", "a2_transformer", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert [t["name"] for t in results["tests"]] == list(ASSIGNMENT_PARTS["a2_transformer"])
    assert results["score"] == results["max_score"] == max_score(ASSIGNMENT_PARTS["a2_transformer"])
