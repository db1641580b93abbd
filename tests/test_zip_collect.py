"""zip_collect's pattern (course/nbgrader_config.py): the student id is the zip's own name, anchored at
the course's extracted/ folder; hostile member paths inside a zip cannot name or create another student."""
from __future__ import annotations

import os

import pytest
from nbgrader.plugins.zipcollect import FileNameCollectorPlugin
from traitlets.config.loader import PyFileConfigLoader

from coursecore import impl

COURSE = impl.REPO_ROOT / "course"


@pytest.fixture(scope="module")
def collector():
    config = PyFileConfigLoader("nbgrader_config.py", path=str(COURSE)).load_config()
    root = os.path.abspath(config.CourseDirectory.root)
    return FileNameCollectorPlugin(config=config), f"{root}/downloaded/a2_transformer/extracted"


@pytest.mark.parametrize("member, student, file_id", [
    ("ada/a2_transformer.ipynb", "ada", "a2_transformer.ipynb"),
    ("ada/a2_transformer/transformer.py", "ada", "transformer.py"),
])
def test_an_honest_zip_is_collected_for_its_own_student(collector, member, student, file_id):
    plugin, extracted = collector
    info = plugin.collect(f"{extracted}/{member}")
    assert info and info["student_id"] == student and info["file_id"] == file_id


@pytest.mark.parametrize("member", [
    "ada/x/extracted/ben/a2_transformer.ipynb",      # names another (existing) student
    "ada/extracted/newcomer/transformer.py",         # would create a student who never handed in
    "ada/a/b/downloaded/a2_transformer/extracted/ben/ViT.py",
    "ada/../ben/ViT.py",                             # a traversal, as a literal path
    "ada/sub/deeper/ViT.py",                         # deeper than one folder: not a submission file
])
def test_hostile_member_paths_never_name_another_student(collector, member):
    plugin, extracted = collector
    info = plugin.collect(f"{extracted}/{member}")
    assert info is None or info["student_id"] == "ada", info


def test_a_path_outside_the_course_is_not_collected(collector):
    plugin, _ = collector
    assert plugin.collect("/elsewhere/downloaded/a2_transformer/extracted/ben/ViT.py") is None
