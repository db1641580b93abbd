"""Bounded work before trust: what the grader checks about a student's file before it inflates, loads or builds
anything from it, in its own process.

A checkpoint is a zip (torch.save's format) whose members torch inflates to the sizes their headers declare,
and whose config drives the construction of a model: a 3 MiB file can declare 3 GiB, and a config with
`embed_dim = 10**12 + 1` can keep a divisor search busy past every timeout. So, before `torch.load` and before
any model is built:

* the file is a regular file (never a link), at most MAX_CHECKPOINT_BYTES on disk;
* it is a zip whose members are stored, not compressed (torch.save never compresses, so a compressed member is
  not a checkpoint the notebook wrote), at most MAX_MEMBERS of them, declaring at most MAX_INFLATED_BYTES;
* its config holds numbers in the ranges of CONFIG_RANGES.

Each problem is the student's, said in a sentence that names the file (`UntrustedFile`).
"""
from __future__ import annotations

import math
import stat
import zipfile
from pathlib import Path

MAX_CHECKPOINT_BYTES = 256 << 20  # on disk: the course's ViT is 25 MB, its ResNet-18 45 MB
MAX_INFLATED_BYTES = 512 << 20  # what the members may declare in all
MAX_MEMBERS = 4096  # a ViT of the course has a few hundred tensors
# (low, high) for the numbers of a ViT / CNN config: wide enough for any experiment of the course, far from what
# would make the grader allocate or search without end.
CONFIG_RANGES = {
    "image_size": (1, 1024), "patch_size": (1, 256), "in_chans": (1, 16), "num_classes": (1, 10_000),
    "embed_dim": (1, 8192), "depth": (0, 128), "num_heads": (1, 256), "mlp_ratio": (0.0, 64.0),
    "drop_rate": (0.0, 1.0), "attn_drop_rate": (0.0, 1.0), "drop_path_rate": (0.0, 1.0), "init_std": (0.0, 10.0),
    "norm_eps": (0.0, 1.0), "width": (1, 8192), "num_blocks": (0, 128),
}


class UntrustedFile(ValueError):
    """A handed-in file the grader will not open further; the message is for the student and names the file."""


def check_checkpoint_file(path: str | Path) -> None:
    """Raise UntrustedFile unless `path` is a checkpoint torch.save could have written, of a bounded size."""
    path = Path(path)
    try:
        info = path.lstat()
    except OSError:
        raise UntrustedFile(f"{path.name} is missing") from None
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISREG(info.st_mode):
        raise UntrustedFile(f"{path.name} is a link or not a regular file: hand in the file itself")
    if info.st_size > MAX_CHECKPOINT_BYTES:
        raise UntrustedFile(f"{path.name} is {info.st_size >> 20} MiB, larger than the {MAX_CHECKPOINT_BYTES >> 20} MiB "
                            "a course checkpoint can be (the notebook's is about 25 MB): hand in the file the training "
                            "cell saved")
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise UntrustedFile(f"{path.name} is not a checkpoint torch.save writes (not a zip archive: {err}); it may "
                            "be truncated: hand in the file the training cell saved, again") from None
    if len(members) > MAX_MEMBERS:
        raise UntrustedFile(f"{path.name} holds {len(members)} entries, more than a course checkpoint ({MAX_MEMBERS})")
    declared = sum(m.file_size for m in members)
    if declared > MAX_INFLATED_BYTES:
        raise UntrustedFile(f"{path.name} declares {declared >> 20} MiB of data, more than a course checkpoint can "
                            f"hold ({MAX_INFLATED_BYTES >> 20} MiB): not graded")
    packed = [m.filename for m in members if m.compress_type != zipfile.ZIP_STORED]
    if packed:
        raise UntrustedFile(f"{path.name} has compressed entries ({packed[0]}), which torch.save never writes: hand in "
                            "the file the training cell saved, unchanged")


def load_checkpoint(path: str | Path) -> dict:
    """`check_checkpoint_file`, then torch.load(weights_only=True, mmap=True): a dict, or UntrustedFile."""
    import torch

    check_checkpoint_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001 - a truncated or crafted file is the student's to hand in again
        first = (str(err).splitlines() or [""])[0][:200]
        raise UntrustedFile(f"{Path(path).name} could not be read as a checkpoint ({type(err).__name__}: {first}); it "
                            "may be truncated: hand in the file the training cell saved, again") from None
    if not isinstance(state, dict):
        raise UntrustedFile(f"{Path(path).name} holds a {type(state).__name__}, not the dict the training cell saves")
    return state


def check_config(config, where: str) -> dict:
    """A checkpoint's model config as a plain dict of bounded numbers, or UntrustedFile naming the field."""
    if not isinstance(config, dict) or len(config) > 64 or not all(isinstance(k, str) for k in config):
        raise UntrustedFile(f"{where}: its config is not the dict of settings the training cell saves")
    for key, value in config.items():
        if key not in CONFIG_RANGES:
            continue
        low, high = CONFIG_RANGES[key]
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if isinstance(value, (tuple, list)):  # image_size=(H, W), patch_size=(P, P)
            number = len(value) <= 3 and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            values = list(value) if number else []
        else:
            values = [value]
        if not number or not all(math.isfinite(v) and low <= v <= high for v in values):
            raise UntrustedFile(f"{where}: config {key}={value!r} is outside what the grader builds ({low} to {high})")
    return config
