"""How far `vitcourse grade` is through the class: done / total, the rate, and the time left, without flooding a log.

The nbgrader processes grade the class out of sight; what they finish is recorded per student by nbgrader's own
hooks (`coursetools/progress.py`: `graded` true with a fresh run id). `watch` polls those records from a thread
and feeds a `ClassMeter`, which decides what to show:

* on a terminal, one line rewritten in place (`\\r`), at most once a second, ended with a newline when done;
* in a log (a pipe, a file, CI), a new line only when a student more is done *and* `log_every_s` passed since
  the last one, plus the first finished student and the last: a class of 300 graded in an hour gives about
  a line a minute, never one per student.

The rate is students per minute since grading started (the mean over the run, steadier than the last few:
a notebook that trains briefly makes single students uneven); the time left is what is left at that rate.
"""
from __future__ import annotations

import contextlib
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

LOG_EVERY_S = 60.0  # a line in a log at most this often (plus the first and the last)
TTY_EVERY_S = 1.0  # the in-place line on a terminal at most this often
POLL_S = 2.0  # how often `watch` reads the students' records


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60:02d} s"


@dataclass
class ClassMeter:
    """Progress of one grading run over `total` students, shown through `write` (a str -> None)."""

    total: int
    label: str = "graded"
    write: Callable[[str], None] = field(default=lambda text: print(text, end="", flush=True))
    tty: bool = False  # one line rewritten in place (a terminal) instead of new lines (a log)
    log_every_s: float = LOG_EVERY_S
    clock: Callable[[], float] = time.monotonic
    done: int = 0
    lines: int = 0  # how many times something was written (tests bound it)

    def __post_init__(self):
        self.start = self.clock()
        self._shown_at: Optional[float] = None
        self._shown_done = 0

    def text(self) -> str:
        """'37/300 graded (12%), 1.9 students/min, about 2 h 24 min left' (rate and time once one is done)."""
        now = self.clock()
        out = f"{self.done}/{self.total} {self.label} ({self.done / max(self.total, 1):.0%})"
        elapsed = now - self.start
        if self.done and elapsed > 0:
            rate = self.done / elapsed  # students per second, over the whole run
            out += f", {rate * 60:.1f} students/min"
            out += f", about {_clock((self.total - self.done) / rate)} left" if self.done < self.total \
                else f", in {_clock(elapsed)}"
        return out

    def update(self, done: int) -> None:
        """`done` students are finished now; show it if the rate limit allows."""
        self.done = min(max(done, self.done), self.total)
        now = self.clock()
        last = self.done >= self.total
        if self.tty:
            if last or self._shown_at is None or now - self._shown_at >= TTY_EVERY_S:
                self._show("\r" + self.text() + ("\n" if last else ""), now)
            return
        first = self._shown_done == 0 and self.done > 0
        if self.done > self._shown_done and (first or last or now - self._shown_at >= self.log_every_s):
            self._show(f"  {self.text()}\n", now)

    def finish(self) -> None:
        """Close the line on a terminal (when the run stops short of the whole class)."""
        if self.tty and self._shown_at is not None and self.done < self.total:
            self.write("\n")

    def _show(self, text: str, now: float) -> None:
        self.write(text)
        self.lines += 1
        self._shown_at, self._shown_done = now, self.done


def finished_count(course_dir: Path, assignment: str, students: list[str], before: dict[str, Optional[str]]) -> int:
    """How many of `students` were autograded since `before` (student -> run id of their record then)."""
    from coursetools import progress

    count = 0
    for s in students:
        record = progress.read(course_dir, assignment, s)
        count += bool(record.get("graded")) and record.get("run") != before.get(s)
    return count


@contextlib.contextmanager
def watch(course_dir: Path, assignment: str, students: list[str], meter: ClassMeter,
          poll_s: float = POLL_S) -> Iterator[ClassMeter]:
    """Feed `meter` from the students' records while the body runs (nbgrader processes grading them)."""
    from coursetools import progress

    before = {s: progress.read(course_dir, assignment, s).get("run") for s in students}
    stop = threading.Event()

    def poll():
        while not stop.wait(poll_s):
            meter.update(finished_count(course_dir, assignment, students, before))

    thread = threading.Thread(target=poll, name="vitcourse-grade-meter", daemon=True)
    thread.start()
    try:
        yield meter
    finally:
        stop.set()
        thread.join()
        meter.update(finished_count(course_dir, assignment, students, before))
        meter.finish()


def for_terminal(total: int, log: Callable[[str], None], label: str = "graded") -> ClassMeter:
    """The meter `vitcourse grade` shows: in place on a terminal when it prints to one, rate-limited lines else."""
    tty = log is print and sys.stdout.isatty()
    if tty:
        return ClassMeter(total, label, tty=True)
    return ClassMeter(total, label, write=lambda text: log(text.rstrip("\n")))
