"""The demo's term: the course's whole life in a scratch folder: release, a simulated class, collect, autograde, feedback, export.

This is what an instructor and a TA do in a term, run end to end and offline:

1. copy the course (nbgrader_config.py and source notebooks) into a scratch folder, never touching `course/`;
2. release: `nbgrader generate_assignment` + stubs + library + zip (`coursetools.release`);
3. a class hands in zips: students who copied the reference, who left the stubs, who have a bug, who deleted
   a test cell, whose cells ran out of order (`STUDENTS`);
4. `nbgrader zip_collect`, a timestamped backup of `gradebook.db`, `nbgrader autograde`,
   `nbgrader generate_feedback`, `nbgrader export` (grades CSV);
5. compare every autograded score with what the student's work deserves, computed from the notebook's
   points (a student who broke `attention` loses exactly the points of the attention test cell).

`vitcourse demo` runs it and prints the class's grade table; the lifecycle tests run it on two assignments.
"""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import nbformat

from coursecore import course_root, deadlines, impl
from coursecore.registry import files_for
from coursetools import release
from vitcourse.course import handin
from coursetools.grading import (LifecycleError, autograde, export_grades,
                                  read_scores)

SOLUTION_BEGIN, SOLUTION_END = "### BEGIN SOLUTION", "### END SOLUTION"
SCORE_TOLERANCE = 1e-6
SCORE_DIGITS = 2  # the grade table shows points to two decimals (partial credit by accuracy is continuous)
# Test cells whose points depend on how well a handed-in model was trained (partial credit by accuracy):
# a correct submission must earn some of their points, not necessarily all.
DATA_DEPENDENT = {"test_accuracy"}  # scores are sums of a few points; compare them exactly up to float noise



# ---- course folder and notebooks --------------------------------------------------------------------------

def make_course(scratch: Path, assignments: Optional[list[str]] = None, course_dir: Optional[Path] = None) -> Path:
    """A fresh course folder in `scratch/course` with the config and the chosen source notebooks of `course_dir`
    (default: the active course, `course_root.current()`)."""
    course_dir = Path(course_dir or course_root.current().course)
    dest = Path(scratch) / "course"
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "source").mkdir(parents=True)
    shutil.copy2(course_dir / "nbgrader_config.py", dest / "nbgrader_config.py")
    chosen = list(assignments or release.source_assignments(course_dir))
    if (course_dir / deadlines.FILE).is_file():  # the due dates and late policy travel with the course ...
        text = (course_dir / deadlines.FILE).read_text(encoding="utf-8")
        # ... its chosen assignments' sections only: a section of an assignment the course lacks is a mistake
        (dest / deadlines.FILE).write_text(_sections_of(text, {"default", *chosen}), encoding="utf-8")
    for name in chosen:
        shutil.copytree(course_dir / "source" / name, dest / "source" / name)
    return dest


def _sections_of(toml_text: str, keep: set) -> str:
    """A TOML file's text with only the top-level tables named in `keep` (and whatever precedes the first table)."""
    out, keeping = [], True
    for line in toml_text.splitlines(keepends=True):
        header = re.match(r"^\s*\[([^\[\]]+)\]", line)
        if header:
            keeping = header[1].strip().strip('"') in keep
        if keeping:
            out.append(line)
    return "".join(out)


def cells_by_id(nb) -> dict:
    """nbgrader cells of a notebook by grade_id."""
    return {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells if "nbgrader" in c.metadata and "grade_id" in c.metadata["nbgrader"]}


def test_points(nb) -> dict[str, float]:
    """Points of every autograded test cell (grade and not solution), by grade_id."""
    return {gid: float(c.metadata["nbgrader"]["points"]) for gid, c in cells_by_id(nb).items()
            if c.metadata["nbgrader"].get("grade") and not c.metadata["nbgrader"].get("solution")}


def answer_points(nb) -> dict[str, float]:
    """Points of the manually graded cells (grade and solution), by grade_id."""
    return {gid: float(c.metadata["nbgrader"]["points"]) for gid, c in cells_by_id(nb).items()
            if c.metadata["nbgrader"].get("grade") and c.metadata["nbgrader"].get("solution")}


def fill_solutions(release_nb, source_nb, answers: bool = True) -> None:
    """Give a release notebook the source's solution cells (what a student who solved everything writes)."""
    source_cells = cells_by_id(source_nb)
    for gid, cell in cells_by_id(release_nb).items():
        meta = cell.metadata["nbgrader"]
        if meta.get("solution") and (answers or cell.cell_type == "code"):
            src = source_cells[gid].source
            cell.source = "\n".join(l for l in src.splitlines() if l.strip() not in (SOLUTION_BEGIN, SOLUTION_END))


# ---- the simulated class --------------------------------------------------------------------------------

@dataclass
class Bug:
    """A plausible student mistake: a text edit of the reference, and the test cells it fails."""

    file: str  # a student module: transformer.py, ViT.py or finetune.py
    pattern: str  # regular expression found in the reference
    replacement: str
    fails: tuple[str, ...]  # grade_ids of the test cells that must lose their points

    def apply(self, folder: Path) -> None:
        path = folder / self.file
        if not path.exists():  # another assignment's file: this assignment ships other student modules
            return
        text = path.read_text(encoding="utf-8")
        new, count = re.subn(self.pattern, self.replacement, text, count=1)
        if count != 1:
            raise LifecycleError(f"bug pattern {self.pattern!r} not found in {path}: the reference changed; update coursetools/term.py BUGS")
        path.write_text(new, encoding="utf-8")


# A bug costs the points of its own part only: the composites (Attention.forward, ViT.model) are graded with
# built-in stand-ins for the student parts that already failed on their own (docs/grading.md, issue 9).
BUGS = {
    # Forgets the 1/sqrt(d) scale: softmax too sharp, differs from torch's attention.
    "no_scale": Bug("transformer.py", r"\s*/\s*math\.sqrt\(q\.shape\[-1\]\)", "", ("test_attention",)),
    # Reshapes to (B, h, N, d) directly: heads get interleaved tokens instead of a block of features.
    "split_no_transpose": Bug("transformer.py", r"x = x\.reshape\(B, N, self\.num_heads, self\.head_dim\)[^\n]*\n(\s*)return x\.transpose\(1, 2\)",
                              r"return x.reshape(B, self.num_heads, N, self.head_dim)",
                              # (not test_accuracy: the grader evaluates the handed-in checkpoint in the
                              # reference ViT, outside the kernel, as on Gradescope; the bug costs points here)
                              ("test_split_heads",)),
    # Patches column by column.
    "patch_order": Bug("ViT.py", r"x\.permute\(0, 2, 4, 3, 5, 1\)", "x.permute(0, 4, 2, 3, 5, 1)", ("test_patchify",)),
    # Rollout multiplied in the wrong order: the first layer acts last.
    "rollout_order": Bug("finetune.py", r"rollout = a @ rollout", "rollout = rollout @ a", ("test_attention_rollout",)),
    # Freezes each child module: cls_token and pos_embed, which sit on the model itself, keep learning.
    "root_params": Bug("finetune.py", r"model\.requires_grad_\(False\)\n",
                       "for child in model.children():\n        child.requires_grad_(False)\n", ("test_set_trainable",)),
    # Batch norm's running variance updated with the biased variance (divided by n, not n - 1).
    "bn_biased_running_var": Bug("cnn.py", r"momentum \* var\.detach\(\) \* \(n / \(n - 1\)\)", "momentum * var.detach()",
                                 ("test_batch_norm",)),
    # The fold forgets the convolution's own bias (right only for a conv without one).
    "fold_no_conv_bias": Bug("cnn.py", r"conv_bias = conv\.bias if conv\.bias is not None else ",
                             "conv_bias = ", ("test_fold_conv_bn",)),
    # The two heads read each other's token: head the distillation token, head_dist the class token.
    "deit_token_swap": Bug("deit.py", r"self\.head\(x\[:, 0\]\), self\.head_dist\(x\[:, 1\]\)",
                           "self.head(x[:, 1]), self.head_dist(x[:, 0])", ("test_distilled_vit",)),
    # Soft distillation without the T² factor: the teacher's gradient shrinks with the temperature.
    "soft_no_t_squared": Bug("deit.py", r"log_target=True\) \* \(T \* T\)", "log_target=True)",
                             ("test_soft_distillation",)),
}


@dataclass
class Student:
    """One simulated student and what they hand in."""

    id: str
    story: str  # one line for the grade table
    code: str = "reference"  # 'reference' (solved everything) or 'stubs' (touched nothing)
    bugs: tuple[str, ...] = ()  # keys of BUGS applied to the reference
    answers: bool = True  # fills the notebook's solution cells
    delete_cells: tuple[str, ...] = ()  # grade_ids of test cells deleted from the notebook
    out_of_order: bool = False  # a notebook answer defined below its test, executed out of order


STUDENTS = (
    Student("ada", "solved everything"),
    Student("ben", "handed in the untouched release", code="stubs", answers=False),
    Student("cy", "forgot the 1/sqrt(d) scale; patches column by column; rollout in the wrong order; BN's running "
            "variance biased; the DeiT heads read each other's token", bugs=("no_scale", "patch_order", "rollout_order",
                                                          "bn_biased_running_var", "deit_token_swap")),
    Student("dee", "split heads without the transpose; froze the children but not cls_token / pos_embed; forgot the "
            "conv bias in the fold; soft distillation without T²",
            bugs=("split_no_transpose", "root_params", "fold_no_conv_bias", "soft_no_t_squared")),
    Student("eli", "deleted a test cell (nbgrader adds it back)", delete_cells=("test_mlp", "test_patchify")),
    Student("fay", "ran cells out of order: an answer defined below its test", out_of_order=True),
)


def _make_out_of_order(nb) -> list[str]:
    """Move each numeric answer below the last cell and scramble the execution counts; return moved ids."""
    moved = []
    for gid, cell in list(cells_by_id(nb).items()):
        meta = cell.metadata["nbgrader"]
        if meta.get("solution") and not meta.get("grade") and cell.cell_type == "code":
            # The student answered in a scratch cell at the bottom (run by hand before the test).
            scratch = nbformat.v4.new_code_cell(cell.source)
            nb.cells.append(scratch)
            cell.source = "# moved my answer to the end of the notebook"
            moved.append(gid)
    counts = list(range(len(nb.cells), 0, -1))
    for cell, count in zip(nb.cells, counts):
        if cell.cell_type == "code":
            cell.execution_count = count
    return moved


def expected_losses(student: Student, assignment: str, release_nb, course_dir: Path) -> set[str]:
    """The test cells a student's submission must fail: everything for stubs, bugs' cells, misplaced answers."""
    tests = test_points(release_nb)
    if student.code == "stubs":
        return set(tests)
    lost = {gid for bug in student.bugs for gid in BUGS[bug].fails if gid in tests}
    if student.out_of_order:
        # A test of a numeric answer runs before the (moved) answer when nbgrader executes top to bottom.
        source_nb = nbformat.read(course_dir / "source" / assignment / f"{assignment}.ipynb", as_version=4)
        for moved in _answer_tests(source_nb):
            lost |= {moved} & set(tests)
    return lost


def _answer_tests(source_nb) -> set[str]:
    """Test cells that read a variable defined in a notebook solution cell (numeric answers)."""
    names = set()
    for gid, cell in cells_by_id(source_nb).items():
        meta = cell.metadata["nbgrader"]
        if meta.get("solution") and not meta.get("grade") and cell.cell_type == "code":
            names |= set(re.findall(r"^([A-Z][A-Z0-9_]*)\s*=", cell.source, flags=re.M))
    return {gid for gid, cell in cells_by_id(source_nb).items()
            if gid in test_points(source_nb) and any(re.search(rf"\b{n}\b", cell.source) for n in names)}


def make_submission(student: Student, assignment: str, course_dir: Path, work: Path,
                    extra_files: Optional[dict[str, Path]] = None) -> Path:
    """Write `<work>/<student>/<assignment>/` and zip it as the LMS hands it to the TA; return the zip."""
    release_dir = course_dir / "release" / assignment
    folder = work / student.id / assignment
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(release_dir, folder)
    if student.code == "reference":
        for name in files_for(assignment):
            shutil.copy2(impl.solutions_dir() / name, folder / name)
        for bug in student.bugs:
            BUGS[bug].apply(folder)
        for name, src in (extra_files or {}).items():
            shutil.copy2(src, folder / name)  # e.g. the trained checkpoint assignment 3 grades
    nb_path = folder / f"{assignment}.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    if student.answers:
        source_nb = nbformat.read(course_dir / "source" / assignment / f"{assignment}.ipynb", as_version=4)
        fill_solutions(nb, source_nb)
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") not in student.delete_cells]
    if student.out_of_order:
        _make_out_of_order(nb)
    nbformat.write(nb, nb_path)
    # The zip the notebook's hand-in cell writes (vitcourse/course/handin.py), as the LMS hands it to the TA.
    archive = course_dir / "downloaded" / assignment / "archive"
    archive.mkdir(parents=True, exist_ok=True)
    return handin.make_handin(student.id, assignment, folder, json.loads(nb_path.read_text(encoding="utf-8")),
                              out_dir=archive).path


# ---- the whole term -------------------------------------------------------------------------------------

@dataclass
class TermResult:
    """What the simulated term produced, for the demo's table and the lifecycle tests."""

    course_dir: Path
    assignments: list[str]
    students: tuple[Student, ...]
    scores: dict[str, dict[str, dict]] = field(default_factory=dict)  # assignment -> student -> scores
    points: dict[str, dict[str, float]] = field(default_factory=dict)  # assignment -> test cell -> points
    lost: dict[str, dict[str, set]] = field(default_factory=dict)  # assignment -> student -> cells to lose
    backups: list[Path] = field(default_factory=list)
    grades_csv: Optional[Path] = None
    autograde_logs: dict[str, list[str]] = field(default_factory=dict)  # assignment -> what autograde printed

    def autograded(self, assignment: str, student: str) -> float:
        return sum(self.scores[assignment][student]["cells"].values())

    def max_auto(self, assignment: str) -> float:
        return sum(self.points[assignment].values())

    def problems(self, assignment: str, student: Student) -> list[str]:
        """How a student's autograded cells differ from what their work deserves (empty: as expected).

        Untouched stubs earn 0 everywhere; a cell the student's mistake touches earns less than its
        points (the grader may give partial credit); every other cell earns all its points.
        """
        got = self.scores[assignment][student.id]["cells"]
        out = []
        for gid, points in self.points[assignment].items():
            score = got.get(gid)
            if score is None:
                out.append(f"{gid}: not graded")
            elif student.code == "stubs" and score > SCORE_TOLERANCE:
                out.append(f"{gid}: {score:g} for untouched stubs, expected 0")
            elif student.code != "stubs" and gid in self.lost[assignment][student.id] and score >= points - SCORE_TOLERANCE:
                out.append(f"{gid}: full {score:g}/{points:g} although the submission is wrong there")
            elif student.code != "stubs" and gid in DATA_DEPENDENT and gid not in self.lost[assignment][student.id]:
                if score <= SCORE_TOLERANCE:
                    out.append(f"{gid}: 0/{points:g} for a correctly trained model")
            elif student.code != "stubs" and gid not in self.lost[assignment][student.id] and abs(score - points) > SCORE_TOLERANCE:
                out.append(f"{gid}: {score:g}/{points:g}, expected full points")
        return out

    def mismatches(self) -> list[str]:
        """Every (assignment, student) whose autograded cells differ from what their work deserves."""
        return [f"{a}/{s.id} ({s.story}): " + "; ".join(self.problems(a, s))
                for a in self.assignments for s in self.students if self.problems(a, s)]

    def feedback_html(self, assignment: str, student: str) -> Path:
        return self.course_dir / "feedback" / student / assignment / f"{assignment}.html"

    def table(self) -> str:
        """The class's grade table: autograded points per assignment (+ points awaiting a TA), checked."""
        width = max(24, *(len(a) + 2 for a in self.assignments))
        head = f"{'student':<8}" + "".join(f"{a:>{width}}" for a in self.assignments) + "   story"
        rows = [head, "-" * len(head)]
        for s in self.students:
            cells = []
            for a in self.assignments:
                pending = self.scores[a][s.id]["pending"]
                mark = "ok" if not self.problems(a, s) else "UNEXPECTED"
                score = round(self.autograded(a, s.id), SCORE_DIGITS)
                cells.append(f"{score:g}/{self.max_auto(a):g}" + (f" +{pending:g}TA" if pending else "") + f" {mark}")
            rows.append(f"{s.id:<8}" + "".join(f"{c:>{width}}" for c in cells) + f"   {s.story}")
        return "\n".join(rows)


def run_term(scratch: Path, assignments: Optional[list[str]] = None, students=STUDENTS, jobs: int = 1,
             extra_files: Optional[dict[str, dict[str, Path]]] = None, log=print) -> TermResult:
    """Release, hand in, collect, autograde, feed back and export for a simulated class, in `scratch`."""
    scratch = Path(scratch)
    course_dir = make_course(scratch, assignments)
    names = release.source_assignments(course_dir)
    log(f"course in {course_dir}: {', '.join(names)}")
    release.release(course_dir, names, log=lambda m: log(f"  {m}"))
    result = TermResult(course_dir, names, tuple(students))
    for a in names:
        release_nb = nbformat.read(course_dir / "release" / a / f"{a}.ipynb", as_version=4)
        result.points[a] = test_points(release_nb)
        result.lost[a] = {}
        for s in students:
            make_submission(s, a, course_dir, scratch / "students", (extra_files or {}).get(a))
            result.lost[a][s.id] = expected_losses(s, a, release_nb, course_dir)
        log(f"{a}: {len(students)} submissions handed in; collecting and autograding")
        result.backups.append(autograde(course_dir, a, [s.id for s in students], jobs=jobs, log=log,
                                        outputs=result.autograde_logs.setdefault(a, [])).backup)
        result.scores[a] = read_scores(course_dir, a)
    result.grades_csv = export_grades(course_dir)
    return result


# ---- the reference checkpoint a good student hands in -------------------------------------------------------

VIT_CHECKPOINT = "vit_checkpoint.pt"  # the file assignment 3 writes and grades (see course/notebooks/a3_vit.py)
CHECKPOINT_DATA = "digits"  # offline: the demo's class trains on the embedded digits


def grades_checkpoint(assignments: list[str], course_dir: Optional[Path] = None) -> list[str]:
    """The assignments whose notebook grades a handed-in VIT_CHECKPOINT."""
    course_dir = Path(course_dir or course_root.current().course)
    return [a for a in assignments
            if VIT_CHECKPOINT in (course_dir / "source" / a / f"{a}.ipynb").read_text(encoding="utf-8")]


def train_reference_checkpoint(path: Path, epochs: Optional[int] = None, seed: int = 0, log=print) -> dict:
    """Train the reference ViT with the course's digits recipe and save it as assignment 3 does.

    Returns {'parameters', 'test_accuracy', 'seconds', 'path'}. This is the checkpoint the simulated
    students who solved assignment 3 hand in; its accuracy is what the hidden test re-measures.
    """
    import dataclasses
    import time

    import torch

    from data_utils import load_dataset
    from vitcourse.analysis.complexity import count_parameters
    from vitcourse.training.recipes import default_recipe
    from vitcourse.training.train import evaluate, train

    splits = load_dataset(CHECKPOINT_DATA, seed=seed)
    model_config, cfg = default_recipe(CHECKPOINT_DATA, "vit")
    cfg = dataclasses.replace(cfg, progress=False, seed=seed, **({"epochs": epochs} if epochs else {}))
    torch.manual_seed(seed)
    model = impl.reference().ViT.ViT(**model_config)
    params = count_parameters(model.config)["total"]
    log(f"reference ViT on {CHECKPOINT_DATA}: {params:,} parameters, {model.config.num_tokens} tokens per image, "
        f"{cfg.epochs} epochs")
    start = time.perf_counter()
    train(model, splits, cfg)
    seconds = time.perf_counter() - start
    acc = evaluate(model, splits.test_images, splits.test_labels, mean=splits.mean, std=splits.std).accuracy
    log(f"test accuracy {acc:.1%} after {cfg.epochs} epochs in {seconds:.0f} s")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.cpu().state_dict(), "config": model_config, "data": CHECKPOINT_DATA, "classes": None,
                "mean": splits.mean, "std": splits.std}, path)
    return {"parameters": params, "test_accuracy": acc, "seconds": seconds, "path": path}
