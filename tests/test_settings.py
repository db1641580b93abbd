"""One settings object for every VITCOURSE_* variable (issue 28): typed, documented in one table, used everywhere."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from coursecore import settings

REPO = Path(__file__).resolve().parents[1]
NAME = re.compile(r"\bVITCOURSE_[A-Z_]*[A-Z]\b")


def _tracked(*patterns: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", *patterns], cwd=REPO,
                         capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    return [REPO / p for p in out.stdout.split() if (REPO / p).is_file()]


def test_docs_table_is_the_settings():
    docs = (REPO / "docs" / "settings.md").read_text(encoding="utf-8")
    table = re.search(r"<!-- settings:begin -->\n(.*?)\n<!-- settings:end -->", docs, re.S)
    assert table and table[1].strip() == settings.table(), (
        "docs/settings.md is not the table of coursecore/settings.py: paste `python -m coursecore.settings`")


def test_every_variable_named_anywhere_is_a_setting():
    """Code, Makefile, CI, docs and notebooks name no VITCOURSE_ variable the table lacks."""
    unknown = []
    for path in _tracked("*.py", "*.md", "Makefile", ".ci/*", "*.sh", "*.toml"):
        if path.relative_to(REPO).parts[0] == "tests" and path.name == "test_settings.py":
            continue
        for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            for name in NAME.findall(line):
                if name not in settings.BY_NAME:
                    unknown.append(f"{path.relative_to(REPO)}:{lineno}: {name}")
    assert not unknown, "VITCOURSE_ names missing from coursecore/settings.py:\n" + "\n".join(unknown)


def test_python_code_reads_settings_only_through_the_object():
    """No `os.environ.get("VITCOURSE_...")` of its own outside settings.py (tests may set variables)."""
    raw = re.compile(r"""(environ(\.get)?\s*[\[(]\s*|getenv\(\s*)["']VITCOURSE_""")
    found = [f"{p.relative_to(REPO)}:{i}" for p in _tracked("*.py") if p.relative_to(REPO).parts[0] != "tests"
             and p.name != "settings.py"
             for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if raw.search(line)]
    assert not found, "read these through coursecore.settings: " + ", ".join(found)


def test_values_are_typed(monkeypatch):
    monkeypatch.setenv(settings.LIMIT_MEMORY.name, "6e9")
    assert settings.LIMIT_MEMORY.get() == 6_000_000_000
    monkeypatch.setenv(settings.LIMIT_MEMORY.name, "lots")
    with pytest.raises(ValueError, match="VITCOURSE_LIMIT_MEMORY='lots' is not a whole number"):
        settings.LIMIT_MEMORY.get()
    for text, value in (("1", True), ("yes", True), ("0", False), ("", False)):
        monkeypatch.setenv(settings.FAST.name, text)
        assert settings.FAST.get() is value
    monkeypatch.setenv(settings.DATA_ROOT.name, "~/data")
    assert settings.DATA_ROOT.get() == Path("~/data").expanduser()
    monkeypatch.delenv(settings.COURSE_BRANCH.name, raising=False)
    assert settings.COURSE_BRANCH.get() == "main"


def test_the_readers_follow_the_settings(monkeypatch):
    """The library's own readers answer through the object (a fresh value is read at each call)."""
    from vitcourse.training import runtime

    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.setenv(settings.FAST.name, "on")
    assert runtime.fast_mode()
    monkeypatch.setenv(settings.FAST.name, "0")
    assert not runtime.fast_mode()
