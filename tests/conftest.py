"""Shared fixtures: the reference implementation and the generated stubs, loaded side by side."""
import pytest
import torch

from coursecore import impl

# nbgrader refuses to run student kernels without the sandbox; on a CI runner where bubblewrap cannot run,
# the grading tests still run (unsandboxed) and tests/test_sandbox_allowlist.py is skipped.
from autograder import bwrap  # noqa: E402
if not bwrap.usable():
    import os
    os.environ.setdefault("VITCOURSE_UNSANDBOXED", "1")


@pytest.fixture(scope="session")
def ref():
    """Reference modules: `ref.transformer`, `ref.ViT`."""
    return impl.reference()


@pytest.fixture(scope="session")
def stubs():
    """Generated student stubs: `stubs.transformer`, `stubs.ViT`."""
    return impl.stubs()


@pytest.fixture(autouse=True)
def _seed():
    # Every test starts from the same RNG state, so failures reproduce.
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _course_of_the_test():
    """A command a test runs in-process activates its course (VITCOURSE_ROOT, VITCOURSE_KERNEL_CHECKED): the
    next test starts with the package's own course again, as a fresh process would."""
    from coursecore import settings

    saved = {s: s.raw() for s in (settings.ROOT, settings.KERNEL_CHECKED)}
    yield
    for setting, value in saved.items():
        setting.set(value)


@pytest.fixture
def one_thread():
    """One intra-op thread for tests of tiny tensors: faster, and far faster on an oversubscribed CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
