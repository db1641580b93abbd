"""nbgrader configuration of the Vision Transformer course (run nbgrader from this folder, `course/`).

The whole pipeline (what a student gets, how a submission is graded in the sandbox, collected, exported and
fed back) is set in one place, coursetools/pipeline.py; docs/grading.md shows the effective configuration.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this clone's packages, when nbgrader runs from course/
from coursetools.pipeline import configure  # noqa: E402

configure(get_config(), Path(__file__).resolve().parent)  # noqa: F821 (nbgrader provides get_config)
