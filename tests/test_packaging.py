"""Packaging: one install makes the packages importable; the dependency lists agree; CI runs make test."""
import ast
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from coursecore.impl import REPO_ROOT


def _names(requirements):
    return {re.split(r"[<>=!~ ]", r, maxsplit=1)[0].lower(): r.replace(" ", "") for r in requirements}


def test_environment_yml_lists_the_pyproject_dependencies():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        wanted += [r for r in extra if not r.startswith("vitcourse")]
    pip_section = re.search(r"- pip:\n((?:\s+- .+\n?)+)", (REPO_ROOT / "environment.yml").read_text()).group(1)
    listed = [line.strip()[2:] for line in pip_section.splitlines() if not line.strip().startswith("- -e")]
    assert _names(listed) == _names(wanted)


def test_constraints_pin_every_direct_dependency():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    direct = set(_names(project["dependencies"]))
    for extra in project["optional-dependencies"].values():
        direct |= {n for n in _names(extra) if n != "vitcourse[course]"}
    pins = {line.split("==")[0].lower().replace("_", "-") for line in (REPO_ROOT / "constraints.txt").read_text().splitlines()
            if "==" in line}
    assert {d.replace("_", "-") for d in direct} - {"vitcourse[course]"} <= pins


def _floors():
    """pyproject's lower bounds: name -> version, for every declared dependency with a `>=`."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += [r for r in extra if not r.startswith("vitcourse")]
    floors = {}
    for r in reqs:
        m = re.match(r"([A-Za-z0-9_.-]+)\s*>=\s*([0-9][^,;\s]*)", r)
        if m:
            floors[m[1].lower().replace("_", "-")] = m[2]
    return floors


def test_floor_constraints_pin_every_floor_at_the_declared_version():
    """constraints-floor.txt tests exactly what pyproject.toml promises: each `>=X` pinned at X (or X.patch)."""
    pins = {}
    for line in (REPO_ROOT / "constraints-floor.txt").read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, version = line.split("==")
            pins[name.strip().lower().replace("_", "-")] = version.strip()
    for name, floor in _floors().items():
        assert name in pins, f"constraints-floor.txt: {name} (pyproject says >={floor}) is not pinned"
        assert pins[name] == floor or pins[name].startswith(floor + "."), \
            f"constraints-floor.txt pins {name}=={pins[name]} but pyproject.toml's floor is {floor}"


REMOVED_IN_312 = ("distutils", "imp", "asynchat", "asyncore", "smtpd")  # Colab runs Python 3.12


def test_no_module_removed_in_python_312_is_imported():
    import ast

    offenders = []
    for folder in ("autograder", "vitcourse", "data_utils", "solutions", "student_src", "course", "tests", "benchmarks"):
        for path in (REPO_ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                offenders += [f"{path.relative_to(REPO_ROOT)}: {n}" for n in names if n.split(".")[0] in REMOVED_IN_312]
    assert not offenders


def test_ci_runs_the_readme_test_command():
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    # The floor environment runs next to the pinned one (issue 9.10).
    assert "make test-floor" in ci
    readme = (REPO_ROOT / "README.md").read_text()
    assert "make test" in readme and "make demo" in readme


def test_ci_runs_every_test_target_and_removes_each_extra_environment():
    """Every `make test-*` target runs in CI; an extra environment goes once its step is done (CI's disk is small)."""
    makefile = (REPO_ROOT / "Makefile").read_text()
    ci = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    targets = re.findall(r"^(test-[a-z-]+):", makefile, re.M)
    assert targets and all(f"make {t}" in ci for t in targets), (targets, ci)
    for env in re.findall(r"^[A-Z]+\s*:= (\.venv-[a-z]+)$", makefile, re.M):
        assert f"rm -rf {env}" in ci, f".ci/run keeps {env} to the end"


def test_a_second_environment_finds_the_cuda_wheels_linked_in(tmp_path):
    """.ci/seed_cuda_wheels.py: the environment pip fills next sees .venv's nvidia-* wheels, at their versions."""
    from importlib import metadata

    ours = {d.metadata["Name"].lower(): d.version for d in metadata.distributions()
            if d.metadata["Name"].lower().startswith("nvidia-")}
    if not ours:
        pytest.skip("this environment's torch has no CUDA wheels")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "env")], check=True)
    try:
        _check_seeded(tmp_path / "env", ours)
    finally:  # a kept link would keep ~3 GiB alive after CI removes the environment it links to
        shutil.rmtree(tmp_path / "env")


def _check_seeded(env, ours):
    from importlib import metadata

    python = str(env / "bin" / "python")
    out = subprocess.run([sys.executable, str(REPO_ROOT / ".ci" / "seed_cuda_wheels.py"), python],
                         capture_output=True, text=True, check=True).stdout
    assert "linked" in out and "GiB" in out, out
    listing = ("from importlib import metadata; print({d.metadata['Name'].lower(): d.version "
               "for d in metadata.distributions() if d.metadata['Name'].lower().startswith('nvidia-')})")
    theirs = subprocess.run([python, "-c", listing], capture_output=True, text=True, check=True).stdout
    assert ast.literal_eval(theirs) == ours
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    one = next(f for d in metadata.distributions() if d.metadata["Name"].lower() in ours
               for f in d.files if f.suffix == ".so" or ".so." in f.name)
    linked = Path(purelib, *one.parts)
    assert linked.stat().st_ino == Path(one.locate()).stat().st_ino, "a copy, not a hard link"
    again = subprocess.run([sys.executable, str(REPO_ROOT / ".ci" / "seed_cuda_wheels.py"), python],
                           capture_output=True, text=True, check=True).stdout
    assert "linked 0 files" in again, again


def test_cli_lists_its_commands_and_checks_the_stubs():
    out = subprocess.run([sys.executable, "-m", "coursetools", "--help"], capture_output=True, text=True, check=True)
    for command in ("demo", "stubs"):
        assert command in out.stdout
    check = subprocess.run([sys.executable, "-m", "coursetools", "stubs", "--check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_make_on_a_too_old_python_stops_at_once_with_one_line(tmp_path):
    """Issue 25, item 6: before anything is installed, `make test` names the Python to use."""
    import shutil

    old = sorted(Path.home().glob(".pyenv/versions/3.10*/bin/python3"))
    if not old:
        fake = tmp_path / "python3.10"
        fake.write_text("#!/bin/sh\ncase \"$*\" in *python_version*) echo 3.10.13;; *) exit 1;; esac\n")
        fake.chmod(0o755)
        old = [fake]
    for name in ("Makefile", "pyproject.toml", "constraints.txt"):
        shutil.copy2(REPO_ROOT / name, tmp_path / name)
    done = subprocess.run(["make", "test", f"PYTHON={old[0]}"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    lines = [l for l in done.stdout.splitlines() if "needs Python" in l]
    assert lines == [f"vitcourse needs Python >= 3.11, and '{old[0]}' is 3.10.13: run e.g. PYTHON=python3.11 make test"] \
        or (lines and "is 3.10" in lines[0] and "PYTHON=python3.11 make test" in lines[0]), done.stdout + done.stderr
    assert not (tmp_path / ".venv").exists(), "nothing was installed"


def test_requires_python_is_what_the_makefile_checks():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    floor = project["requires-python"].removeprefix(">=")
    assert f"MIN_PYTHON := {floor}" in (REPO_ROOT / "Makefile").read_text()
    assert sys.version_info >= tuple(map(int, floor.split(".")))
