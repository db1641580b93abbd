"""data_utils: CIFAR reading/downloading on archives the tests write themselves, splits, class subsets,
constants, the embedded and synthetic datasets.

Shape legend: B batch, C channels, H/W image height/width, K classes.
"""
from __future__ import annotations

import hashlib
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

import data_utils as du
from data_utils import cifar as cifar_mod

ROWS = 3 * 32 * 32
CIFAR10_PER_BATCH = 7  # distinct small sizes: 5 batches of 7 train images, 9 test images
CIFAR10_TEST = 9
SHARED_MINI = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "cifar10-mini"


# Tiny tensors: one intra-op thread (conftest.one_thread) is faster, and far faster on a shared CPU.
pytestmark = pytest.mark.usefixtures("one_thread")


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _dump(path: Path, obj) -> None:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh)


def write_cifar10(root: Path, seed: int = 0) -> dict:
    """A small CIFAR-10 in the official python layout (Python 2 `str` keys load as `str` with latin1)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_rows, train_labels = [], []
    for i in range(1, 6):
        rows = rng.integers(0, 256, (CIFAR10_PER_BATCH, ROWS), dtype=np.uint8)
        labels = rng.integers(0, 10, CIFAR10_PER_BATCH).tolist()
        _dump(folder / f"data_batch_{i}", {"data": rows, "labels": labels, "batch_label": "x"})
        train_rows.append(rows)
        train_labels += labels
    test_rows = rng.integers(0, 256, (CIFAR10_TEST, ROWS), dtype=np.uint8)
    test_labels = rng.integers(0, 10, CIFAR10_TEST).tolist()
    _dump(folder / "test_batch", {"data": test_rows, "labels": test_labels})
    _dump(folder / "batches.meta", {"label_names": list(du.CIFAR10_CLASSES)})
    return {"train": (np.concatenate(train_rows), train_labels), "test": (test_rows, test_labels)}


def write_cifar100(root: Path) -> dict:
    rng = np.random.default_rng(1)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    out = {}
    for split, n in (("train", 11), ("test", 6)):
        rows = rng.integers(0, 256, (n, ROWS), dtype=np.uint8)
        labels = rng.integers(0, 100, n).tolist()
        _dump(folder / split, {"data": rows, "fine_labels": labels, "coarse_labels": [0] * n})
        out[split] = (rows, labels)
    _dump(folder / "meta", {"fine_label_names": [f"c{i}" for i in range(100)]})
    return out


def as_images(rows: np.ndarray) -> torch.Tensor:
    """Oracle: the layout documented by the CIFAR authors, 1024 R then 1024 G then 1024 B, row-major."""
    out = torch.empty(len(rows), 3, 32, 32, dtype=torch.uint8)
    for i, row in enumerate(rows):
        for c in range(3):
            out[i, c] = torch.from_numpy(row[c * 1024:(c + 1) * 1024].reshape(32, 32).copy())
    return out


def test_read_cifar10_folder_without_verification(tmp_path):
    written = write_cifar10(tmp_path)
    for train, key in ((True, "train"), (False, "test")):
        images, labels = du.load_cifar("cifar10", tmp_path, train=train, verify=False)
        rows, expected = written[key]
        assert images.dtype == torch.uint8 and images.shape == (len(rows), 3, 32, 32)
        assert torch.equal(images, as_images(rows))
        assert labels.dtype == torch.int64 and labels.tolist() == expected
    # The batches folder itself is accepted as root too.
    images, _ = du.load_cifar("cifar10", tmp_path / "cifar-10-batches-py", train=False, verify=False)
    assert len(images) == CIFAR10_TEST


def test_read_cifar100_folder(tmp_path):
    written = write_cifar100(tmp_path)
    images, labels = du.load_cifar("cifar100", tmp_path, train=True, verify=False)
    assert torch.equal(images, as_images(written["train"][0])) and labels.tolist() == written["train"][1]
    splits = du.load_dataset("cifar100", root=tmp_path, verify=False, val_size=0)
    assert splits.num_classes == 100 and splits.class_names[3] == "c3"
    assert splits.mean == du.CIFAR100_MEAN


@pytest.fixture
def http_server(tmp_path):
    """A local HTTP server for tmp_path/'www': real downloads without the internet."""
    import functools
    import http.server
    import threading

    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *args: None  # keep pytest's output clean
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_through_torchvision_with_checksums(tmp_path, monkeypatch, http_server):
    """The verified path end to end: download the archive over HTTP, check MD5s, extract, read."""
    www, base_url = http_server
    source = tmp_path / "source"
    written = write_cifar10(source)
    archive = www / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    from torchvision.datasets import CIFAR10

    batches = source / "cifar-10-batches-py"
    monkeypatch.setattr(CIFAR10, "url", f"{base_url}/cifar-10-python.tar.gz")
    monkeypatch.setattr(CIFAR10, "tgz_md5", _md5(archive))
    monkeypatch.setattr(CIFAR10, "train_list", [[f"data_batch_{i}", _md5(batches / f"data_batch_{i}")] for i in range(1, 6)])
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", _md5(batches / "test_batch")]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": _md5(batches / "batches.meta")})
    root = tmp_path / "root"
    images, labels = du.load_cifar("cifar10", root, train=True, download=True, verify=True)
    assert (root / "cifar-10-python.tar.gz").is_file()
    assert torch.equal(images, as_images(written["train"][0])) and labels.tolist() == written["train"][1]
    # A corrupted file is refused by the verified path, and the error names the way out.
    (root / "cifar-10-batches-py" / "test_batch").write_bytes(b"corrupt")
    with pytest.raises(du.DatasetUnavailableError, match="verify=False"):
        du.load_cifar("cifar10", root, train=False, download=False, verify=True)


def test_offline_download_failure_is_actionable(tmp_path, monkeypatch, http_server):
    from torchvision.datasets import CIFAR10

    _, base_url = http_server
    monkeypatch.setattr(CIFAR10, "url", f"{base_url}/missing/cifar-10-python.tar.gz")  # HTTP 404
    with pytest.raises(du.DatasetUnavailableError) as err:
        du.load_cifar("cifar10", tmp_path / "root", download=True)
    message = str(err.value)
    assert "download failed" in message and "download=False" in message
    assert str(tmp_path / "root" / "cifar-10-python.tar.gz") in message
    assert cifar_mod.CIFAR_SPECS["cifar10"].url in message
    with pytest.raises(du.DatasetUnavailableError, match="download=False"):
        du.load_cifar("cifar10", tmp_path / "empty", download=False)
    with pytest.raises(du.DatasetUnavailableError, match="cifar-10-batches-py"):
        du.load_cifar("cifar10", tmp_path / "empty", verify=False)


def test_stratified_split_properties():
    labels = torch.tensor([0] * 23 + [1] * 11 + [2] * 7 + [3] * 59)[torch.randperm(100, generator=torch.Generator().manual_seed(3))]
    train, val = du.stratified_split(labels, 17, seed=5)
    assert len(val) == 17 and len(train) == 83
    assert torch.equal(torch.sort(torch.cat([train, val])).values, torch.arange(100))
    for c, n in zip(range(4), (23, 11, 7, 59)):
        assert abs(int((labels[val] == c).sum()) - 17 * n / 100) < 1  # each class keeps its share (±1)
    again_train, again_val = du.stratified_split(labels, 17, seed=5)
    assert torch.equal(val, again_val) and torch.equal(train, again_train)
    assert not torch.equal(val, du.stratified_split(labels, 17, seed=6)[1])
    assert len(du.stratified_split(labels, 0.25, seed=0)[1]) == 25
    assert len(du.stratified_split(labels, 0, seed=0)[1]) == 0
    with pytest.raises(ValueError, match="smaller than"):
        du.stratified_split(labels, 100)


def test_stratified_split_matches_sklearn_class_counts():
    """Oracle: scikit-learn's stratified split gives the same number of validation samples per class."""
    from sklearn.model_selection import train_test_split

    labels = torch.arange(10).repeat_interleave(50)  # balanced, so the per-class counts are unambiguous
    _, val = du.stratified_split(labels, 0.1, seed=0)
    _, sk_val = train_test_split(np.arange(500), test_size=0.1, stratify=labels.numpy(), random_state=0)
    assert torch.equal(torch.bincount(labels[val]), torch.bincount(labels[torch.from_numpy(sk_val)]))


def test_select_classes_remaps_in_given_order():
    images = torch.arange(12, dtype=torch.uint8).reshape(12, 1, 1, 1)
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 9])
    x, y = du.select_classes(images, labels, [9, 1, 3])
    expected = [(i, {9: 0, 1: 1, 3: 2}[int(l)]) for i, l in enumerate(labels) if int(l) in (9, 1, 3)]
    assert x.flatten().tolist() == [i for i, _ in expected] and y.tolist() == [k for _, k in expected]
    with pytest.raises(ValueError, match="do not exist"):
        du.select_classes(images, labels, [1, 42])
    with pytest.raises(ValueError, match="do not exist"):
        du.select_classes(images, labels, [1, 10], num_classes=10)
    with pytest.raises(ValueError, match="distinct"):
        du.select_classes(images, labels, [1, 1])


def test_load_dataset_cifar_subset_with_classes(tmp_path):
    write_cifar10(tmp_path)
    full = du.load_dataset("cifar10", root=tmp_path, verify=False, val_size=0)
    sub = du.load_dataset("cifar10", root=tmp_path, verify=False, val_size=0, classes=[1, 3, 5, 7, 9])
    assert sub.class_names == tuple(du.CIFAR10_CLASSES[c] for c in (1, 3, 5, 7, 9)) and sub.num_classes == 5
    keep = torch.isin(full.train_labels, torch.tensor([1, 3, 5, 7, 9]))
    assert torch.equal(sub.train_images, full.train_images[keep])
    assert torch.equal(sub.train_labels, (full.train_labels[keep] - 1) // 2)


def test_digits_dataset_and_constants():
    splits = du.load_dataset("digits", seed=1)
    assert (splits.in_chans, splits.image_size, splits.num_classes) == (1, 8, 10)
    total = len(splits.train_labels) + len(splits.val_labels) + len(splits.test_labels)
    assert total == 1797 and len(splits.val_labels) == round(0.1 * (len(splits.train_labels) + len(splits.val_labels)))
    # The test set does not depend on the run's seed, so runs with different seeds compare.
    assert torch.equal(splits.test_images, du.load_dataset("digits", seed=2).test_images)
    # Oracle for the named constants: the statistics of the data itself.
    images, _ = du.embedded.digits_images()
    x = torch.from_numpy(images).float() / 255
    assert du.DIGITS_MEAN[0] == pytest.approx(x.mean().item(), abs=1e-3)
    assert du.DIGITS_STD[0] == pytest.approx(x.std().item(), abs=1e-3)
    legacy = du.load_digits(test_fraction=0.2, seed=0)  # the demo's API is unchanged
    assert set(legacy) == {"train_images", "train_labels", "test_images", "test_labels"}
    assert torch.equal(legacy["test_images"], splits.test_images)


@pytest.mark.skipif(not SHARED_MINI.is_dir(), reason="../shared/datasets/cifar10-mini is not present")
def test_cifar10_constants_on_real_images():
    """The real images (a 5,085-image subset) have channel statistics close to the full-set constants."""
    images, _ = du.load_cifar("cifar10", SHARED_MINI, train=True, verify=False)
    x = images.float() / 255
    assert x.mean((0, 2, 3)).tolist() == pytest.approx(du.CIFAR10_MEAN, abs=0.01)
    assert x.std((0, 2, 3)).tolist() == pytest.approx(du.CIFAR10_STD, abs=0.01)


def test_synthetic_dataset():
    x, y = du.synthetic_dataset(num_samples=30, num_classes=3, image_size=6, in_chans=2, seed=4)
    assert x.dtype == torch.uint8 and x.shape == (30, 2, 6, 6) and torch.bincount(y).tolist() == [10, 10, 10]
    assert torch.equal(x, du.synthetic_dataset(30, 3, 6, 2, seed=4)[0])
    # Learnable: the nearest class mean (estimated on another draw) classifies it well.
    x2, y2 = du.synthetic_dataset(300, 3, 6, 2, seed=9)
    means = torch.stack([x2[y2 == k].float().mean(0) for k in range(3)])  # (K, C, H, W)
    pred = torch.cdist(x.float().flatten(1), means.flatten(1)).argmin(1)
    assert (pred == y).float().mean() > 0.9
    splits = du.load_dataset("synthetic")
    assert splits.mean == du.SYNTHETIC_MEAN * splits.in_chans
