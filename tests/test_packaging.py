"""Packaging: one install makes the packages importable; the dependency lists agree; CI runs make test."""
import re
import subprocess
import sys
import tomllib

from vitcourse.impl import REPO_ROOT


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


def test_ci_runs_the_readme_test_command():
    assert "make test" in (REPO_ROOT / ".ci" / "run").read_text()
    readme = (REPO_ROOT / "README.md").read_text()
    assert "make test" in readme and "make demo" in readme


def test_cli_lists_its_commands_and_checks_the_stubs():
    out = subprocess.run([sys.executable, "-m", "vitcourse", "--help"], capture_output=True, text=True, check=True)
    for command in ("demo", "stubs"):
        assert command in out.stdout
    check = subprocess.run([sys.executable, "-m", "vitcourse", "stubs", "--check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
