"""Late penalties on the nbgrader path: the submission time from the LMS's download, the policy of deadlines.toml.

nbgrader has the machinery and nothing feeding it: `AssignLatePenalties` asks a `LateSubmissionPlugin` for a
penalty when `submission.timestamp` is after the assignment's `duedate` in the gradebook, and `export` and the
feedback page show it. Nothing set a due date, and zip_collect wrote no timestamp, so every submission was on
time. Here, each piece gets its input from the course's one declaration (coursecore/deadlines.py):

* `TimedCollectorPlugin` (zip_collect) gives every collected submission its time, on top of the collector that
  says who handed it in and keeps one copy of each file (coursetools/collect.py: the newest LMS upload of a
  resubmission): with Canvas's bulk-download names (`coursetools/lms_names.py`) the LATE marker decides whether
  it is late (it knows each student's own due date), and the zip's newest member time how late; a plain
  `<student id>.zip` has only the zip's time (the hand-in cell writes UTC).
* `CourseLatePenalties` (autograde) writes the declared due date into the gradebook and lets nbgrader compute
  the seconds late; its plugin `CoursePolicyPlugin` is `Deadline.policy.fraction(seconds late) × score`.
* `reapply` recomputes every notebook's penalty from its current score: nbgrader fixes the penalty when it
  autogrades, before a TA grades the written answers, so a late student's manual points would escape it.
  `vitcourse grade --feedback-only` and `vitcourse export` call it first.
* `ExplainLateness` (feedback) puts one sentence at the top of a late (or timed) student's feedback: when it
  was due, when it came, what the policy took and why; nbgrader's own page adds only "Late submission penalty".
"""
from __future__ import annotations

import datetime as dt
import zipfile
from pathlib import Path
from typing import Optional

import nbformat
from nbconvert.preprocessors import Preprocessor
from nbgrader.plugins import LateSubmissionPlugin
from nbgrader.preprocessors import AssignLatePenalties
from traitlets import Bool, Unicode, default

from coursecore import deadlines
from coursetools.collect import OneCopyCollectorPlugin
from coursetools.lms_names import parse_canvas_name

EXPLAIN_MARK = "vitcourse_lateness"  # metadata of the feedback cell ExplainLateness adds
ONE_S = dt.timedelta(seconds=1)


def _naive_utc(t: dt.datetime) -> dt.datetime:
    """nbgrader's gradebook and timestamp.txt hold naive UTC times."""
    return deadlines.aware(t).astimezone(dt.timezone.utc).replace(tzinfo=None)


def zip_time(path: Path) -> Optional[dt.datetime]:
    """The newest member time of a zip, as UTC (the hand-in cell writes UTC times), or None."""
    try:
        with zipfile.ZipFile(path) as archive:
            stamps = [dt.datetime(*info.date_time, tzinfo=dt.timezone.utc) for info in archive.infolist()]
    except (OSError, zipfile.BadZipFile, ValueError):
        return None
    return max(stamps, default=None)


def submission_time(archive: Optional[Path], folder: str, deadline: Optional[deadlines.Deadline],
                    log=None) -> Optional[dt.datetime]:
    """When the submission extracted to `folder` (the archive's stem) was handed in, as far as the download says.

    Canvas names: the LATE marker decides on which side of the due date it lies (a zip's time is the
    student's clock, and only Canvas knows an extension); the zip's time says how late, and is at least
    just past the grace period when Canvas says late. Any other name: the zip's time, or None.
    """
    when = zip_time(archive) if archive is not None else None
    canvas = parse_canvas_name(folder)
    if canvas is None or deadline is None:
        return when
    grace_end = deadline.due + dt.timedelta(minutes=deadline.policy.grace_minutes)
    if canvas.late:
        if when is None or when <= grace_end:
            if log:
                log(f"{folder}: Canvas marks it LATE but the zip's time does not say how late; counted as "
                    f"handed in just after the grace period ({grace_end + ONE_S:%Y-%m-%d %H:%M} UTC)")
            return grace_end + ONE_S
        return when
    if when is None or when > deadline.due:
        return deadline.due  # on time for Canvas (an extension, or a clock that was wrong)
    return when


class TimedCollectorPlugin(OneCopyCollectorPlugin):
    """The course's collector (who a file is, one copy of a file handed in twice: coursetools/collect.py), plus
    the submission time of each collected file, for the late policy."""

    def _deadline(self) -> Optional[deadlines.Deadline]:
        if not hasattr(self, "_deadline_read"):
            app = self.parent
            self._deadline_read = deadlines.for_assignment(Path(app.coursedir.root), app.coursedir.assignment_id)
        return self._deadline_read

    def _handed_in(self, submitted_file: str) -> Optional[dt.datetime]:
        """When the top-level entry (a zip's folder, a loose file) that holds `submitted_file` was handed in."""
        where = self._extracted(submitted_file)
        if where is None:
            return None
        extracted, _, inside = where
        top = inside.split("/")[0]
        archive = Path(self.parent._format_collect_path(self.parent.archive_directory))
        source = next((archive / f"{top}{ext}" for ext in (".zip", ".ZIP") if (archive / f"{top}{ext}").is_file()),
                      None)
        return submission_time(source, top, self._deadline(), self.log.warning)

    def collect(self, submitted_file: str) -> Optional[dict]:
        info = super().collect(submitted_file)
        if not info or self.parent is None or not hasattr(self.parent, "coursedir") or self._deadline() is None:
            return info  # no due date declared: no time, nothing late (and nothing regraded for a new timestamp)
        when = self._handed_in(submitted_file)
        if when is not None:
            info["timestamp"] = _naive_utc(when)
        return info


# ---- autograde: the due date into the gradebook, the policy into nbgrader's late-penalty step ---------------

def sync_due_date(gradebook, assignment: str, deadline: Optional[deadlines.Deadline]) -> None:
    """Set the gradebook's due date of `assignment` to the declared one (left alone when none is declared)."""
    if deadline is None:
        return
    row = gradebook.find_assignment(assignment)
    due = _naive_utc(deadline.due)
    if row.duedate != due:
        row.duedate = due
        gradebook.db.commit()


class CoursePolicyPlugin(LateSubmissionPlugin):
    """nbgrader's late-penalty plugin with the course's policy: fraction(seconds late) × the notebook's score."""

    def late_submission_penalty(self, student_id: str, score: float, total_seconds_late: float) -> Optional[float]:
        deadline = getattr(self.parent, "deadline", None)
        if deadline is None:
            return None
        return deadline.policy.fraction(total_seconds_late) * max(score, 0.0)


class CourseLatePenalties(AssignLatePenalties):
    """AssignLatePenalties after writing deadlines.toml's due date into the gradebook (so nbgrader counts the
    seconds late), with CoursePolicyPlugin as its plugin."""

    course_root = Unicode("", help="the nbgrader course folder holding deadlines.toml").tag(config=True)

    @default("plugin_class")
    def _course_policy(self):
        return CoursePolicyPlugin

    def preprocess(self, nb, resources):
        from nbgrader.api import Gradebook

        assignment = resources["nbgrader"]["assignment"]
        self.deadline = deadlines.for_assignment(self.course_root, assignment) if self.course_root else None
        with Gradebook(resources["nbgrader"]["db_url"]) as gb:
            sync_due_date(gb, assignment, self.deadline)
        return super().preprocess(nb, resources)


def reapply(course_dir: Path, assignment: str) -> int:
    """Recompute every submitted notebook's penalty of `assignment` from its current score (manual grades
    included) with the declared policy; returns how many submissions are penalised."""
    from nbgrader.api import Gradebook, MissingEntry

    course_dir = Path(course_dir)
    deadline = deadlines.for_assignment(course_dir, assignment)
    db = course_dir / "gradebook.db"
    if deadline is None or not db.exists():
        return 0
    late = 0
    with Gradebook(f"sqlite:///{db}") as gb:
        try:
            sync_due_date(gb, assignment, deadline)
        except MissingEntry:
            return 0
        for sub in gb.assignment_submissions(assignment):
            fraction = deadline.policy.fraction(sub.total_seconds_late)
            late += fraction > 0
            for nb in sub.notebooks:
                nb.late_submission_penalty = fraction * max(nb.score, 0.0) if fraction > 0 else None
        gb.db.commit()
    return late


def reapply_all(course_dir: Path) -> None:
    """`reapply` for every assignment deadlines.toml gives a due date (before an export)."""
    for assignment in deadlines.load(course_dir):
        reapply(course_dir, assignment)


# ---- feedback: one sentence on when it came and what that cost ----------------------------------------------

class ExplainLateness(Preprocessor):
    """Insert, at the top of the feedback, when the submission was due and came, and what the policy took."""

    course_root = Unicode("", help="the nbgrader course folder holding deadlines.toml").tag(config=True)
    enabled = Bool(True).tag(config=True)  # nbconvert registers configured preprocessors disabled otherwise

    def preprocess(self, nb, resources):
        from nbgrader.api import Gradebook

        info = resources.get("nbgrader", {})
        deadline = deadlines.for_assignment(self.course_root, info.get("assignment", "")) if self.course_root else None
        if deadline is None or "db_url" not in info:
            return nb, resources
        with Gradebook(info["db_url"]) as gb:
            sub = gb.find_submission(info["assignment"], info["student"])
            notebook = gb.find_submission_notebook(info["notebook"], info["assignment"], info["student"])
            text = deadline.assess(sub.timestamp).describe(notebook.score)
        nb.cells = [c for c in nb.cells if EXPLAIN_MARK not in c.get("metadata", {})]
        cell = nbformat.v4.new_markdown_cell(f"**Submission time.** {text}")
        cell.metadata[EXPLAIN_MARK] = True
        nb.cells.insert(0, cell)
        return nb, resources
