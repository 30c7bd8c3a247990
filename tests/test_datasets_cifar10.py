"CIFAR-10 loaders on a small python-batch tarball (read with the restricted unpickler)."
import hashlib, pickle

import numpy as np
import pytest

import groupinf.data as gd
import groupinf.datasets.cifar10 as C
from datasets_fixtures import no_internet, serve, write_cifar_tar  # noqa: F401


@pytest.fixture
def cifar(tmp_path, monkeypatch):
    raw = write_cifar_tar(tmp_path / "cifar-10-python.tar.gz")
    serve(monkeypatch, C, "CIFAR10_TAR", tmp_path / "cifar-10-python.tar.gz", md5=None)
    return raw


def hwc(data): return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).reshape(len(data), -1)


def test_end_to_end(cifar, tmp_path):
    d = gd.load_dataset("cifar10", data_dir=tmp_path / "data", validation_size=4)
    train = np.concatenate([cifar[f"data_batch_{i}"][0] for i in range(1, 6)])
    labels = sum((cifar[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert (d.train.num_examples, d.validation.num_examples, d.test.num_examples, d.train.num_features) == (26, 4, 5, 3072)
    assert np.array_equal(d.validation.x, hwc(train[:4]) / 255) and np.array_equal(d.train.x, hwc(train[4:]) / 255)
    assert d.train.labels.tolist() == labels[4:] and d.test.labels.tolist() == cifar["test_batch"][1]
    # pixel (row 5, column 7) of the green channel of image 0 of the test batch
    assert d.test.x[0].reshape(32, 32, 3)[5, 7, 1] == cifar["test_batch"][0][0][1024 + 5 * 32 + 7] / 255
    assert d.meta["class_names"][9] == "truck"
    cache = next((tmp_path / "data" / "cifar10").glob("cifar10-*.npz"))
    with np.load(cache, allow_pickle=False) as z: assert z["train_pixels"].dtype == np.uint8


def test_small_and_dtype(cifar, tmp_path):
    full = C.load_cifar10(tmp_path / "data", validation_size=4)
    small = gd.load_dataset("cifar10_small", data_dir=tmp_path / "data", validation_size=4, dtype=np.float32)
    perm = np.arange(26); np.random.RandomState(0).shuffle(perm)
    assert small.train.x.dtype == np.float32 and small.train.num_examples == 2
    assert np.allclose(small.train.x, full.train.x[perm[:2]]) and small.validation.num_examples == 4


def test_pinned_md5_and_pickle_safety(tmp_path, monkeypatch):
    write_cifar_tar(tmp_path / "cifar-10-python.tar.gz")
    serve(monkeypatch, C, "CIFAR10_TAR", tmp_path / "cifar-10-python.tar.gz")          # real MD5 kept
    with pytest.raises(gd.ChecksumError) as e: C.load_cifar10(tmp_path / "data")
    assert "c58f30108f718f92721af3b95e74349a" in str(e.value)
    assert hashlib.md5((tmp_path / "cifar-10-python.tar.gz").read_bytes()).hexdigest() in str(e.value)

    class Evil:
        def __reduce__(self): return (exec, ("raise SystemExit",))
    (tmp_path / "evil").write_bytes(pickle.dumps({b"data": Evil(), b"labels": []}))
    with pytest.raises(gd.DataError, match="refusing to unpickle"): C.read_cifar_batch(tmp_path / "evil")
    (tmp_path / "list").write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(gd.DataError, match="not a CIFAR batch"): C.read_cifar_batch(tmp_path / "list")
    (tmp_path / "short").write_bytes(pickle.dumps({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}))
    with pytest.raises(gd.DataError, match="expected"): C.read_cifar_batch(tmp_path / "short")


def test_extracted_batches_are_used(cifar, tmp_path, monkeypatch):
    C.load_cifar10(tmp_path / "data", validation_size=4)
    (tmp_path / "data" / "cifar10" / "cifar-10-python.tar.gz").unlink()
    for p in (tmp_path / "data" / "cifar10").glob("cifar10-*.npz"): p.unlink()
    monkeypatch.setattr(gd, "_urlopen", lambda *a: pytest.fail("must not download"))
    assert C.load_cifar10(tmp_path / "data", validation_size=4).test.num_examples == 5
