"""The student release: `nbgrader generate_assignment` plus everything a student needs, and a leak check.

Per assignment, `release/<assignment>/` gets
    * the release notebook (solutions cleared, hidden tests removed, by nbgrader);
    * `transformer.py`, `ViT.py`: the generated stubs from `student_src/` (never `solutions/`);
    * `data_utils/` and the student-facing part of `vitcourse/` (setup cell, visible checks, trainer, plots);
and `release/<assignment>.zip` holds that folder, ready to unzip into Google Drive (`MyDrive/vitcourse/`).

`find_leaks` proves that nothing hidden is in a release: no line of a solution region (of `solutions/*.py`
or of a source notebook), of a hidden test or of a mark scheme, and no copy of a `solutions/` file.
A release with a leak is refused.
"""
from __future__ import annotations

import ast
import hashlib
import os
import re
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

import nbformat

from coursecore import course_root, impl, settings
from coursecore.course_root import STUDENT_PACKAGES
from coursecore.parts.part import GRADER_BEGIN, strip_grader
from coursecore.registry import files_for
from coursetools.stubs import BEGIN, END, STUB_FILES

# The package's own course, for library callers and tests only: commands act on course_root.resolve().
COURSE_DIR = course_root.PACKAGE_ROOT / course_root.COURSE
HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
MARKERS = (BEGIN, END, HIDDEN_BEGIN, HIDDEN_END)
# Shorter lines ("return x", "else:") occur in any Python file; a leak is a line at least this long.
MIN_LEAK_CHARS = 12
# What ships to students is a layer of its own, by folder (coursecore/__init__.py): these packages, whole.
LIBRARY_PACKAGES = STUDENT_PACKAGES
SKIP_NAMES = ("__pycache__", ".ipynb_checkpoints", ".DS_Store")
TEXT_SUFFIXES = (".py", ".ipynb", ".md", ".txt", ".json", ".csv", ".toml", ".cfg", ".yml", ".yaml", ".html")


class ReleaseError(RuntimeError):
    """A release that could not be generated, or that would leak hidden material."""


def nbgrader_env() -> dict:
    """Environment for nbgrader subprocesses: the venv's bin on PATH (nbgrader runs `alembic` from it)."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def nbgrader(course_dir: Path, *args: str, check: bool = True, threads: Optional[int] = None) -> subprocess.CompletedProcess:
    """Run `nbgrader <args>` in `course_dir` (where nbgrader_config.py is); raise with its log on failure.

    `threads` caps the intra-op threads of the kernels it starts: with several nbgrader processes side by
    side, torch's default of one thread per core oversubscribes the CPU and every notebook slows down.
    """
    cmd = [sys.executable, "-m", "nbgrader", *args]
    env = nbgrader_env()
    if threads:
        env.update({var: str(threads) for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")})
    proc = subprocess.run(cmd, cwd=course_dir, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise ReleaseError(f"`nbgrader {' '.join(args)}` failed in {course_dir} (exit {proc.returncode}):\n"
                           f"{_failure_excerpt(proc.stdout + proc.stderr)}")
    return proc


def _failure_excerpt(log: str, head: int = 3000, tail: int = 3000) -> str:
    """What an nbgrader log says went wrong: its first traceback and the log's end.

    nbgrader logs a student's traceback where that student was graded and only names the student again at
    the end, so for a class the end alone misses the cause.
    """
    first = log.find("Traceback")
    if first < 0 or len(log) - first <= head + tail:
        return log[-(head + tail):]
    # From the start of the line ~400 characters before it: which student, which notebook. The traceback
    # lies more than head + tail from the end, so something is always skipped between the two parts.
    start = max(log.rfind("\n", 0, max(first - 400, 0)) + 1, first - 800)
    skipped = len(log) - tail - (start + head)
    return f"{log[start:start + head]}\n[... {skipped} characters of the log ...]\n{log[-tail:]}"


def source_assignments(course_dir: Optional[Path] = None) -> list[str]:
    """The assignments of a course (default: the active one): the folders of `source/` holding a notebook."""
    course_dir = Path(course_dir or course_root.current().course)
    source = course_dir / "source"
    return sorted(p.name for p in source.iterdir() if p.is_dir() and any(p.glob("*.ipynb"))) if source.is_dir() else []


def _ignore(folder: str, names: list[str]) -> list[str]:
    return [n for n in names if n in SKIP_NAMES or n.endswith(".pyc")]


def copy_library(dest: Path, repo_root: Optional[Path] = None) -> None:
    """Copy the student-facing library packages of `repo_root` (default: the active course) into a release folder."""
    repo_root = Path(repo_root or course_root.current().root)
    for package in LIBRARY_PACKAGES:
        target = dest / package
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(repo_root / package, target, ignore=_ignore)
    # The declarations ship; their grader regions (hidden cases, runners, bugs) do not.
    for path in sorted((dest / "coursecore" / "parts").glob("*.py")):
        path.write_text(strip_grader(path.read_text(encoding="utf-8")), encoding="utf-8")


def release_readme(assignment: str) -> str:
    """The README.md of a release folder: open, where to write code, self-check, what to hand in and how."""
    from coursecore.parts import ASSIGNMENT_PARTS

    check = (f"python -m vitcourse check --assignment {assignment}" if assignment in ASSIGNMENT_PARTS
             else "python -m vitcourse check")
    names = files_for(assignment)
    files = " and ".join(f"`{n}`" for n in names)
    carry = (" (they stay in this folder and carry over to the next assignments)"
             if "ViT.py" in names and assignment != "a5_analysis" else "")
    handin = "`vit_checkpoint.pt`, " if assignment == "a3_vit" else (
        "`resnet_checkpoint.pt`, `sweep.json`, " if assignment == "a4_resnet_tradeoffs" else "")
    return (f"# {assignment}\n\n"
            f"1. **Open** `{assignment}.ipynb` (Colab: its *Open in Colab* badge, then *File -> Save a copy in Drive*; "
            "Jupyter: this folder) and run the setup cell first.\n"
            f"2. **Write code** where a `TODO (...)` banner asks in {files}{carry}, in notebook cells that say "
            "`YOUR CODE HERE`, and answers in cells that say `YOUR ANSWER HERE`.\n"
            f"3. **Self-check**: the check cell after each part, or `{check}` in a terminal in this folder. "
            "Passing the visible checks does not guarantee full marks.\n"
            f"4. **Hand in** a zip of this folder named `<your id>.zip`: the notebook, {files}, "
            f"{handin}`metrics.json` when there is one. Do not rename the notebook or delete cells.\n")


def assemble(release_dir: Path, stubs_dir: Optional[Path] = None) -> None:
    """Add the stubs, the library and a README to one nbgrader release folder (`release/<assignment>/`).

    The stubs and the library come from the active course (`course_root.current()`), never from the folder
    the package is installed from."""
    stubs_dir = Path(stubs_dir or impl.stubs_dir())
    for name in files_for(release_dir.name):  # this assignment's student modules only (coursecore/registry.py)
        shutil.copy2(stubs_dir / name, release_dir / name)
    copy_library(release_dir)
    (release_dir / "README.md").write_text(release_readme(release_dir.name), encoding="utf-8")


def make_zip(release_dir: Path) -> Path:
    """`release/<a>.zip` holding the folder `<a>/`; unzip it into MyDrive/vitcourse/ for Colab."""
    archive = release_dir.with_suffix(".zip")
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(release_dir.rglob("*")):
            if path.is_file():
                zf.write(path, Path(release_dir.name) / path.relative_to(release_dir))
    return archive


# ---- what a release imports ------------------------------------------------------------------------------

# Provided by the runtime the notebook runs in, never shipped: the setup cell imports it on Colab only.
RUNTIME_MODULES = ("google",)


def _imports(tree: ast.AST, top_level_only: bool) -> Iterable[tuple[str, tuple[str, ...], int]]:
    """(module, names, level) of the imports in `tree`; with `top_level_only`, not those inside a def or class."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)) and top_level_only:
            continue
        if isinstance(node, ast.Import):
            yield from ((a.name, (), 0) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield node.module or "", tuple(a.name for a in node.names), node.level
        yield from _imports(node, top_level_only)


def _module_file(folder: Path, dotted: str) -> Optional[Path]:
    base = folder.joinpath(*dotted.split("."))
    return next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)


def release_imports(folder: Path, notebook: Optional[Path] = None) -> tuple[set[str], list[str]]:
    """(third-party top-level modules, problems) of what a release folder's notebook imports when it runs.

    Follows the notebook's imports (every one: cells run at the top level) into the modules the folder ships,
    and from there their module-level imports (a function's own import is deliberately lazy). A problem is an
    import of a shipped package's module that the folder lacks (an instructor-only module, a typo)."""
    folder = Path(folder)
    notebook = Path(notebook or folder / f"{folder.name}.ipynb")
    nb = nbformat.read(notebook, as_version=4)
    code = ["\n".join(l for l in c.source.splitlines() if not l.lstrip().startswith(("%", "!")))
            for c in nb.cells if c.cell_type == "code"]
    todo = [(ast.parse(src), False, "", notebook.name) for src in code]
    seen: set[Path] = set()
    third, problems = set(), []
    while todo:
        tree, top_only, package, where = todo.pop()
        for module, names, level in _imports(tree, top_only):
            if level:
                parts = package.split(".") if package else []
                module = ".".join(parts[:len(parts) - level + 1] + ([module] if module else []))
            top = module.split(".")[0]
            if top in course_root.PACKAGES and top not in STUDENT_PACKAGES:  # the grader, the instructor's tools
                problems.append(f"{where} imports {module}, which {folder.name}/ does not ship")
                continue
            if not ((folder / top).is_dir() or (folder / f"{top}.py").is_file()):
                if top not in sys.stdlib_module_names and top != "__future__" and top not in RUNTIME_MODULES:
                    third.add(top)
                continue
            if _module_file(folder, module) is None:
                problems.append(f"{where} imports {module}, which {folder.name}/ does not ship")
                continue
            for dotted in (module, *(f"{module}.{n}" for n in names)):
                path = _module_file(folder, dotted)
                if path is not None and path not in seen:
                    seen.add(path)
                    pkg = dotted if path.name == "__init__.py" else dotted.rpartition(".")[0]
                    todo.append((ast.parse(path.read_text(encoding="utf-8")), True, pkg,
                                 path.relative_to(folder).as_posix()))
    return third, sorted(set(problems))


# ---- leak check -----------------------------------------------------------------------------------------

def _region_lines(lines: Iterable[str], begin: str, end: str) -> list[str]:
    """The lines strictly between `begin` and `end` marker lines (markers may sit behind a '#')."""
    inside, found = False, []
    for line in lines:
        if begin in line:
            inside = True
        elif end in line:
            inside = False
        elif inside:
            found.append(line)
    return found


def _distinctive(lines: Iterable[str]) -> set[str]:
    out = set()
    for line in lines:
        text = line.strip()
        if text.startswith("# "):  # a markdown line authored as a comment, or a code comment
            text = text[2:].strip()
        if len(text) >= MIN_LEAK_CHARS and not any(m in text for m in MARKERS):
            out.add(text)
    return out


# The grader's answer keys (relative to the course root): no copy, no line and no function of them may ship.
ANSWER_KEYS = ("autograder/quiz.py",)
MIN_ANSWER = 1000  # numeric answers at least this large are distinctive enough to look for in a release's text
NUMBER = re.compile(r"(?<![\w.])\d{1,3}(?:[,_ ]\d{3})+(?![\w.])|(?<![\w.])\d{4,}(?![\w.])")


@dataclass
class Secrets:
    """What must never appear in a release."""

    lines: set[str]  # distinctive lines of solution regions, hidden tests and mark schemes
    file_hashes: dict[str, str]  # sha256 of every solutions/ file and answer key -> its name
    answers: dict[int, str] = field(default_factory=dict)  # a graded numeric answer -> the name it answers
    functions: set[str] = field(default_factory=set)  # functions of the answer keys: no release defines one


def collect_secrets(course_dir: Optional[Path] = None, solutions_dir: Optional[Path] = None) -> Secrets:
    """Secret lines from `solutions/*.py` and from every source notebook, minus lines that are public anyway."""
    course_dir = Path(course_dir or course_root.current().course)
    solutions_dir = Path(solutions_dir or impl.solutions_dir())
    secret, public = set(), set()
    hashes = {}
    for path in sorted(solutions_dir.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        hashes[hashlib.sha256(text.encode()).hexdigest()] = path.name
        # Secret lines come from the registered student modules, whose stubs ship and make their given code
        # public. A reference not registered ships nothing and is checked by hash only. (A registered module's
        # solution regions must not hold generic lines the library uses, e.g. "with torch.no_grad():".)
        if path.name in STUB_FILES:
            secret |= _distinctive(_region_lines(text.splitlines(), BEGIN, END))
    for path in sorted((course_dir / "source").glob("*/*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            lines = cell.source.splitlines()
            hidden = _region_lines(lines, BEGIN, END) + _region_lines(lines, HIDDEN_BEGIN, HIDDEN_END)
            secret |= _distinctive(hidden)
            public |= _distinctive(set(lines) - set(hidden))
    # Lines the student is given anyway (stubs, the public part of a notebook) are not secrets.
    for name in STUB_FILES:
        stub = impl.stubs_dir() / name
        if stub.exists():
            public |= _distinctive(stub.read_text(encoding="utf-8").splitlines())
    answers, functions = _answer_keys(course_dir, hashes)
    return Secrets(secret - public, hashes, answers, functions)


def _answer_keys(course_dir: Path, hashes: dict) -> tuple[dict[int, str], set[str]]:
    """The graded numeric answers of the source notebooks (computed by the grader's keys), and the functions of
    the answer-key modules; their files' hashes go into `hashes`."""
    from autograder import answers as answer_checks

    values = {}
    for path in sorted((course_dir / "source").glob("*/*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            for call in answer_checks.calls(cell.source) if cell.cell_type == "code" else []:
                value = answer_checks.answer_key(call)
                if isinstance(value, int) and value >= MIN_ANSWER:
                    values[value] = f"{path.stem}'s {call.params.get('name') or call.check}"
    functions = set()
    root = course_root.current().root
    for rel in ANSWER_KEYS:
        text = (root / rel).read_text(encoding="utf-8")
        hashes[hashlib.sha256(text.encode()).hexdigest()] = rel
        functions |= {node.name for node in ast.parse(text).body
                      if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")}
    return values, functions


def _release_texts(root: Path) -> Iterable[tuple[str, str]]:
    """(name, text) of every text file under root, including the members of zip archives."""
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as zf:
                for member in zf.namelist():
                    if member.endswith(TEXT_SUFFIXES):
                        yield f"{path}!{member}", zf.read(member).decode("utf-8", errors="replace")
        elif path.suffix in TEXT_SUFFIXES:
            yield str(path), path.read_text(encoding="utf-8", errors="replace")


def find_leaks(release_root: Path, secrets: Secrets) -> list[str]:
    """One message per leaked line or file found under release_root (empty: the release is clean)."""
    problems = []
    for name, text in _release_texts(release_root):
        if hashlib.sha256(text.encode()).hexdigest() in secrets.file_hashes:
            problems.append(f"{name} is a copy of solutions/{secrets.file_hashes[hashlib.sha256(text.encode()).hexdigest()]}")
        if name.endswith(".ipynb"):  # compare the cell sources, not their JSON-escaped form
            try:
                nb = nbformat.reads(text, as_version=4)
                text = "\n".join(cell.source for cell in nb.cells)
            except Exception:  # noqa: BLE001 - a broken notebook is still scanned as raw text
                pass
        present = {line.strip() for line in text.splitlines()}
        if GRADER_BEGIN in present:
            problems.append(f"{name}: holds a grader region ({GRADER_BEGIN}: hidden cases and bugs of a part)")
        present |= {line[2:].strip() for line in present if line.startswith("# ")}
        for line in sorted(secrets.lines & present):
            problems.append(f"{name}: hidden line leaked: {line[:80]!r}")
        for number in sorted({int(re.sub(r"[,_ ]", "", n)) for n in NUMBER.findall(text)} & set(secrets.answers)):
            problems.append(f"{name}: holds {number:,}, {secrets.answers[number]} (a graded answer)")
        if name.endswith(".py"):
            defined = set(re.findall(r"^\s*def (\w+)\(", text, flags=re.M)) & secrets.functions
            for function in sorted(defined):
                problems.append(f"{name}: defines {function}, a function of the grader's answer keys")
    return problems


# ---- the release ----------------------------------------------------------------------------------------

def complete(folder: Path) -> bool:
    """True when a release folder holds what `assemble` adds (stubs, library, README), not nbgrader's notebook alone."""
    return all((folder / name).is_file() for name in (*files_for(folder.name), "README.md", "vitcourse/course/colab.py"))


def generate_hook(course_dir: Path):
    """nbgrader's `GenerateAssignment.post_convert_hook` (course/nbgrader_config.py) for this course.

    nbgrader's own Generate (the formgrader's button, plain `nbgrader generate_assignment --force`) rebuilds
    `release/<a>/` with the notebook alone; this hook completes it as `vitcourse release` does (stubs, library,
    README), then runs the import and leak checks on it. If anything fails the folder is removed, so that
    `nbgrader release_assignment` has nothing half-made to ship, and the reason is raised into nbgrader's log.
    """
    course_dir = Path(course_dir)

    def hook(assignment: str, student=None, notebooks=(), **_) -> None:
        folder = course_dir / "release" / assignment
        if not settings.ROOT.is_set() and (course_dir.parent / "student_src").is_dir():
            course_root.activate(course_root.CourseRoot(course_dir.parent))  # the formgrader: this clone's stubs
        try:
            assemble(folder)
            problems = release_imports(folder)[1] + find_leaks(folder, collect_secrets(course_dir))
            if problems:
                raise ReleaseError("; ".join(problems[:10]))
        except Exception as err:
            shutil.rmtree(folder, ignore_errors=True)
            raise ReleaseError(f"the release of {assignment} could not be completed ({err}), so release/{assignment}/ "
                               f"was removed: run `vitcourse release {assignment}` in {course_dir} to see why") from err
    return hook


def release(course_dir: Optional[Path] = None, assignments: Optional[list[str]] = None, zip_: bool = True,
            log=print) -> list[Path]:
    """Generate and assemble the student release of `assignments` (default: all); return the folders.

    Raises ReleaseError when nbgrader fails or when anything hidden would leak.
    """
    course_dir = Path(course_dir or course_root.current().course)
    names = assignments or source_assignments(course_dir)
    unknown = sorted(set(names) - set(source_assignments(course_dir)))
    if unknown:
        raise ReleaseError(f"no source notebook for {unknown} in {course_dir / 'source'}; "
                           f"known: {source_assignments(course_dir)}")
    folders = []
    for name in names:
        proc = nbgrader(course_dir, "generate_assignment", name, "--force")
        folder = course_dir / "release" / name
        if not complete(folder):  # the config's generate_hook assembles the folder inside nbgrader
            raise ReleaseError(f"`nbgrader generate_assignment {name}` left {folder} without the stubs and library "
                               f"(is course/nbgrader_config.py's GenerateAssignment.post_convert_hook set?):\n"
                               f"{_failure_excerpt(proc.stdout + proc.stderr)}")
        if zip_:
            make_zip(folder)
        folders.append(folder)
        log(f"released {name}: {folder}" + (f" and {folder.with_suffix('.zip').name}" if zip_ else ""))
    problems = [p for folder in folders for p in release_imports(folder)[1]]
    if problems:
        raise ReleaseError("the release would not run for a student: " + "; ".join(problems) + ". Move that code into "
                           "the student-facing library (not coursetools/commands/ or another instructor-only module)")
    leaks = find_leaks(course_dir / "release", collect_secrets(course_dir))
    if leaks:
        raise ReleaseError("the release would leak hidden material; nothing may be published:\n" + "\n".join(leaks[:50]))
    log(f"leak check: no solution line, hidden test, mark scheme or solutions/ file in {course_dir / 'release'}")
    return folders
