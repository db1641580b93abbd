"""`vitcourse grade`'s progress: done / total, the rate and the time left, rate-limited in a log, in place on a
terminal, read from the per-student records nbgrader's hooks write (coursetools/progress.py)."""
from __future__ import annotations

import re
import threading
import time

import pytest

from coursetools import meter, progress


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def _run(total: int, seconds_each: float, tty: bool, log_every_s: float = 60.0):
    clock, out = Clock(), []
    m = meter.ClassMeter(total, write=out.append, tty=tty, log_every_s=log_every_s, clock=clock)
    for done in range(1, total + 1):
        clock.now += seconds_each
        m.update(done)
    return m, out


def test_a_log_gets_about_a_line_a_minute_never_one_per_student():
    total, each = 300, 12.0  # an hour of grading
    m, out = _run(total, each, tty=False)
    # the first student, then one line per minute, and the last: the oracle counts minutes of the run
    minutes = int(total * each // 60)
    assert minutes - 1 <= len(out) <= minutes + 2, len(out)
    assert all(line.endswith("\n") and "\r" not in line for line in out)
    assert out[-1].strip().startswith(f"{total}/{total} graded (100%)")


def test_the_rate_and_the_time_left_are_what_is_left_at_the_runs_mean_rate():
    clock, out = Clock(), []
    m = meter.ClassMeter(40, write=out.append, clock=clock)
    clock.now += 90.0
    m.update(3)  # 3 students in 90 s: 2 per minute, 37 left -> 18.5 min
    rate = 3 / 90.0
    left = (40 - 3) / rate
    text = out[-1]
    assert "3/40 graded (8%)" in text
    assert f"{rate * 60:.1f} students/min" in text
    assert f"about {int(left // 60)} min {int(round(left)) % 60:02d} s left" in text, text


def test_nothing_is_printed_before_a_student_is_done_nor_twice_for_the_same_count():
    clock, out = Clock(), []
    m = meter.ClassMeter(10, write=out.append, clock=clock, log_every_s=1.0)
    for _ in range(5):
        clock.now += 100
        m.update(0)
    assert out == []
    m.update(1)
    clock.now += 100
    m.update(1)
    assert len(out) == 1


def test_a_terminal_gets_one_line_rewritten_in_place():
    m, out = _run(50, 0.25, tty=True)
    text = "".join(out)
    assert text.count("\n") == 1 and text.endswith("\n")
    assert all(chunk.startswith("\r") for chunk in out)
    assert len(out) <= 50 * 0.25 / meter.TTY_EVERY_S + 2  # at most once a second
    assert re.search(r"50/50 graded \(100%\), [\d.]+ students/min, in ", out[-1])


def test_watch_counts_the_students_nbgrader_finished(tmp_path):
    students = ["ada", "ben", "cy"]
    progress._update(tmp_path, "a5", "cy", graded=True, run="old")  # graded by an earlier run: not counted twice
    out = []
    m = meter.ClassMeter(3, write=out.append)

    def grade():  # what nbgrader's hooks do while the batches run
        for s in students:
            time.sleep(0.05)
            progress.autograde_started(str(tmp_path), notebooks=[f"{tmp_path}/submitted/{s}/a5/a5.ipynb"])
            progress._update(tmp_path, "a5", s, graded=True, run=f"new-{s}")
    with meter.watch(tmp_path, "a5", students, m, poll_s=0.02):
        worker = threading.Thread(target=grade)
        worker.start()
        worker.join()
    assert m.done == 3 and out and out[-1].strip().startswith("3/3 graded")


def test_a_run_that_stops_short_closes_the_terminal_line():
    out = []
    m = meter.ClassMeter(5, write=out.append, tty=True)
    m.update(2)
    m.finish()
    assert out[-1] == "\n"
