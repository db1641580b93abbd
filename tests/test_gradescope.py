"""The Gradescope bundle: its contract, its contents, and the real run_autograder on every kind of upload.

One bundle per assignment is built per module; each end-to-end test unzips it into a temporary
AUTOGRADER_ROOT and runs the real `run_autograder` with this venv's Python (VITCOURSE_PYTHON).
"""
import io
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from autograder import accuracy, upload
from coursecore.parts import ASSIGNMENT_PARTS, POINTS, parts_for
from coursecore import impl
from coursetools import gradescope
from coursetools.cli import main as cli

MINI = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cifar10-mini"
MINI = MINI if MINI.is_dir() else Path("/work/shared/datasets/cifar10-mini")


@pytest.fixture(scope="module")
def a2_bundle(tmp_path_factory):
    return gradescope.build(tmp_path_factory.mktemp("a2"), "a2_transformer")


@pytest.fixture(scope="module")
def a3_bundle(tmp_path_factory):
    if not MINI.is_dir():
        pytest.skip("no cifar10-mini folder to bundle")
    return gradescope.build(tmp_path_factory.mktemp("a3"), "a3_vit", data_root=MINI)


def run_autograder(bundle, tmp_path, fill, memory_bytes=None) -> dict:
    """Unzip `bundle` as Gradescope does, let `fill(submission_dir)` upload, run run_autograder, read results.
    `memory_bytes` runs it under that much memory (RLIMIT_DATA), as Gradescope's container limits it."""
    root = tmp_path / "autograder"
    (root / "source").mkdir(parents=True)
    (root / "submission").mkdir()
    with zipfile.ZipFile(bundle.path) as archive:
        archive.extractall(root / "source")
    script = root / "source" / "run_autograder"
    script.chmod(0o755)  # zipfile does not restore permissions (Gradescope does: checked in test_contract)
    fill(root / "submission")
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "VITCOURSE_PYTHON": sys.executable}
    prefix = ["prlimit", f"--data={memory_bytes}", "--"] if memory_bytes else []
    done = subprocess.run([*prefix, str(script)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads((root / "results" / "results.json").read_text())


def copy_reference(dest: Path, names=("transformer.py", "ViT.py")):
    dest.mkdir(parents=True, exist_ok=True)
    for src, name in zip(("transformer.py", "ViT.py"), names):
        shutil.copy(impl.solutions_dir() / src, dest / name)


# ------------------------------------------------------------------------------------------- the docs
def test_docs_list_every_assignment_a_bundle_grades_with_its_files_and_points(tmp_path):
    """docs/gradescope.md once listed a1-a3 only (issue 31): its table must be the one derived from the parts.

    The oracle for each row is what a built bundle grades: its gradescope.json (parts, points) and the files
    run_autograder takes from an upload."""
    docs = (Path(__file__).resolve().parents[1] / "docs" / "gradescope.md").read_text()
    assert gradescope.assignments_table() in docs, (
        "docs/gradescope.md: the table of assignments differs from coursetools.gradescope.assignments_table(); "
        "paste its output under 'The assignments a bundle grades'")
    rows = {line.split("|")[1].strip(" `"): line for line in docs.splitlines() if line.startswith("| `a")}
    for assignment in ASSIGNMENT_PARTS:
        config = json.loads(zipfile.ZipFile(gradescope.build(tmp_path / assignment, assignment).path)
                            .read("gradescope.json"))
        assert assignment in rows, f"docs/gradescope.md has no row for {assignment}"
        cells = [c.strip() for c in rows[assignment].split("|")[1:-1]]
        assert cells[1] == ", ".join(f"`{f}`" for f in upload.wanted_files(assignment))
        assert int(cells[2]) == len(config["parts"])
        assert float(cells[3].split()[0]) == sum(config["points"].values())


# ------------------------------------------------------------------------------------------- the zip
def test_contract_at_the_zip_root(a2_bundle):
    with zipfile.ZipFile(a2_bundle.path) as archive:
        infos = {i.filename: i for i in archive.infolist()}
        for script in ("setup.sh", "run_autograder"):
            assert script in infos, f"{script} is not at the zip's root"
            mode = infos[script].external_attr >> 16
            assert stat.S_ISREG(mode) and mode & 0o111 == 0o111, f"{script} is not executable ({oct(mode)})"
            text = archive.read(script).decode()
            assert text.startswith("#!/usr/bin/env bash\n")
            check = subprocess.run(["bash", "-n"], input=text, capture_output=True, text=True)
            assert check.returncode == 0, check.stderr
        config = json.loads(archive.read("gradescope.json"))
        # What the grader needs: the packages, the reference, the pins.
        for needed in ("autograder/grader.py", "autograder/gradescope.py", "autograder/upload.py",
                       "coursecore/parts/__init__.py", "coursecore/impl.py", "data_utils/__init__.py",
                       "solutions/transformer.py", "solutions/ViT.py", "constraints.txt", "pyproject.toml"):
            assert needed in infos, needed
        assert not any("__pycache__" in n or n.startswith("student_src") for n in infos)
    assert config["assignment"] == "a2_transformer"
    assert config["parts"] == list(parts_for("a2_transformer"))
    setup = zipfile.ZipFile(a2_bundle.path).read("setup.sh").decode()
    assert "bubblewrap" in setup and "constraints.txt" in setup


def test_bundle_holds_no_path_of_the_build_machine(a2_bundle, a3_bundle):
    # (not the home folder alone: "/root" is also a word in docstrings, e.g. Colab's /root/.cache)
    machine = {str(impl.REPO_ROOT), str(a2_bundle.path.parent), str(a3_bundle.path.parent), str(MINI), sys.prefix}
    for bundle in (a2_bundle, a3_bundle):
        with zipfile.ZipFile(bundle.path) as archive:
            for name in archive.namelist():
                assert not name.startswith("/") and ".." not in Path(name).parts
                data = archive.read(name)
                for path in machine:
                    assert path.encode() not in data, f"{name} contains the build machine's path {path}"


def test_cli_reports_the_size_and_a3_without_data_says_how_to_add_it(tmp_path, capsys):
    assert cli(["gradescope", "--assignment", "a3_vit", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    size = (tmp_path / "autograder.zip").stat().st_size
    assert f"{size / 1e6:.2f} MB" in out
    assert "--data-root" in out and "no CIFAR test set" in out


def test_a3_bundle_carries_only_the_test_split(a3_bundle):
    names = set(a3_bundle.members)
    assert {"data/cifar-10-batches-py/test_batch", "data/cifar-10-batches-py/batches.meta"} <= names
    assert not any("data_batch" in n for n in names)


# ----------------------------------------------------------------------------- run_autograder, end to end
@pytest.mark.slow  # one real run_autograder: Python + torch twice, then the sandbox
def test_reference_scores_full_and_cannot_read_the_bundle(a2_bundle, tmp_path):
    secret = tmp_path / "autograder" / "source" / "solutions" / "transformer.py"

    def fill(sub):
        copy_reference(sub)
        spy = f"import os as _os\nif _os.path.exists({str(secret)!r}):\n    raise ImportError('read the bundle')\n"
        (sub / "transformer.py").write_text((sub / "transformer.py").read_text() + spy)  # after `from __future__`
    results = run_autograder(a2_bundle, tmp_path, fill)
    if "WITHOUT namespace isolation" in results["output"]:
        pytest.skip("no namespace isolation on this machine: the bundle cannot be hidden")
    assert [t["name"] for t in results["tests"]] == list(parts_for("a2_transformer"))
    assert results["max_score"] == sum(POINTS[p] for p in parts_for("a2_transformer"))
    assert results["score"] == results["max_score"], results
    if os.geteuid() == 0:  # without namespaces too, the unprivileged student user cannot enter the root
        assert (tmp_path / "autograder").stat().st_mode & 0o077 == 0


@pytest.mark.slow  # one real run_autograder: Python + torch twice, then the sandbox
def test_stubs_score_zero(a2_bundle, tmp_path):
    results = run_autograder(a2_bundle, tmp_path, lambda sub: [shutil.copy(impl.stubs_dir() / f, sub / f)
                                                                  for f in ("transformer.py", "ViT.py")])
    assert results["score"] == 0 and results["max_score"] > 0
    assert all("not implemented" in t["output"] for t in results["tests"])


def test_empty_upload_says_what_to_upload(a2_bundle, tmp_path):
    results = run_autograder(a2_bundle, tmp_path, lambda sub: None)
    assert results["score"] == 0 and len(results["tests"]) == len(parts_for("a2_transformer"))
    assert "upload is empty" in results["output"] and "`transformer.py`" in results["output"]


def test_notebook_instead_of_the_files(a2_bundle, tmp_path):
    results = run_autograder(a2_bundle, tmp_path,
                             lambda sub: (sub / "a2_transformer.ipynb").write_text('{"cells": []}'))
    assert results["score"] == 0
    assert "notebook" in results["output"] and "transformer.py" in results["output"]


@pytest.mark.slow  # one real run_autograder: Python + torch twice, then the sandbox
def test_zip_inside_the_upload_three_folders_deep(a2_bundle, tmp_path):
    def fill(sub):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name in ("transformer.py", "ViT.py"):
                archive.write(impl.solutions_dir() / name, f"hw/a2/code/{name}")
            archive.writestr("__MACOSX/hw/a2/code/._transformer.py", "junk")
        (sub / "submission.zip").write_bytes(buffer.getvalue())
    results = run_autograder(a2_bundle, tmp_path, fill)
    assert results["score"] == results["max_score"]
    assert "submission.zip:hw/a2/code/transformer.py" in results["output"]


@pytest.mark.slow  # one real run_autograder: Python + torch twice, then the sandbox
def test_wrong_file_names_are_graded_with_a_note(a2_bundle, tmp_path):
    results = run_autograder(a2_bundle, tmp_path, lambda sub: copy_reference(sub, ("transformer (1).py", "vit.py")))
    assert results["score"] == results["max_score"]
    assert "graded `transformer (1).py` as `transformer.py`" in results["output"]
    assert "name it exactly" in results["output"]


@pytest.mark.slow  # one real run_autograder: Python + torch twice, then the sandbox
def test_a3_grades_the_checkpoint_like_the_notebook(a3_bundle, tmp_path, one_thread):
    import torch.nn.functional as F

    from data_utils import load_dataset
    from vitcourse.training.recipes import default_recipe
    from vitcourse.training.train import evaluate

    splits = load_dataset("digits")
    model_config, _ = default_recipe("digits", "vit")
    model_config = dict(model_config, embed_dim=32, depth=1, num_heads=2)  # small: a few seconds of training
    torch.manual_seed(0)
    model = impl.reference().ViT.ViT(**model_config)
    x = (splits.train_images.float() / 255 - splits.mean[0]) / splits.std[0]  # (B, 1, 8, 8)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(30):
        loss = F.cross_entropy(model(x), splits.train_labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    ckpt = {"model": model.state_dict(), "config": model_config, "data": "digits", "classes": None}
    # The oracle: the notebook's own evaluation of the whole digits test split, then the linear credit.
    acc = evaluate(model, splits.test_images, splits.test_labels, mean=splits.mean, std=splits.std).accuracy

    def fill(sub):
        copy_reference(sub / "upload")
        torch.save(ckpt, sub / "upload" / "vit_checkpoint (1).pt")
    results = run_autograder(a3_bundle, tmp_path, fill)
    test = results["tests"][-1]
    assert test["name"] == accuracy.ACCURACY_PART and test["max_score"] == accuracy.ACCURACY_POINTS
    assert test["score"] == accuracy.credit(acc, "digits") and f"{acc:.1%}" in test["output"]
    assert results["max_score"] == sum(POINTS[p] for p in parts_for("a3_vit")) + accuracy.ACCURACY_POINTS
    assert results["score"] == pytest.approx(sum(POINTS[p] for p in parts_for("a3_vit")) + test["score"])


GRADESCOPE_MEMORY = 2 << 30  # Gradescope's default container: 2 GB


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit (util-linux) to hold the run to 2 GB")
def test_bombs_in_an_upload_get_results_within_gradescopes_memory(a2_bundle, tmp_path):
    """Issue 27, items 3-4: zips that unpack to GiBs and a damaged member, under 2 GB: a results.json that names them."""
    import io

    def zipped(members, method=zipfile.ZIP_DEFLATED):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", method) as archive:
            for name, data in members.items():
                archive.writestr(name, data)
        return buffer.getvalue()

    inner = zipped({"filler.bin": bytes(400 << 20)}, zipfile.ZIP_STORED)  # a 400 MiB zip
    damaged = bytearray(zipped({"ViT.py": (impl.solutions_dir() / "ViT.py").read_bytes()}))
    damaged[60] ^= 0xFF

    def fill(sub):
        (sub / "bombs.zip").write_bytes(zipped({f"part{i}.zip": inner for i in range(5)}))
        (sub / "mine.zip").write_bytes(bytes(damaged))
        shutil.copy(impl.solutions_dir() / "transformer.py", sub / "transformer.py")
    results = run_autograder(a2_bundle, tmp_path, fill, memory_bytes=GRADESCOPE_MEMORY)
    assert results["score"] == sum(POINTS[p] for p in parts_for("a2_transformer"))  # transformer.py graded in full
    assert results["output"].count("was not opened") == 5 and "mine.zip:ViT.py is damaged in your zip" in results["output"]
    assert "not your fault" not in results["output"]


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit (util-linux) to hold the run to 2 GB")
def test_a_checkpoint_bomb_gets_a_zero_and_the_files_name_within_gradescopes_memory(a3_bundle, tmp_path):
    def fill(sub):
        copy_reference(sub)
        path = sub / accuracy.CHECKPOINT
        torch.save({"model": {}, "config": {"embed_dim": 10**12 + 1}, "data": "digits"}, path)
        with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as archive:  # declares 3 GiB, weighs 3 MiB
            with archive.open("vit_checkpoint/data/99", "w", force_zip64=True) as member:
                for _ in range(3 << 10):
                    member.write(bytes(1 << 20))
    results = run_autograder(a3_bundle, tmp_path, fill, memory_bytes=GRADESCOPE_MEMORY)
    test = results["tests"][-1]
    assert test["name"] == accuracy.ACCURACY_PART and test["score"] == 0
    assert test["output"].startswith(accuracy.CHECKPOINT) and "declares" in test["output"]


# ----------------------------------------------------------------------------- pieces, in process
def test_bundled_cifar_test_split_is_what_the_notebook_loads(a3_bundle, tmp_path):
    from data_utils import load_dataset

    with zipfile.ZipFile(a3_bundle.path) as archive:
        archive.extractall(tmp_path)
    images, labels, mean, std = accuracy.held_out_test_set("cifar10", root=tmp_path / "data")
    oracle = load_dataset("cifar10", root=MINI, verify=False, download=False)
    assert torch.equal(images, oracle.test_images)
    assert torch.equal(labels, oracle.test_labels)
    assert (mean, std) == (oracle.mean, oracle.std)
    sub, sub_labels, _, _ = accuracy.held_out_test_set("cifar10", classes=[1, 3], root=tmp_path / "data")
    oracle = load_dataset("cifar10", root=MINI, verify=False, download=False, classes=[1, 3])
    assert torch.equal(sub_labels, oracle.test_labels) and torch.equal(sub, oracle.test_images)


def test_checkpoint_problems_get_a_message(tmp_path):
    vit = impl.reference().ViT.ViT
    missing = accuracy.grade_checkpoint(tmp_path / "none.pt", vit)
    assert missing.score == 0 and "missing" in missing.message
    (tmp_path / "junk.pt").write_text("not a checkpoint")
    assert "not a checkpoint torch.save writes" in accuracy.grade_checkpoint(tmp_path / "junk.pt", vit).message
    config = dict(image_size=32, patch_size=8, in_chans=3, num_classes=10, embed_dim=16, depth=1, num_heads=2)
    state = vit(**config).state_dict()
    torch.save({"model": state, "config": {**config, "embed_dim": 32}, "data": "cifar10"}, tmp_path / "bad.pt")
    assert "does not load" in accuracy.grade_checkpoint(tmp_path / "bad.pt", vit).message
    torch.save({"model": state, "config": config, "data": "cifar10", "classes": None}, tmp_path / "ok.pt")
    staff = accuracy.grade_checkpoint(tmp_path / "ok.pt", vit, data_root=tmp_path / "nowhere")
    assert staff.staff_problem and "--data-root" in staff.message


def test_accuracy_points_and_assignments_match_the_notebooks():
    from coursetools import term

    source = (impl.REPO_ROOT / "course" / "notebooks" / "a3_vit.py").read_text()
    assert f"# %% tests={accuracy.ACCURACY_PART} points={accuracy.ACCURACY_POINTS:g}\n" in source
    assert 'grade_answer("accuracy"' in source  # the notebook uses the shared scoring (answers.py -> grade_checkpoint)
    assigned = term.grades_checkpoint(sorted(p.name for p in (impl.REPO_ROOT / "course" / "source").iterdir()))
    assert tuple(assigned) == accuracy.CHECKPOINT_ASSIGNMENTS


def test_upload_never_follows_links_or_zip_paths(tmp_path):
    up = tmp_path / "up"
    up.mkdir()
    (up / "transformer.py").symlink_to(impl.solutions_dir() / "transformer.py")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../../ViT.py", "x = 1\n")
        archive.writestr("inner.zip", _zip_of({"deep/ViT.py": "y = 2\n"}))
    (up / "outer.zip").write_bytes(buffer.getvalue())
    result = upload.normalise(up, "a1_data_patches", tmp_path / "flat")
    assert "transformer.py" not in result.found  # the link was not followed
    assert result.found["ViT.py"] == "outer.zip:inner.zip:deep/ViT.py"
    assert (tmp_path / "flat" / "ViT.py").read_text() == "y = 2\n"
    assert not (tmp_path / "ViT.py").exists()


def _zip_of(files: dict) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def test_grader_failure_still_writes_results(tmp_path, monkeypatch, capsys):
    from autograder import gradescope as run

    (tmp_path / "source").mkdir()
    (tmp_path / "source" / "gradescope.json").write_text('{"assignment": "a2_transformer"}')
    monkeypatch.setenv(run.ROOT_ENV, str(tmp_path))
    monkeypatch.setattr(run, "grade_upload", lambda base, config: 1 / 0)
    before = signal.getsignal(signal.SIGALRM)
    assert run.main() == 0
    # The time limit's alarm is cancelled on the error path too (it once fired minutes later in another test of the
    # same process), and the previous handler is back.
    assert signal.alarm(0) == 0 and signal.getsignal(signal.SIGALRM) is before
    results = json.loads((tmp_path / "results" / "results.json").read_text())
    assert results["score"] == 0 and "not your fault" in results["output"]
    assert len(results["tests"]) == len(parts_for("a2_transformer"))
    assert "ZeroDivisionError" in capsys.readouterr().out  # the traceback goes to the staff's stdout
