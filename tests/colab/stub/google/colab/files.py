"""`google.colab.files.download`: the browser's download, recorded in COLAB_REPLICA_DOWNLOADS."""
import os
import shutil


def download(filename):
    if not os.path.exists(filename):
        raise FileNotFoundError(f"Cannot find file: {filename}")
    folder = os.environ.get("COLAB_REPLICA_DOWNLOADS")
    if folder:
        os.makedirs(folder, exist_ok=True)
        shutil.copy2(filename, os.path.join(folder, os.path.basename(filename)))
