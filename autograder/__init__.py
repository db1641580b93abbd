"""vitcourse autograder: grades a student's `transformer.py` and `ViT.py` against the hidden reference.

Shape legend (the same in every file of the course):
    B batch, C channels, H/W image height/width, P patch size, N tokens,
    D embedding (embed_dim), h heads (num_heads), d head dim (D / h), K classes.

Command line (exit status 0 whenever grading completed, 2 when the grader itself could not run)::

    python -m autograder grade SUBMISSION_DIR [--json results.json] [--only PART ...]
    python -m vitcourse check [FOLDER]          # the students' self-check, no reference involved

Python::

    from autograder.grader import grade
    report = grade("submissions/alice")          # Report: .score, .max_score, .parts, .table(), .write_json()

Parts and points: `coursecore/parts/__init__.py` (`POINTS`, the one place to change them). Part ids are
`<module>.<TODO name>` (e.g. `transformer.attention`, `ViT.ViT.forward_features`) plus the composites
`transformer.Attention.forward` and `ViT.model`.

nbgrader (the exact contract for `course/`):

* hidden test cell of a part, a "grade" cell whose points equal `POINTS[part]` (or pass
  `cell_points=`)::

      from autograder.nb import grade_part
      grade_part("transformer.attention")

  It prints feedback to stdout (never stderr), never raises, and its value (the last expression) is the
  points earned, which nbgrader reads as partial credit.
* the steps of nbgrader's pipeline (`nbgrader_plugin`: SnapshotSubmission, ResilientExecute,
  RegradeHiddenCells, RestoreHandedInFiles) and the sandboxed kernel (`kernel_sandbox`), which
  `coursetools/pipeline.py` puts in place, so that the recorded score of every `grade_part` cell is
  recomputed outside the student's kernel. See docs/grading.md.

Modules: `runner` (the only code that runs next to student code; stdlib + torch), `sandbox` (process,
limits, namespaces), `cases` (hidden inputs), `bugs` (catalogue of common bugs and hints), `grader`
(comparison, scores, reports), `nb`, `nbgrader_plugin`, `kernel_sandbox`. The self-check that ships to
students is `vitcourse/course/selfcheck.py`. Layers: coursecore/__init__.py (autograder never imports
vitcourse or coursetools).
"""
