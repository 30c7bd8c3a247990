"""Promises about data integrity, checked through the entry points a user calls (`load_dataset`, a whole experiment):
a damaged or stale cache is detected and rebuilt, a truncated download never reaches its final name, an archive
that would write outside its target is refused with nothing written, and no pickle is ever loaded from disk.

The building blocks are tested one by one in test_datasets_core.py (`cached` with four kinds of damage, `download`
with a short body, `extract_archive` with nine kinds of unsafe member, the restricted unpickler) and in
test_runner.py (damaged result files); a damaged phase file of a real subset run is in test_promises_faults.py.
"""
import ast, gzip, io, pickle, tarfile, warnings
from pathlib import Path

import numpy as np
import pytest

import groupinf
import groupinf.data as gd
import groupinf.tasks
import groupinf.datasets.cifar10 as C
import groupinf.datasets.mnist as M
from datasets_fixtures import no_internet, serve, write_cifar_tar, write_mnist  # noqa: F401  (no_internet: autouse)


@pytest.fixture
def served_mnist(tmp_path, monkeypatch):
    "The four MNIST IDX files (40 training, 12 test images) served from file:// URLs."
    raw = write_mnist(tmp_path / "server", n_train=40, n_test=12)
    for k, f in M.MNIST_FILES.items():
        serve(monkeypatch, M, "MNIST_FILES", tmp_path / "server" / f.path.split("/")[-1], key=k, md5=None)
    return raw


def load_small(data_dir):
    return gd.load_dataset("mnist_small", data_dir=data_dir, validation_size=8)


def same_datasets(a, b):
    return all(np.array_equal(getattr(a, s).x, getattr(b, s).x) and np.array_equal(getattr(a, s).labels, getattr(b, s).labels)
               for s in ("train", "validation", "test"))


# ------------------------------------------------------------------------------------------------ caches
@pytest.mark.parametrize("damage", ["truncated", "flipped-byte", "empty", "not-a-zip"])
def test_a_damaged_dataset_cache_is_detected_and_rebuilt_by_its_loader(served_mnist, tmp_path, damage):
    first = load_small(tmp_path / "data")
    [cache] = (tmp_path / "data" / "mnist").glob("mnist_small-*.npz")
    raw = bytearray(cache.read_bytes())
    if damage == "truncated": raw = raw[: len(raw) * 2 // 3]
    elif damage == "flipped-byte": raw[_member_data_offset(cache, "train_pixels.npy") + 200] ^= 0xFF   # a pixel
    elif damage == "empty": raw = bytearray()
    else: raw = bytearray(b"<html>503 Service Unavailable</html>")
    cache.write_bytes(bytes(raw))
    with pytest.warns(UserWarning, match=f"cache {cache} is unusable"):
        again = load_small(tmp_path / "data")
    assert same_datasets(first, again)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                       # the rebuilt cache is whole: no second warning
        assert same_datasets(first, load_small(tmp_path / "data"))
    assert [p.name for p in (tmp_path / "data" / "mnist").glob("mnist_small-*.npz")] == [cache.name]


def _member_data_offset(path, member):
    "Offset in the zip file of the first byte of a member's data (after its local header)."
    import struct, zipfile
    with zipfile.ZipFile(path) as z: info = z.getinfo(member)
    with open(path, "rb") as f:
        f.seek(info.header_offset); n, e = struct.unpack("<26xHH", f.read(30))
    return info.header_offset + 30 + n + e


def _write_stored_idx(path, arr):
    "An IDX file gzip-stored without compression, so that its size depends on the array's shape only."
    arr = np.asarray(arr, np.uint8)
    with gzip.open(path, "wb", compresslevel=0) as f:
        f.write((2051 if arr.ndim == 3 else 2049).to_bytes(4, "big"))
        for n in arr.shape: f.write(int(n).to_bytes(4, "big"))
        f.write(arr.tobytes())


def test_a_cache_is_rebuilt_when_its_source_file_is_replaced_by_one_of_the_same_size(served_mnist, tmp_path):
    data = tmp_path / "data"
    labels_file = data / "mnist" / "train-labels-idx1-ubyte.gz"
    imgs, labels = served_mnist["train"]
    for name, arr in (("train-images-idx3-ubyte.gz", imgs), ("train-labels-idx1-ubyte.gz", labels)):
        (data / "mnist").mkdir(parents=True, exist_ok=True)
        _write_stored_idx(data / "mnist" / name, arr)
    first = load_small(data)
    size = labels_file.stat().st_size
    _write_stored_idx(labels_file, (labels + 1) % 10)         # other labels, same number of bytes
    assert labels_file.stat().st_size == size
    again = load_small(data)
    assert np.array_equal(again.validation.labels, (first.validation.labels + 1) % 10)
    assert np.array_equal(again.train.labels, (first.train.labels + 1) % 10)


# ------------------------------------------------------------------------------------------------ downloads
class _ShortResponse(io.BytesIO):
    "A response that announces the full length but delivers only part of the body (a dropped connection)."
    def __init__(self, body, full):
        super().__init__(body); self.headers = {"Content-Length": str(full)}
    def __enter__(self): return self
    def __exit__(self, *a): self.close()


def test_a_truncated_download_never_reaches_its_final_name_and_the_next_attempt_succeeds(served_mnist, tmp_path,
                                                                                        monkeypatch):
    data = tmp_path / "data"
    real = gd._urlopen
    def flaky(url, timeout):
        if url.endswith("train-images-idx3-ubyte.gz"):
            body = Path(url[len("file://"):]).read_bytes()
            return _ShortResponse(body[: len(body) // 2], len(body))
        return real(url, timeout)
    monkeypatch.setattr(gd, "_urlopen", flaky)
    with pytest.raises(gd.DataUnavailableError, match="truncated download, got \\d+ of \\d+ bytes") as e:
        gd.load_dataset("mnist", data_dir=data, validation_size=8)
    assert "\n" not in str(e.value) and str(data / "mnist" / "train-images-idx3-ubyte.gz") in str(e.value)
    assert not (data / "mnist" / "train-images-idx3-ubyte.gz").exists()
    assert not [p for p in data.rglob(".*") if p.is_file() and not p.name.endswith(".digests.json")], "partial download left behind"
    monkeypatch.setattr(gd, "_urlopen", real)
    d = gd.load_dataset("mnist", data_dir=data, validation_size=8)
    assert np.array_equal(d.test.labels, served_mnist["t10k"][1])


def test_a_truncated_file_already_in_place_is_a_one_line_data_error(served_mnist, tmp_path):
    data = tmp_path / "data"
    gd.load_dataset("mnist", data_dir=data, validation_size=8)
    f = data / "mnist" / "t10k-images-idx3-ubyte.gz"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(gd.ChecksumError, match=f"{f} changed since groupinf downloaded it") as e:   # its recorded digest
        gd.load_dataset("mnist", data_dir=data, validation_size=8)
    assert "\n" not in str(e.value)
    with pytest.warns(gd.UnverifiedDataWarning), pytest.raises(gd.DataError, match="cannot read .*delete it to download it again") as e:
        gd.load_dataset("mnist", data_dir=data, validation_size=8, verify=False)         # and unchecked, unreadable
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------------------------------------ archives
def _evil_cifar(path, kind):
    "A CIFAR-10 archive with extra members that would write outside the extraction directory."
    write_cifar_tar(path)
    with tarfile.open(path) as t: members = [(m, t.extractfile(m).read() if m.isfile() else None) for m in t.getmembers()]
    def member(name, data=None, type_=tarfile.REGTYPE, linkname=""):
        info = tarfile.TarInfo(name); info.type, info.linkname = type_, linkname
        if data is not None: info.size = len(data)
        return info, data
    extra = {"dot-dot": [member("cifar-10-batches-py/../../../escaped.txt", b"evil")],
             "absolute": [member(str(path.parent / "escaped.txt"), b"evil")],
             "symlink-out": [member("cifar-10-batches-py/link", type_=tarfile.SYMTYPE, linkname="../../../.."),
                             member("cifar-10-batches-py/link/escaped.txt", b"evil")],
             "hardlink-out": [member("cifar-10-batches-py/link", type_=tarfile.LNKTYPE, linkname="../../../escaped.txt")]}[kind]
    with tarfile.open(path, "w:gz") as t:
        for m, data in members + extra: t.addfile(m, None if data is None else io.BytesIO(data))


@pytest.mark.parametrize("kind", ["dot-dot", "absolute", "symlink-out", "hardlink-out"])
def test_an_archive_that_escapes_its_target_is_refused_by_the_loader_and_writes_nothing(tmp_path, monkeypatch, kind):
    server = tmp_path / "server"; server.mkdir()
    _evil_cifar(server / "cifar-10-python.tar.gz", kind)
    serve(monkeypatch, C, "CIFAR10_TAR", server / "cifar-10-python.tar.gz", md5=None)
    before = sorted(p for p in tmp_path.rglob("*"))
    with pytest.raises(gd.UnsafeArchiveError, match="refusing to extract") as e:
        gd.load_dataset("cifar10", data_dir=tmp_path / "data", validation_size=2)
    assert "\n" not in str(e.value)
    new = sorted(set(tmp_path.rglob("*")) - set(before))
    assert [p.relative_to(tmp_path).as_posix() for p in new] == ["data", "data/cifar10", "data/cifar10/.cifar-10-python.tar.gz.digests.json",
                                                                  "data/cifar10/cifar-10-python.tar.gz"]
    assert not list(tmp_path.rglob("escaped.txt"))


# ------------------------------------------------------------------------------------------------ no pickle
UNPICKLERS = {("pickle", "load"), ("pickle", "loads"), ("pickle", "Unpickler"), ("pd", "read_pickle"),
              ("pandas", "read_pickle"), ("joblib", "load"), ("dill", "load"), ("dill", "loads"), ("shelve", "open"),
              ("marshal", "load"), ("marshal", "loads"), ("torch", "load")}
ALLOWED = {("data.py", "_RestrictedUnpickler"),                    # restricted_loads: numbers, strings, containers, arrays
           ("tasks.py", "_payload"), ("tasks.py", "_run_payload_chunk")}   # in-memory task payloads between processes


def _calls(tree):
    "(enclosing top-level name, call node) for every call in a module."
    for top in tree.body:
        name = getattr(top, "name", None) or type(top).__name__
        for node in ast.walk(top):
            if isinstance(node, (ast.Call, ast.ClassDef)): yield name, node


def test_the_package_never_unpickles_files_by_construction():
    "Scan the source: every np.load passes allow_pickle=False; unpickling exists only where ALLOWED says."
    found, bad_np_load = set(), []
    for path in sorted(Path(groupinf.__file__).parent.rglob("*.py")):
        for top, node in _calls(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                if any(isinstance(b, ast.Attribute) and b.attr == "Unpickler" for b in node.bases): found.add((path.name, node.name))
                continue
            f = node.func
            if not isinstance(f, ast.Attribute) or not isinstance(f.value, ast.Name): continue
            if (f.value.id, f.attr) in UNPICKLERS or (f.value.id == "cloudpickle" and f.attr in ("load", "loads")):
                found.add((path.name, top))
            if (f.value.id, f.attr) in (("np", "load"), ("numpy", "load")):
                kw = {k.arg: k.value for k in node.keywords}
                if not (isinstance(kw.get("allow_pickle"), ast.Constant) and kw["allow_pickle"].value is False):
                    bad_np_load.append(f"{path.name}:{node.lineno}")
    assert bad_np_load == [], f"np.load without allow_pickle=False at {bad_np_load}"
    assert found <= ALLOWED, f"unexpected unpickling in {sorted(found - ALLOWED)}"
    import inspect
    for fn in (groupinf.tasks._payload, groupinf.tasks._run_payload_chunk):  # they take bytes, never a path
        assert "open(" not in inspect.getsource(fn) and "read_bytes" not in inspect.getsource(fn)


@pytest.fixture
def pickle_spy(monkeypatch):
    "Record every unrestricted unpickling and every np.load / read_array that allows pickle."
    import numpy.lib.format as fmt
    calls = []
    real_load, real_read = np.load, fmt.read_array
    def np_load(*a, **k):
        if k.get("allow_pickle"): calls.append(("np.load(allow_pickle=True)", a[:1]))
        return real_load(*a, **k)
    def read_array(*a, **k):
        if k.get("allow_pickle") or (len(a) > 1 and a[1]): calls.append(("read_array(allow_pickle=True)", ()))
        return real_read(*a, **k)
    def spy(name, real):
        def f(*a, **k): calls.append((name, a[:1])); return real(*a, **k)
        return f
    monkeypatch.setattr(np, "load", np_load)
    monkeypatch.setattr(fmt, "read_array", read_array)
    for name in ("load", "loads", "_load", "_loads"): monkeypatch.setattr(pickle, name, spy(f"pickle.{name}", getattr(pickle, name)))
    class Unpickler(pickle.Unpickler):
        def __init__(self, *a, **k): calls.append(("pickle.Unpickler", ())); super().__init__(*a, **k)
    monkeypatch.setattr(pickle, "Unpickler", Unpickler)
    import pandas as pd
    monkeypatch.setattr(pd, "read_pickle", spy("pd.read_pickle", pd.read_pickle))
    return calls


def test_no_pickle_is_loaded_during_a_full_small_run(pickle_spy, tmp_path):
    "A whole subset experiment (cross-validation to figures), rerun from its stored phases, loads no pickle."
    from groupinf.experiments.subsets import SubsetInfluence, subsets_config
    from groupinf.store import load_results
    cfg = subsets_config("breast_cancer", num_subsets=1, fixed_reg=1e-3, kmeans_n_init=1)   # every phase, fewer fits
    results = SubsetInfluence(cfg, out_dir=tmp_path, progress=False).run()
    again = SubsetInfluence(cfg, out_dir=tmp_path, progress=False)
    results2 = again.run()                                              # every phase read back from disk
    assert [p["status"] for p in again.phase_log] == ["loaded"] * len(again.phases)
    assert load_results(again.run_dir).keys() == results.keys() == results2.keys()
    assert pickle_spy == []


def test_third_party_pickle_formats_are_read_only_by_the_restricted_unpickler(pickle_spy, tmp_path, monkeypatch):
    "CIFAR-10's python batches are pickles: they load, and no unrestricted unpickler runs."
    write_cifar_tar(tmp_path / "c.tar.gz")
    serve(monkeypatch, C, "CIFAR10_TAR", tmp_path / "c.tar.gz", md5=None)
    d = gd.load_dataset("cifar10", data_dir=tmp_path / "data", validation_size=2)
    assert d.train.num_examples == 28 and d.test.num_examples == 5
    assert pickle_spy == []
