"""Notebook entry points for nbgrader's hidden test cells.

A hidden test cell (a "grade" cell with points) holds exactly::

    from autograder.nb import grade_part
    grade_part("transformer.attention")

`grade_part` grades that part of the `transformer.py` / `ViT.py` next to the notebook, out of the kernel
(in the sandbox, like the command-line grader), prints the feedback to stdout and returns the points
earned scaled to the cell: nbgrader reads a number as the cell's execute_result as partial credit. It
never raises and never writes to stderr (nbgrader scores a cell with stderr output 0): warnings are
caught and printed to stdout. Feedback holds sizes and error sizes only, never hidden inputs.

The score printed in the kernel is advisory: the student's own cells run in the same kernel and could
replace this function. `autograder.nbgrader_plugin.RegradeHiddenCells` recomputes every such cell after
execution, outside the kernel, and overwrites its output; that is the score nbgrader records.
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
import warnings
from pathlib import Path
from typing import Optional

from coursecore import settings
from coursecore.parts import POINTS, ROUND_DIGITS

ERROR_SCORE = 0.0
# Set in the kernels `nbgrader autograde` starts (SandboxedKernelManager.scores_outside, coursetools/pipeline.py). Under
# `nbgrader autograde` RegradeHiddenCells then overwrites every grade_part cell, so grading in the kernel
# too would only double the work.
REGRADE_ENV = settings.REGRADE_OUTSIDE_KERNEL.name


class Score(float):
    """A float whose repr is a plain number, so the cell's text/plain output is what nbgrader parses."""

    def __repr__(self) -> str:
        return repr(float(self))


def cell_score(fraction: float, cell_points: Optional[float]) -> float:
    """Points for a cell worth `cell_points` (the part's own points when None)."""
    return round(fraction * cell_points, ROUND_DIGITS)


def grade_part(part: str, folder: str | os.PathLike = ".", cell_points: Optional[float] = None,
               **grade_kwargs) -> Score:
    """Grade one part of the student files in `folder`; print feedback; return the points as a number."""
    if os.environ.get("NBGRADER_EXECUTION") == "autograde" and settings.REGRADE_OUTSIDE_KERNEL.get():
        print(f"{part}: graded outside this notebook by the autograder; the score is in your feedback.")
        return Score(0.0)
    from autograder import grader

    out = io.StringIO()
    fraction = 0.0
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stderr(out):
        warnings.simplefilter("always")
        try:
            if part not in POINTS:
                raise KeyError(f"unknown part {part!r}; the parts are: {', '.join(POINTS)}")
            report = grader.grade(Path(folder), only=[part], **grade_kwargs)
            result = report.part(part)
            fraction = result.score / result.max_score if result.max_score else 0.0
            print(f"{part}: {result.score:g}/{result.max_score:g}", file=out)
            feedback = result.feedback()
            if feedback:
                print(feedback, file=out)
        except Exception as err:  # noqa: BLE001 - a hidden cell must print, never raise
            print(f"{part}: could not be graded ({type(err).__name__}: {err})", file=out)
            fraction = ERROR_SCORE
    for w in caught:
        out.write(f"(warning: {w.message})\n")
    sys.stdout.write(out.getvalue())
    return Score(cell_score(fraction, cell_points if cell_points is not None else POINTS.get(part, 0)))


def grade_answer(check: str, *values, folder: str | os.PathLike = ".", **params) -> Score:
    """Record the student's answer `values` for the grader, then (outside autograde) score them here.

    The values go into a display output of the cell (`autograder.answers.ANSWER_MIME`, JSON), from which
    `RegradeHiddenCells` scores them again in the grader's process with the registered check `check`
    (autograder/answers.py); under `nbgrader autograde` that is the only score. Elsewhere (the instructor's
    source run, `nbgrader validate`) the same check runs here, on the same JSON, and its feedback is printed.
    Literal keywords are the check's parameters; other keywords (the student's ViT class) are kernel context.
    Never raises and never writes to stderr.
    """
    from autograder import answers

    encoded = [answers.encode(v) for v in values]
    try:
        from IPython.display import display

        display({answers.ANSWER_MIME: {"check": check, "values": encoded},
                 "text/plain": f"({check}: answer recorded for the autograder)"}, raw=True)
    except ImportError:  # plain Python: nothing to record into
        pass
    if os.environ.get("NBGRADER_EXECUTION") == "autograde" and settings.REGRADE_OUTSIDE_KERNEL.get():
        print(f"{params.get('name', check)}: graded outside this notebook by the autograder; the score is in your feedback.")
        return Score(0.0)
    points = float(params.pop("points", 1.0))  # the grader takes the cell's own points instead
    literal, context = {}, {}
    for key, value in params.items():
        try:
            answers.ast.literal_eval(repr(value))
            literal[key] = value
        except (ValueError, SyntaxError):
            context[key] = value
    call = answers.Call(check, len(values), literal)
    if check not in answers.CHECKS:
        print(f"{check}: not a registered answer check ({', '.join(answers.CHECKS)}); ask your TA.")
        return Score(0.0)
    out = io.StringIO()
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stderr(out):
        warnings.simplefilter("always")
        earned, feedback = answers.score(call, answers.roundtrip(list(values)), points, Path(folder), context)
    print(feedback)
    for w in caught:
        print(f"(warning: {w.message})")
    sys.stdout.write(out.getvalue())
    return Score(round(earned, ROUND_DIGITS))
