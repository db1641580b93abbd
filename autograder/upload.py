"""Turn whatever a student uploaded into a flat folder with the files the grader expects, or say why not.

Students upload through a web form, so uploads vary: the files inside a zip (or a zip inside a zip), in
folders several levels deep, renamed by the browser (`ViT (1).py`) or by hand (`vit.py`), or a notebook
instead of the `.py` files. `normalise(upload, assignment, dest)` copies what it can recognise into `dest`
under the exact names (`registry.files_for(assignment)`, plus `vit_checkpoint.pt` where the assignment is
graded from a checkpoint) and returns notes for the student: what was renamed or found where, and, when
nothing gradable is there, what is wrong and how to upload correctly.

It runs in the grader's process on untrusted input: symlinks are never followed, zip members are read
by name into memory (never extracted to their own paths), and sizes, member counts and nesting are capped.
"""
from __future__ import annotations

import io
import re
import stat
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Optional

from autograder.accuracy import CHECKPOINT, CHECKPOINT_ASSIGNMENTS, MAX_CHECKPOINT_BYTES
from coursecore.parts import module_of, parts_for
from coursecore.registry import files_for

MAX_DEPTH = 6  # folders searched below the upload (and inside a zip)
MAX_ZIP_NESTING = 2  # a zip inside the upload, and a zip inside that one
MAX_MEMBERS = 5000  # entries looked at per zip
MAX_ZIP_BYTES = 512 << 20  # a zip file larger than this is not opened
# A zip inside the upload's zip is read into memory to be opened: each at most this large unpacked, all of them
# together at most NESTED_BUDGET (Gradescope's default container has 2 GB, torch takes 1.5 of it).
MAX_NESTED_ZIP_BYTES = 64 << 20
NESTED_BUDGET = 128 << 20
MAX_SOURCE_BYTES = 1 << 20  # a student .py file larger than this is not a hand-written module
SKIPPED_FOLDERS = ("__MACOSX", "__pycache__", ".ipynb_checkpoints")
# "ViT (1).py", "ViT(2).py", "ViT - Copy.py", "ViT copy.py", "ViT-1.py": what browsers and file managers add.
_COPY_SUFFIX = re.compile(r"(\s*\(\d+\)|\s*-\s*copy(\s*\(\d+\))?|\s+copy(\s+\d+)?|-\d+)$", re.IGNORECASE)


@dataclass
class _Candidate:
    where: str  # path shown to the student ("hw/ViT (1).py", "upload.zip:hw/ViT.py")
    name: str  # base name
    depth: int
    size: int
    read: Callable[[], bytes]


@dataclass
class Upload:
    """A normalised upload."""

    folder: Path  # flat folder: the recognised files under their exact names
    found: dict[str, str] = field(default_factory=dict)  # exact name -> where in the upload it came from
    notes: list[str] = field(default_factory=list)  # for the student: renames, locations, ignored files
    problem: Optional[str] = None  # nothing gradable: what is wrong and how to fix it


def wanted_files(assignment: Optional[str]) -> tuple[str, ...]:
    """The files taken from an upload for `assignment` (the student modules, plus the checkpoint for a3)."""
    extra = (CHECKPOINT,) if assignment in CHECKPOINT_ASSIGNMENTS else ()
    return (*files_for(assignment), *extra)


def graded_files(assignment: Optional[str]) -> tuple[str, ...]:
    """The student modules whose parts `assignment` grades: at least one must be in the upload."""
    modules = {module_of(p) for p in parts_for(assignment)}
    return tuple(f for f in files_for(assignment) if f[:-3] in modules)


def _canonical(name: str) -> str:
    """'ViT (1).py' -> 'vit.py': lower case, browser copy suffixes removed."""
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    stem = _COPY_SUFFIX.sub("", stem.strip())
    return f"{stem}.{ext}".lower() if ext else stem.lower()


def _skipped(parts) -> bool:
    return any(p.startswith(".") or p in SKIPPED_FOLDERS for p in parts)


def _zip_candidates(data_or_path, where: str, nesting: int, out: list[_Candidate], notes: list[str],
                    budget: list[int] | None = None) -> None:
    budget = budget if budget is not None else [NESTED_BUDGET]  # bytes of nested zips still allowed in memory
    try:
        archive = zipfile.ZipFile(data_or_path)
    except (zipfile.BadZipFile, OSError, ValueError):
        notes.append(f"{where} is not a readable zip file; it was ignored.")
        return
    with archive:
        for info in archive.infolist()[:MAX_MEMBERS]:
            path = PurePosixPath(info.filename.replace("\\", "/"))
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode) and not info.is_dir():
                notes.append(f"{where}:{path} is a link: links are never followed, so it was not graded.")
                continue
            if info.is_dir() or _skipped(path.parts[:-1]) or path.name.startswith("."):
                continue
            if len(path.parts) - 1 > MAX_DEPTH or ".." in path.parts:
                continue
            label = f"{where}:{path}"
            if path.suffix.lower() == ".zip":
                if nesting >= MAX_ZIP_NESTING:
                    continue
                if info.file_size > min(MAX_NESTED_ZIP_BYTES, budget[0]):  # declared size, checked before inflating
                    notes.append(f"{label} unpacks to {info.file_size >> 20} MiB, more than a zip inside your zip may "
                                 f"({MAX_NESTED_ZIP_BYTES >> 20} MiB): it was not opened. Upload your files themselves.")
                    continue
                budget[0] -= info.file_size
                data = _read_member(archive, info, label, notes)
                if data is not None:
                    _zip_candidates(io.BytesIO(data), label, nesting + 1, out, notes, budget)
                continue
            out.append(_Candidate(label, path.name, len(path.parts) - 1 + nesting,
                                  info.file_size, lambda d=data_or_path, i=info.filename: _reread(d, i)))


# What reading a damaged member raises: a bad checksum, a truncated or corrupt deflate stream, an unknown method.
ZIP_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError, RuntimeError)


class DamagedFile(ValueError):
    """A member of the student's zip that cannot be read back as it was written; the message says which."""


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, label: str, notes: list[str]) -> bytes | None:
    """A member's bytes, or None with a note when the student's zip is damaged there (bad checksum, truncated)."""
    try:
        return archive.read(info)
    except ZIP_READ_ERRORS as err:
        notes.append(_damaged(label, err))
        return None


def _damaged(label: str, err: BaseException) -> str:
    return (f"{label} is damaged in your zip ({type(err).__name__}: {str(err)[:120]}): make the zip again (or "
            "upload the files themselves) and resubmit.")


def _reread(data_or_path, member: str) -> bytes:
    if isinstance(data_or_path, io.BytesIO):
        data_or_path.seek(0)
    try:
        with zipfile.ZipFile(data_or_path) as archive:
            return archive.read(member)
    except ZIP_READ_ERRORS as err:
        raise DamagedFile(f"{type(err).__name__}: {str(err)[:120]}") from None


def _candidates(root: Path, notes: list[str]) -> list[_Candidate]:
    out: list[_Candidate] = []

    def visit(folder: Path, depth: int) -> None:
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            return
        for entry in entries:
            try:
                info = entry.lstat()
            except OSError:
                continue
            rel = entry.relative_to(root).as_posix()
            if stat.S_ISLNK(info.st_mode):  # never follow a link out of the upload
                notes.append(f"{rel} is a link: links are never followed, so it was not graded. Upload the file itself.")
                continue
            if entry.name.startswith("."):
                continue
            if stat.S_ISDIR(info.st_mode):
                if depth < MAX_DEPTH and entry.name not in SKIPPED_FOLDERS:
                    visit(entry, depth + 1)
            elif stat.S_ISREG(info.st_mode):
                if entry.suffix.lower() == ".zip":
                    if info.st_size <= MAX_ZIP_BYTES:
                        _zip_candidates(str(entry), rel, 1, out, notes)
                    continue
                out.append(_Candidate(rel, entry.name, depth, info.st_size, entry.read_bytes))

    if root.is_dir():
        visit(root, 0)
    return out


def _pick(name: str, candidates: list[_Candidate]) -> tuple[Optional[_Candidate], bool]:
    """The best candidate for `name`: exact name first, then a recognisable variant; shallowest first."""
    order = lambda c: (c.depth, c.where)  # noqa: E731
    exact = sorted((c for c in candidates if c.name == name), key=order)
    if exact:
        return exact[0], False
    similar = sorted((c for c in candidates if _canonical(c.name) == name.lower()), key=order)
    if similar:
        return similar[0], True
    if name == CHECKPOINT:  # any single PyTorch file is the checkpoint
        weights = [c for c in candidates if c.name.lower().endswith((".pt", ".pth"))]
        if len(weights) == 1:
            return weights[0], True
    return None, False


def _how_to_upload(assignment: Optional[str]) -> str:
    files = " and ".join(f"`{f}`" for f in wanted_files(assignment))
    return (f"Upload {files} themselves (drag the files, or a zip of them, onto the submission form), with "
            f"exactly these names. In Colab they are in your course folder (Files panel on the left: right-click "
            f"→ Download).")


def normalise(upload: str | Path, assignment: Optional[str], dest: str | Path) -> Upload:
    """Copy the recognisable files of `upload` into the new folder `dest` under their exact names."""
    upload, dest = Path(upload), Path(dest)
    dest.mkdir(parents=True, exist_ok=False)
    result = Upload(dest)
    candidates = _candidates(upload, result.notes)
    for name in wanted_files(assignment):
        best, renamed = _pick(name, candidates)
        if best is None:
            continue
        limit = MAX_CHECKPOINT_BYTES if name == CHECKPOINT else MAX_SOURCE_BYTES
        if best.size > limit:
            result.notes.append(f"{best.where} is larger than {limit >> 20} MiB and was not graded.")
            continue
        try:
            data = best.read()
        except DamagedFile as err:
            result.notes.append(f"{best.where} is damaged in your zip ({err}): make the zip again (or upload the files "
                                "themselves) and resubmit.")
            continue
        if len(data) > limit:  # what a zip's header declared was not what it held
            result.notes.append(f"{best.where} is larger than {limit >> 20} MiB and was not graded.")
            continue
        (dest / name).write_bytes(data)
        result.found[name] = best.where
        if renamed:
            result.notes.append(f"graded `{best.where}` as `{name}`: next time name it exactly `{name}` "
                                "(names are case-sensitive: Python imports the module by its file name).")
        elif best.where != name:
            result.notes.append(f"found `{name}` at `{best.where}`.")
    missing = [f for f in wanted_files(assignment) if f not in result.found]
    if any(f in result.found for f in graded_files(assignment)):
        for name in missing:
            result.notes.append(f"`{name}` is not in your upload: what needs it scores 0. {_how_to_upload(assignment)}")
        return result
    notebooks = [c.where for c in candidates if c.name.lower().endswith(".ipynb")]
    seen = ", ".join(f"`{c.where}`" for c in candidates[:8]) + (" ..." if len(candidates) > 8 else "")
    if notebooks:
        result.problem = (f"You uploaded a notebook ({', '.join(notebooks[:3])}) but not your code files: the "
                          f"autograder grades the code you wrote in {', '.join(graded_files(assignment))}, which "
                          f"the notebook imports but does not contain. {_how_to_upload(assignment)}")
    elif not candidates:
        result.problem = f"Your upload is empty: there is no file in it. {_how_to_upload(assignment)}"
    else:
        result.problem = (f"Your upload has no {' or '.join(graded_files(assignment))} (it holds {seen}). "
                          f"{_how_to_upload(assignment)}")
    return result
