"""The core the course's other packages stand on: what a student module, an assignment and a graded part are,
where the course is, how a folder of student modules is loaded, the settings and safe file writes.

Layers, by folder (tests/test_layers.py checks the imports):

    coursecore   this package: imports only the standard library (torch lazily, inside functions)
    data_utils   data: imports coursecore
    vitcourse    what a student's notebook uses, shipped whole in every release: imports coursecore, data_utils
    autograder   the grader: imports coursecore, data_utils; never vitcourse
    coursetools  the instructor's and TA's tools (release, grading a class, the `vitcourse` command): all of them

vitcourse and autograder never import each other.
"""
