"""Due dates and the late policy: read from the course's one declaration, applied the same way on every path.

The instructor edits one file, `course/deadlines.toml` (next to nbgrader_config.py):

    [default]                 # the policy of every assignment that does not say otherwise
    grace_minutes = 15
    per_day = 0.10            # fraction of the score lost per started day late
    cap = 0.50                # the most lateness ever costs (fraction of the score)

    [a2_transformer]
    due = 2026-10-12T23:59:00-07:00   # a TOML date-time with its UTC offset
    per_day = 0.20                    # optional: this assignment's own policy

`vitcourse grade` / `nbgrader autograde` (coursetools/lateness.py) write the due date into the gradebook and
let nbgrader's AssignLatePenalties ask `Deadline.penalty` for each notebook; the Gradescope bundle carries the
same declaration in its gradescope.json (`Deadline.to_json`) and its runner calls the same `Deadline.penalty`
with the submission time of `submission_metadata.json`. One arithmetic, so both paths give the same grade.

It imports only the standard library: the Gradescope runner reads it too.
"""
from __future__ import annotations

import datetime as dt
import math
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Optional

FILE = "deadlines.toml"  # in the nbgrader course folder (course/)
DAY_S = 86400.0


class DeadlineError(ValueError):
    """deadlines.toml says something the graders cannot apply; the message says where and what to write."""


@dataclass(frozen=True)
class LatePolicy:
    """How much lateness costs, as a fraction of the score the submission earned."""

    grace_minutes: float = 15.0  # an upload that finishes minutes after the deadline (slow Drive sync) is on time
    per_day: float = 0.10  # lost per started day after the due date (a day and a minute late = two days)
    cap: float = 0.50  # the most a late submission ever loses: very late work still earns half

    def __post_init__(self):
        for name in ("per_day", "cap"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise DeadlineError(f"{name} = {value} is a fraction of the score: write a number from 0 to 1")
        if self.grace_minutes < 0:
            raise DeadlineError(f"grace_minutes = {self.grace_minutes}: write 0 or more minutes")

    def days_late(self, seconds_late: float) -> int:
        """Started days late that the policy counts (0 within the grace period)."""
        if seconds_late <= self.grace_minutes * 60.0:
            return 0
        return math.ceil(seconds_late / DAY_S)

    def fraction(self, seconds_late: float) -> float:
        """Fraction of the score that `seconds_late` after the due date costs."""
        return min(self.cap, self.per_day * self.days_late(seconds_late))

    def describe(self) -> str:
        return (f"{self.per_day:.0%} of the score per started day late, at most {self.cap:.0%}, "
                f"after a grace of {self.grace_minutes:g} minutes")


@dataclass(frozen=True)
class Lateness:
    """What the policy made of one submission: enough to explain it to the student."""

    due: dt.datetime  # aware
    submitted: Optional[dt.datetime]  # aware; None: no submission time known (counted as on time)
    policy: LatePolicy

    @property
    def seconds_late(self) -> float:
        return max(0.0, (self.submitted - self.due).total_seconds()) if self.submitted else 0.0

    @property
    def fraction(self) -> float:
        return self.policy.fraction(self.seconds_late)

    def penalty(self, score: float) -> float:
        """Points taken from `score` (never more than the score)."""
        return min(max(score, 0.0), max(score, 0.0) * self.fraction)

    def describe(self, score: Optional[float] = None) -> str:
        """One sentence for the student: when it was due, when it came, what that costs and why."""
        due = _show(self.due)
        if self.submitted is None:
            return f"Due {due}; no submission time was recorded, so it counts as on time."
        if self.seconds_late <= 0:
            return f"Handed in {_show(self.submitted)}, due {due}: on time."
        late = f"Handed in {_show(self.submitted)}, {_duration(self.seconds_late)} after the due date ({due})"
        if self.fraction == 0:
            return f"{late}: within the grace period, no penalty."
        cost = f"{self.fraction:.0%} of the score"
        if score is not None:
            cost += f" ({self.penalty(score):.2f} of {score:.2f} points)"
        return f"{late}: the late policy ({self.policy.describe()}) takes {cost}."


@dataclass(frozen=True)
class Deadline:
    """One assignment's due date and policy."""

    due: dt.datetime  # aware (with its UTC offset)
    policy: LatePolicy = LatePolicy()

    def assess(self, submitted: Optional[dt.datetime]) -> Lateness:
        return Lateness(self.due, aware(submitted) if submitted else None, self.policy)

    def penalty(self, score: float, submitted: Optional[dt.datetime]) -> float:
        return self.assess(submitted).penalty(score)

    def to_json(self) -> dict:
        return {"due": self.due.isoformat(), **asdict(self.policy)}

    @classmethod
    def from_json(cls, data: dict) -> "Deadline":
        return cls(parse_time(data["due"]), LatePolicy(**{f.name: data[f.name] for f in fields(LatePolicy)
                                                          if f.name in data}))


# ---- times ------------------------------------------------------------------------------------------------

def aware(t: dt.datetime) -> dt.datetime:
    """`t` with a time zone: a naive time is UTC (nbgrader's gradebook and timestamp.txt store naive UTC)."""
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def parse_time(text: str) -> dt.datetime:
    """An ISO 8601 time ('2026-10-12T23:59:00-07:00', '...Z', Gradescope's microseconds), aware."""
    return aware(dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00")))


def _show(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _duration(seconds: float) -> str:
    days, rest = divmod(int(seconds), int(DAY_S))
    hours, rest = divmod(rest, 3600)
    parts = [f"{days} day{'s' * (days != 1)}"] if days else []
    if hours or not days:
        parts.append(f"{hours} h {rest // 60} min" if not days else f"{hours} h")
    return " ".join(parts)


# ---- the declaration --------------------------------------------------------------------------------------

def load(course_dir, known: Optional[list[str]] = None) -> dict[str, Deadline]:
    """assignment -> Deadline from `course_dir`/deadlines.toml ({} when there is no such file).

    `known`: the course's assignments; a section naming another one is refused (a typo would silently
    leave that assignment without a due date).
    """
    path = Path(course_dir) / FILE
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise DeadlineError(f"{path}: {err}; fix the file (TOML) and run the command again") from None
    policy_keys = {f.name for f in fields(LatePolicy)}
    default = dict(data.pop("default", {}))
    out = {}
    for assignment, section in data.items():
        where = f"{path} [{assignment}]"
        if not isinstance(section, dict):
            raise DeadlineError(f"{path}: `{assignment} = ...` must be a section, [{assignment}] with due = ...")
        if known is not None and assignment not in known:
            raise DeadlineError(f"{where}: no assignment of that name; the course has {', '.join(known)}")
        extra = set(section) - policy_keys - {"due"}
        if extra:
            raise DeadlineError(f"{where}: unknown setting {', '.join(sorted(extra))}; "
                                f"write due, {', '.join(sorted(policy_keys))}")
        due = section.get("due")
        if due is None:
            continue  # a section without a due date: no penalty for that assignment
        if isinstance(due, str):  # a quoted time: read as ISO 8601, its offset still required below
            try:
                due = dt.datetime.fromisoformat(due.strip().replace("Z", "+00:00"))
            except ValueError:
                pass
        if not isinstance(due, dt.datetime) or due.tzinfo is None:
            raise DeadlineError(f"{where}: due = {due!r} needs a date, a time and its UTC offset, "
                                "e.g. due = 2026-10-12T23:59:00-07:00 (or ...Z for UTC)")
        try:
            policy = LatePolicy(**{k: float(v) for k, v in {**default, **section}.items() if k in policy_keys})
        except DeadlineError as err:
            raise DeadlineError(f"{where}: {err}") from None
        out[assignment] = Deadline(due, policy)
    return out


def for_assignment(course_dir, assignment: str) -> Optional[Deadline]:
    """The assignment's Deadline, or None when deadlines.toml gives it no due date."""
    return load(course_dir).get(assignment)
