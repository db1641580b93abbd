"""Shared fixtures: the reference implementation and the generated stubs, loaded side by side."""
import pytest
import torch

from vitcourse import impl


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
