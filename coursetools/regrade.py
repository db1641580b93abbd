"""Re-autograding (`--force`) keeps what the TA graded by hand: the manual score *and* its graded state.

nbgrader's `SaveAutoGrades._add_score` sets `needs_manual_grade = True` on every grade that has a manual
score ("if there was previously a manual grade ... mark this as needing review"), whatever changed: after
`nbgrader autograde --force` every answer a TA already marked shows as ungraded again in the formgrader,
and the class waits for a second pass that has nothing to review.

`KeepManualGrades` (in place of SaveAutoGrades, set by `coursetools.pipeline`) runs nbgrader's step
and then puts the state back for a grade the TA had finished (a manual score, not flagged) when nothing the
TA looked at changed:

* an answer cell: the student's source is the one that was autograded last time (digest in the
  `.grading/` record, `coursetools.progress`); a changed answer is flagged for review, as nbgrader does;
* a test cell whose score the TA overrode: the autograder's score is the same as before; a new
  automatic score is flagged for review.
"""
from __future__ import annotations

from nbgrader import utils
from nbgrader.preprocessors import SaveAutoGrades
from traitlets import Unicode

from coursetools import progress


class KeepManualGrades(SaveAutoGrades):
    """SaveAutoGrades that does not re-flag finished manual grades whose answer and auto score are unchanged."""

    course_root = Unicode("", help="course folder holding .grading/ (coursetools.progress)").tag(config=True)

    def preprocess(self, nb, resources):
        record = progress.read(self.course_root, resources["nbgrader"]["assignment"],
                               resources["nbgrader"]["student"]) if self.course_root else {}
        self._previous_answers = record.get("answers", {}).get(resources["nbgrader"]["notebook"], {})
        return super().preprocess(nb, resources)

    def _add_score(self, cell, resources) -> None:
        grade = self.gradebook.find_grade(cell.metadata["nbgrader"]["grade_id"], self.notebook_id,
                                          self.assignment_id, self.student_id)
        finished = grade.manual_score is not None and not grade.needs_manual_grade
        old_auto = grade.auto_score
        super()._add_score(cell, resources)
        if not finished:
            return
        if utils.is_solution(cell):
            unchanged = self._previous_answers.get(grade.name) == progress.answer_digest(cell.source)
        else:
            unchanged = grade.auto_score == old_auto
        if unchanged and grade.needs_manual_grade:
            grade.needs_manual_grade = False
            self.gradebook.db.commit()
