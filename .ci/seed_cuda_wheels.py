"""Hard-link the CUDA wheels of the environment running this script into another one, before pip fills it.

    .venv/bin/python .ci/seed_cuda_wheels.py DEST_PYTHON

The `nvidia-*` wheels torch depends on are data (shared libraries, no Python ABI tag): about 3 GiB, the same bytes
for every Python. Linked into a second environment built from the same pins (the JupyterHub student's, the shared
server's), pip finds each one installed at the version it needs and writes nothing. Linking them afterwards
(`hardlink`) saves the same space at the end, but not at the install's peak, which is what filled CI's disk.

Only the files each distribution's RECORD lists are linked (nothing of torch, nothing outside site-packages). A file
already there is left alone; another filesystem (no hard links) seeds nothing and pip installs as usual.
"""
from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path


def purelib(python: str) -> Path:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return Path(subprocess.check_output([python, "-c", code], text=True).strip())


def cuda_files():
    """(source path, path relative to site-packages) of every file of this environment's nvidia-* wheels."""
    for dist in metadata.distributions():
        if not dist.metadata["Name"].lower().startswith("nvidia-"):
            continue
        for file in dist.files or ():
            if file.parts[0] == ".." or "__pycache__" in file.parts:
                continue  # a script in bin/, or bytecode the other Python compiles for itself
            yield Path(file.locate()), Path(*file.parts)


def seed(dest: Path) -> tuple[int, int]:
    """Link every CUDA wheel file into dest; return (files linked, bytes linked)."""
    linked = size = 0
    for src, rel in cuda_files():
        target = dest / rel
        if target.exists() or not src.is_file():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, target)
        except OSError as err:  # another filesystem, or a filesystem without hard links: pip installs them
            print(f"seed_cuda_wheels: not linking ({err.strerror}); pip installs the CUDA wheels itself")
            return linked, size
        linked += 1
        size += src.stat().st_size
    return linked, size


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__.strip().splitlines()[2].strip())
        return 2
    dest = purelib(argv[0])
    linked, size = seed(dest)
    print(f"seed_cuda_wheels: linked {linked} files ({size / 2**30:.1f} GiB) of the CUDA wheels into {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
