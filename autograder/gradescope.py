"""What Gradescope's `run_autograder` runs for every submission: `python -m autograder.gradescope`.

Reads `<root>/source/gradescope.json` (written by `vitcourse gradescope`: the assignment), normalises
the upload in `<root>/submission` (`autograder.upload`), grades it with `grader.grade(..., assignment=A)`
in the same sandbox as every other path, with `<root>` hidden from the student process, adds the
checkpoint's held-out accuracy where the assignment is graded from one (`autograder.accuracy`), and writes
`<root>/results/results.json`. Whatever happens, a results file is written: a broken upload gets a message
that says how to upload, and a failure of the grader itself says that it is not the student's fault.

`<root>` is $AUTOGRADER_ROOT, default `/autograder` (tests run the real script in a temporary root).
"""
from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

from autograder.accuracy import CHECKPOINT_ASSIGNMENTS
from coursecore import files
from coursecore.parts import POINTS, ROUND_DIGITS, parts_for

ROOT_ENV = "AUTOGRADER_ROOT"
DEFAULT_ROOT = "/autograder"
CONFIG = "gradescope.json"  # in <root>/source: {"assignment", "visibility", "data", "deadline"}
METADATA = "submission_metadata.json"  # in <root>: Gradescope's submission time, due dates, earlier submissions
DUE_DATES_DIFFER_S = 60  # a Gradescope due date further than this from the course's is reported to staff
GRADER_FAILED = ("The autograder itself failed while grading your submission; this is not your fault. "
                 "The course staff have been given the details and will regrade it.")
# Gradescope stops run_autograder at its timeout (10 minutes by default) without a results file: ours stops
# first and writes one. `time_limit_s` in gradescope.json tunes it.
TIME_LIMIT_S = 540
TOO_SLOW = ("Grading your submission took longer than the grader's time limit ({limit} s), so it was stopped. If your "
            "code runs in seconds in the notebook, tell the course staff; otherwise look for an endless loop or a "
            "model far larger than the course's.")


class _OutOfTime(BaseException):
    """Raised by the alarm: not an Exception, so no `except Exception` in the grading path swallows it."""


def root() -> Path:
    return Path(os.environ.get(ROOT_ENV, DEFAULT_ROOT))


def _zero_results(assignment, message: str, visibility: str, checkpoint: bool) -> dict:
    """Every part of the assignment at 0 with `message`, so the student sees what would have been graded."""
    from autograder.accuracy import ACCURACY_POINTS, AccuracyResult

    tests = [{"name": p, "score": 0.0, "max_score": float(POINTS[p]), "output": message, "visibility": visibility}
             for p in parts_for(assignment)]
    if checkpoint:
        tests.append(AccuracyResult(0.0, ACCURACY_POINTS, None, message).to_gradescope(visibility))
    return {"score": 0.0, "max_score": round(sum(t["max_score"] for t in tests), ROUND_DIGITS),
            "output": message, "visibility": visibility, "tests": tests}


def grade_upload(base: Path, config: dict) -> dict:
    """results.json for the submission under `base` (the Gradescope root)."""
    from autograder import grader, upload
    from autograder.accuracy import CHECKPOINT, CHECKPOINT_ASSIGNMENTS, grade_checkpoint

    assignment = config.get("assignment")
    visibility = config.get("visibility", "visible")
    checkpoint = assignment in CHECKPOINT_ASSIGNMENTS
    with tempfile.TemporaryDirectory(prefix="vitcourse-upload-") as tmp:
        up = upload.normalise(base / "submission", assignment, Path(tmp) / "submission")
        if up.problem:  # with what the upload's notes say (a damaged member, a link, a file too large)
            return _zero_results(assignment, "\n".join([up.problem, *up.notes]), visibility, checkpoint)
        report = grader.grade(up.folder, assignment=assignment, hide=(base,))
        results = report.to_gradescope(visibility)
        if checkpoint:
            from coursecore import impl

            data = base / "source" / config["data"] if config.get("data") else None
            acc = grade_checkpoint(up.folder / CHECKPOINT, impl.reference().ViT.ViT, data_root=data)
            results["tests"].append(acc.to_gradescope(visibility))
            results["score"] = round(results["score"] + acc.score, ROUND_DIGITS)
            results["max_score"] = round(results["max_score"] + acc.max_score, ROUND_DIGITS)
            if acc.staff_problem:
                print(f"STAFF: {acc.message}")
    results["output"] = "\n".join([*up.notes, *([results["output"]] if results["output"] else [])])
    apply_late_policy(base, config, results)
    return results


def apply_late_policy(base: Path, config: dict, results: dict) -> None:
    """Take the course's late penalty off `results`, in place, with Gradescope's submission time.

    The due date and policy are course/deadlines.toml's, carried in gradescope.json (`deadline`), and the
    arithmetic is the nbgrader path's (coursecore/deadlines.py): both paths give a late submission the same
    grade. The time is `created_at` of `<root>/submission_metadata.json` (the active submission's, so a
    resubmission is judged by when it came); a Gradescope due date that differs from the course's is reported
    to staff, never silently used. The student reads when it was due, when it came and what it cost.
    """
    from coursecore import deadlines

    if not config.get("deadline"):
        return
    deadline = deadlines.Deadline.from_json(config["deadline"])
    try:
        meta = json.loads((base / METADATA).read_text(encoding="utf-8"))
        submitted = deadlines.parse_time(meta["created_at"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        print(f"STAFF: no submission time in {base / METADATA} ({err!r}): no late penalty applied")
        return
    their_due = (meta.get("assignment") or {}).get("due_date")
    if their_due and abs((deadlines.parse_time(their_due) - deadline.due).total_seconds()) > DUE_DATES_DIFFER_S:
        print(f"STAFF: Gradescope's due date {their_due} is not course/deadlines.toml's {deadline.due.isoformat()}; "
              "the course's is applied. Make them agree (the assignment's settings, or deadlines.toml and rebuild).")
    lateness = deadline.assess(submitted)
    raw = float(results.get("score", 0.0))
    penalty = round(lateness.penalty(raw), ROUND_DIGITS)
    results["score"] = round(raw - penalty, ROUND_DIGITS)
    lines = [lateness.describe(raw)]
    if lateness.fraction > 0:
        on_time = [p for p in meta.get("previous_submissions") or []
                   if isinstance(p, dict) and p.get("submission_time")
                   and deadline.assess(deadlines.parse_time(p["submission_time"])).fraction == 0]
        if on_time:
            best = max(on_time, key=lambda p: float(p.get("score") or 0.0))
            lines.append(f"Your submission of {best['submission_time']} came in time (score {best.get('score')}); "
                         "this later one is the one that counts. If the earlier one should count instead, ask the "
                         "course staff to make it the active submission in Gradescope's submission history.")
    results["output"] = "\n".join([*lines, *([results["output"]] if results.get("output") else [])])
    results.setdefault("extra_data", {})["late"] = {
        "submitted": submitted.isoformat(), "due": deadline.due.isoformat(), "seconds_late": lateness.seconds_late,
        "fraction": lateness.fraction, "raw_score": raw, "penalty": penalty}


def write_results(path: Path, results: dict) -> None:
    files.write_json(path, results, indent=2)  # Gradescope never sees a half-written file


def main() -> int:
    base = root()
    start = time.monotonic()
    out = base / "results" / "results.json"
    config = {}
    limit = TIME_LIMIT_S

    def out_of_time(signum, frame):
        raise _OutOfTime()
    previous = signal.getsignal(signal.SIGALRM)
    try:
        config = json.loads((base / "source" / CONFIG).read_text())
        limit = int(config.get("time_limit_s", TIME_LIMIT_S))
        signal.signal(signal.SIGALRM, out_of_time)
        signal.alarm(limit)
        try:
            results = grade_upload(base, config)
        finally:
            # Never left armed: an error's path below (or whatever the process runs next) must not be interrupted.
            signal.alarm(0)
    except _OutOfTime:
        print(f"STAFF: grading stopped after {limit} s")
        results = _zero_results(config.get("assignment"), TOO_SLOW.format(limit=limit),
                                config.get("visibility", "visible"), config.get("assignment") in CHECKPOINT_ASSIGNMENTS)
    except Exception:  # noqa: BLE001 - whatever broke, the student gets a results file and staff the traceback
        traceback.print_exc(file=sys.stdout)  # stdout goes to the staff's view only
        try:
            results = _zero_results(config.get("assignment"), GRADER_FAILED, config.get("visibility", "visible"), False)
        except Exception:  # noqa: BLE001 - even the configuration is unreadable
            results = {"score": 0.0, "output": GRADER_FAILED, "tests": []}
    finally:
        signal.signal(signal.SIGALRM, previous)
    results["execution_time"] = round(time.monotonic() - start, 1)
    write_results(out, results)
    print(f"score {results.get('score')} / {results.get('max_score')} in {results['execution_time']} s; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
