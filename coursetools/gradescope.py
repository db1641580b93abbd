"""Build Gradescope's `autograder.zip` for one assignment (`vitcourse gradescope`).

The zip's root holds Gradescope's contract, `setup.sh` (run once, as root, when Gradescope builds the
image; the network is there) and `run_autograder` (run for every submission; no network needed), plus what
they need: the packages `autograder`, `vitcourse`, `data_utils` as source, the reference `solutions/`,
`pyproject.toml` and `constraints.txt` (the pinned environment), `gradescope.json` (which assignment) and,
for an assignment graded from a checkpoint, the held-out test split under `data/`. Gradescope unpacks it to
`/autograder/source`; the sandbox hides all of `/autograder` from the student process.

The zip is reproducible (sorted members, fixed timestamps) and holds no path of the build machine.
"""
from __future__ import annotations

import json
import shutil
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from autograder.accuracy import ACCURACY_POINTS, CHECKPOINT_ASSIGNMENTS
from autograder.upload import wanted_files
from coursecore.parts import ASSIGNMENT_PARTS, POINTS, max_score, parts_for
from coursecore import course_root, deadlines

BUNDLE = "autograder.zip"
PACKAGES = ("coursecore", "data_utils", "vitcourse", "autograder")
TOP_FILES = ("pyproject.toml", "constraints.txt")
ZIP_DATE = (2020, 1, 1, 0, 0, 0)  # fixed timestamps: the same sources give the same zip
VENV = "/opt/vitcourse-venv"  # outside /autograder: the student process may run Python, never read the bundle
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"  # no GPU on Gradescope: the CPU build is 5x smaller

SETUP_SH = r"""#!/usr/bin/env bash
# Gradescope runs this once, as root, while it builds the autograder image (the network is available).
# It installs the pinned environment of the course (constraints.txt) into a venv outside /autograder and
# the sandbox's tools (bubblewrap, util-linux's unshare). Grading itself never uses the network.
#   VITCOURSE_VENV         where the venv goes (default @VENV@; run_autograder reads the same variable)
#   VITCOURSE_TORCH_INDEX  where torch comes from (default the CPU-only builds, @TORCH@)
set -euo pipefail
SRC="${AUTOGRADER_ROOT:-/autograder}/source"
VENV="${VITCOURSE_VENV:-@VENV@}"
TORCH_INDEX="${VITCOURSE_TORCH_INDEX:-@TORCH@}"
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1

apt-get update
apt-get install -y --no-install-recommends bubblewrap util-linux ca-certificates

# The pins need Python >= @PYMIN@ (Ubuntu 22.04 ships 3.10: its python3.11 package is used then).
PY=""
for candidate in python3.13 python3.12 python3.11 python3; do
  if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info < (@PYMIN_TUPLE@))'; then
    PY="$candidate"; break
  fi
done
if [ -z "$PY" ]; then
  apt-get install -y --no-install-recommends python3.11 python3.11-venv
  PY=python3.11
fi
apt-get install -y --no-install-recommends "$(basename "$PY")-venv" || apt-get install -y --no-install-recommends python3-venv || true

"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --upgrade pip
"$VENV/bin/python" -m pip install -c "$SRC/constraints.txt" --index-url "$TORCH_INDEX" torch torchvision
"$VENV/bin/python" -m pip install -c "$SRC/constraints.txt" -e "$SRC"
chmod -R a+rX "$VENV"   # the student process may run as an unprivileged user: it must be able to start Python
"$VENV/bin/python" -c "import torch, autograder.gradescope, vitcourse; print('vitcourse autograder ready, torch', torch.__version__)"
"""

RUN_AUTOGRADER = r"""#!/usr/bin/env bash
# Gradescope runs this for every submission: it grades /autograder/submission for the assignment named in
# source/gradescope.json and writes /autograder/results/results.json (see docs/gradescope.md).
#   AUTOGRADER_ROOT   the Gradescope root (default /autograder; tests use a temporary folder)
#   VITCOURSE_PYTHON  the Python to grade with (default the venv setup.sh made; tests use their own)
ROOT="${AUTOGRADER_ROOT:-/autograder}"
PY="${VITCOURSE_PYTHON:-${VITCOURSE_VENV:-@VENV@}/bin/python}"
mkdir -p "$ROOT/results"
if [ ! -x "$PY" ]; then
  echo "run_autograder: no Python at $PY (did setup.sh run?)"
  printf '{"score": 0.0, "output": "The autograder is not set up correctly; this is not your fault. The course staff will regrade your submission.", "tests": []}\n' > "$ROOT/results/results.json"
  exit 0
fi
# Defence in depth where the container allows no namespaces (then the sandbox cannot hide paths): the
# student process runs as an unprivileged user, and this makes the bundle, the upload and the results
# unreadable to any user but root. The grader copies the upload into the student's own working folder.
if [ "$(id -u)" = 0 ]; then chmod go-rwx "$ROOT" || true; fi
cd "$ROOT/source" || exit 1
export AUTOGRADER_ROOT="$ROOT" PYTHONPATH="$ROOT/source" VITCOURSE_SOLUTIONS="$ROOT/source/solutions"
exec "$PY" -m autograder.gradescope
"""

README = """# vitcourse autograder for Gradescope: {title}

Upload this zip as the assignment's autograder (Configure Autograder → Zip file upload). Gradescope runs
`setup.sh` once to build the image and `run_autograder` for every submission. See docs/gradescope.md in
the course repository for the settings (memory, timeout) and how students submit.

Parts graded: {parts}.
"""


def assignments_table() -> str:
    """The Markdown table of docs/gradescope.md: every assignment a bundle grades, what a student uploads, its points.

    Derived from the part declarations (`ASSIGNMENT_PARTS`) and the module registry, and checked against the
    docs by tests/test_gradescope.py: a new graded assignment cannot be missing from the docs again (issue 31)."""
    rows = ["| `--assignment` | the student uploads | parts graded | points |", "|---|---|---|---|"]
    for assignment, parts in ASSIGNMENT_PARTS.items():
        uploads = wanted_files(assignment)  # what run_autograder takes from an upload (autograder/upload.py)
        points = f"{max_score(parts):g}"
        if assignment in CHECKPOINT_ASSIGNMENTS:
            points += f" + {ACCURACY_POINTS:g} for the checkpoint's accuracy"
        rows.append(f"| `{assignment}` | {', '.join(f'`{u}`' for u in uploads)} | {len(parts)} | {points} |")
    return "\n".join(rows) + "\n"


@dataclass
class Bundle:
    """What `build` wrote."""

    path: Path
    size: int  # bytes
    members: list[str]
    warnings: list[str] = field(default_factory=list)


def _render(template: str) -> str:
    major, minor = sys.version_info[:2]  # the pins were resolved for this Python (constraints.txt)
    return (template.replace("@VENV@", VENV).replace("@TORCH@", TORCH_CPU_INDEX)
            .replace("@PYMIN@", f"{major}.{minor}").replace("@PYMIN_TUPLE@", f"{major}, {minor}"))


def _sources(repo: Path) -> list[tuple[str, Path]]:
    out = [(name, repo / name) for name in TOP_FILES]
    for package in PACKAGES:
        out += [(p.relative_to(repo).as_posix(), p) for p in sorted((repo / package).rglob("*.py"))
                if "__pycache__" not in p.parts]
    out += [(f"solutions/{p.name}", p) for p in sorted((repo / "solutions").glob("*.py"))]
    return out


def _data_files(data_root: Path) -> list[tuple[str, Path]]:
    """The CIFAR test split(s) and meta files found under `data_root` (never the training set)."""
    from data_utils.cifar import CIFAR_SPECS, find_cifar_folder

    out = []
    for name, spec in CIFAR_SPECS.items():
        try:
            folder = find_cifar_folder(name, data_root)
        except FileNotFoundError:
            continue
        for file in (*spec.test_files, spec.meta_file):
            if not (folder / file).is_file():
                raise FileNotFoundError(f"{folder / file} is missing: the {name} test split needs it")
            out.append((f"data/{spec.folder}/{file}", folder / file))
    if not out:
        raise FileNotFoundError(f"no CIFAR-10 or CIFAR-100 folder in the python layout under {data_root} "
                                "(expected cifar-10-batches-py/test_batch or cifar-100-python/test)")
    return out


def _add(archive: zipfile.ZipFile, name: str, data: bytes, mode: int) -> None:
    info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    info.external_attr = (0o100000 | mode) << 16  # a regular file with these permission bits
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, data)


def build(out_dir: str | Path, assignment: Optional[str] = None, data_root: Optional[str | Path] = None,
          visibility: str = "visible", repo: Optional[Path] = None) -> Bundle:
    """Write `out_dir/autograder.zip` for `assignment` (every part when None); return what was written.

    `repo`: the course root whose reference and library the bundle carries (default: the active course)."""
    repo = Path(repo or course_root.current().root)
    parts = parts_for(assignment)  # KeyError naming the assignments for an unknown one
    warnings = []
    files = _sources(Path(repo))
    if data_root is not None:
        files += _data_files(Path(data_root))
    elif assignment in CHECKPOINT_ASSIGNMENTS:
        warnings.append(f"{assignment} is graded from a checkpoint, and this bundle carries no CIFAR test set: "
                        "only checkpoints trained on the embedded digits can be graded. Rebuild with "
                        "--data-root DIR (a folder in the CIFAR python layout; only the test split is copied).")
    # The due date and late policy of course/deadlines.toml: the runner applies them to Gradescope's submission
    # time with the same arithmetic as nbgrader's path (coursecore/deadlines.py).
    deadline = deadlines.for_assignment(Path(repo) / "course", assignment) if assignment else None
    if assignment and deadline is None:
        warnings.append(f"course/deadlines.toml gives {assignment} no due date: Gradescope submissions of this "
                        "bundle get no late penalty. Set `due` in its section and rebuild to apply the late policy.")
    config = {"assignment": assignment, "visibility": visibility, "parts": list(parts),
              "points": {p: POINTS[p] for p in parts}, "data": "data" if data_root is not None else None,
              "deadline": deadline.to_json() if deadline else None}
    title = assignment or "every part"
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / BUNDLE
    tmp = path.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w") as archive:
        _add(archive, "setup.sh", _render(SETUP_SH).encode(), 0o755)
        _add(archive, "run_autograder", _render(RUN_AUTOGRADER).encode(), 0o755)
        _add(archive, "gradescope.json", (json.dumps(config, indent=2) + "\n").encode(), 0o644)
        _add(archive, "README.md", README.format(title=title, parts=", ".join(parts)).encode(), 0o644)
        for name, src in sorted(files):
            _add(archive, name, src.read_bytes(), 0o644)
        members = archive.namelist()
    shutil.move(tmp, path)
    return Bundle(path, path.stat().st_size, members, warnings)
