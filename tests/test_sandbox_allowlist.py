"""The allow-list sandbox (autograder/bwrap.py): the CLI grader's student process and nbgrader's student
kernel see only their own folder and the runtime, whatever else the machine holds.

The attacker's files are planted outside the repository, home and /tmp (an "older checkout" under
/var/tmp), where the `unshare` fallback's deny-list would not look: only an allow-list hides them; and in
the temp folder and $HOME too. The same walk from a kernel started by the real `nbgrader autograde` is in
tests/test_nbgrader_attacks.py.
"""
from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from autograder import bwrap, grader, sandbox
from coursecore import impl

pytestmark = pytest.mark.skipif(not bwrap.usable(), reason="bubblewrap does not work on this machine")
# The walk runs at import: 20,000 folders of /usr and site-packages take under a second when cached, but
# once took over the former 30 s under the full suite's two workers.
LIMITS = sandbox.Limits(startup_timeout=90, import_timeout=120, part_timeout=8, total_timeout=300)
TOKEN = uuid.uuid4().hex  # appended to the planted copies only: a file holding it is one of them


@pytest.fixture(scope="module")
def planted():
    """A copy of the reference and a fake gradebook outside every place the deny-list knows."""
    root = Path("/var/tmp") / f"vitcourse-old-checkout-{uuid.uuid4().hex[:8]}"
    (root / "solutions").mkdir(parents=True)
    for name in ("transformer.py", "ViT.py"):
        text = (impl.solutions_dir() / name).read_text()
        (root / "solutions" / name).write_text(f"{text}\n# {TOKEN}\n")
    (root / "gradebook.db").write_text(f"grades {TOKEN}")
    # And an unpacked archive in the temp folder and an old checkout in $HOME (the grader's own, as root).
    others = [Path(tempfile.gettempdir()) / f"vitcourse-unpacked-{uuid.uuid4().hex[:8]}",
              Path.home() / f".vitcourse-old-{uuid.uuid4().hex[:8]}"]
    for other in others:
        shutil.copytree(root / "solutions", other / "solutions")
    yield root
    for folder in (root, *others):
        shutil.rmtree(folder, ignore_errors=True)


WALK = f"""
import os
def _found():
    hits = []
    for top, dirs, files in os.walk("/"):
        if top in ("/proc", "/sys", "/dev"):
            dirs[:] = []
            continue
        for name in files:
            if name in ("transformer.py", "ViT.py", "gradebook.db"):
                path = os.path.join(top, name)
                try:
                    text = open(path, errors="replace").read()
                except OSError:
                    continue
                if {TOKEN[:16]!r} + {TOKEN[16:]!r} in text:  # split: the walker's own file is no hit
                    hits.append(path)
    return hits
FOUND = _found()
print("FOUND", FOUND)
"""


def test_cli_student_walking_the_whole_file_system_finds_no_reference(planted, tmp_path):
    sub = tmp_path / "walker"
    sub.mkdir()
    for name in ("transformer.py", "ViT.py"):
        shutil.copyfile(impl.solutions_dir() / name, sub / name)
    text = (sub / "ViT.py").read_text()
    future = "from __future__ import annotations\n"
    text = text.replace(future, future + WALK, 1).replace("    return emb\n", "    return emb + len(FOUND)\n")
    (sub / "ViT.py").write_text(text)
    report = grader.grade(sub, only=["ViT.sincos_1d_embedding"], limits=LIMITS, hide=[sub])
    assert sandbox.isolation()[0][0] == bwrap.binary()
    # Each file found would have shifted the embedding: full marks means the walk found nothing.
    assert report.score == report.max_score, report.printed


def test_cli_without_bubblewrap_falls_back_to_unshare_and_says_so(monkeypatch):
    monkeypatch.setattr(sandbox, "_isolation_cache", {})
    monkeypatch.setattr(bwrap, "binary", lambda: None)
    bwrap.usable.cache_clear()
    try:
        prefix, notes = sandbox.isolation()
        assert prefix and prefix[0].endswith("unshare"), prefix
        assert any("bubblewrap is not usable" in n for n in notes)
    finally:
        bwrap.usable.cache_clear()


async def _run_in_kernel(cwd: Path, code: str) -> str:
    from autograder.kernel_sandbox import SandboxedKernelManager

    km = SandboxedKernelManager(kernel_name="python3")
    await km.start_kernel(cwd=str(cwd))
    out = []
    try:
        kc = km.client()
        kc.start_channels()
        await kc.wait_for_ready(timeout=120)
        await kc.execute_interactive(code, timeout=120,
                                     output_hook=lambda m: out.append(m["content"].get("text", "")))
        kc.stop_channels()
    finally:
        await km.shutdown_kernel(now=True)
    return "".join(out)


def test_kernel_sees_only_its_folder(planted, tmp_path):
    """nbgrader's kernel manager: no reference, no gradebook, no course, no network, no survivor."""
    student = tmp_path / "autograded" / "ada" / "a2"
    student.mkdir(parents=True)
    course = impl.REPO_ROOT / "course"
    sentinel = tmp_path / "survivor.txt"
    code = WALK + f"""
import os, socket, subprocess, sys
print("SOLUTIONS", os.path.exists({str(impl.solutions_dir())!r}), "COURSE", os.path.exists({str(course)!r}))
try:
    socket.create_connection(("127.0.0.1", 22), timeout=1)
    print("NET open")
except OSError:
    print("NET closed")
for target in ({str(tmp_path / 'outside.txt')!r}, {str(planted / 'gradebook.db')!r}):
    try:
        open(target, "w").write("hacked")
        print("WROTE", target)
    except OSError:
        pass
open("own.txt", "w").write("mine")
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3); open({str(sentinel)!r}, 'w').write('x')"],
                 start_new_session=True)
print("DONE")
"""
    text = asyncio.run(_run_in_kernel(student, code))
    assert "DONE" in text, text
    assert "FOUND []" in text and "SOLUTIONS False COURSE False" in text and "NET closed" in text, text
    assert not (tmp_path / "outside.txt").exists()  # at most it wrote the sandbox's private /tmp
    assert (planted / "gradebook.db").read_text() == f"grades {TOKEN}"
    assert (student / "own.txt").read_text() == "mine"  # its own folder is writable
    time.sleep(5)  # the detached child would have written by now: it died with the kernel's PID namespace
    assert not sentinel.exists()


def test_kernel_refuses_without_sandbox_unless_allowed(monkeypatch, tmp_path):
    from autograder import kernel_sandbox

    monkeypatch.setattr(bwrap, "usable", lambda uid=None: False)
    monkeypatch.delenv(kernel_sandbox.UNSANDBOXED_ENV, raising=False)
    with pytest.raises(kernel_sandbox.SandboxUnavailable, match=kernel_sandbox.UNSANDBOXED_ENV):
        asyncio.run(_run_in_kernel(tmp_path, "print(1)"))
