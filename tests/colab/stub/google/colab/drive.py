"""`google.colab.drive.mount` as Colab behaves: MyDrive appears under the mount point; a second mount says so."""
import os
from pathlib import Path


def mount(mountpoint, force_remount=False, timeout_ms=120000, readonly=False):
    mountpoint = Path(mountpoint)
    drive = mountpoint / "MyDrive"
    if drive.exists() and not force_remount:
        print(f"Drive already mounted at {mountpoint}; to attempt to forcibly remount, call "
              f'drive.mount("{mountpoint}", force_remount=True).')
        return
    mountpoint.mkdir(parents=True, exist_ok=True)
    if drive.is_symlink():
        drive.unlink()
    drive.symlink_to(os.environ["COLAB_REPLICA_DRIVE"], target_is_directory=True)
    print(f"Mounted at {mountpoint}")


def flush_and_unmount(timeout_ms=24 * 60 * 60 * 1000):
    drive = Path("/content/drive/MyDrive")
    if drive.is_symlink():
        drive.unlink()
