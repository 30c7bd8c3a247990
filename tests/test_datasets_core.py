"Containers, registry, downloads, safe extraction, caches and the restricted unpickler of groupinf.data."
import hashlib, json, http.client, io, os, pickle, socket, subprocess, sys, tarfile, urllib.error, zipfile
from pathlib import Path

import numpy as np
import pytest

import groupinf.data as gd
from groupinf.data import (ChecksumError, DataError, DataSet, Datasets, DataUnavailableError, RemoteFile,
                           UnsafeArchiveError)
from datasets_fixtures import no_internet  # noqa: F401  (autouse: no network in tests)


# ------------------------------------------------------------------------------------------ containers, registry
def test_import_is_light():
    code = ("import sys, groupinf.data; heavy = [m for m in ('pandas', 'scipy', 'spacy', 'tensorflow', 'sklearn', "
            "'groupinf.datasets.spam') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_dataset_sparse_and_empty_splits():
    import scipy.sparse as sp
    d = DataSet(sp.coo_matrix(np.eye(4)), np.arange(4))
    assert d.x.format == "csr" and d.subset([3, 1]).x.toarray().tolist() == np.eye(4)[[3, 1]].tolist()
    empty = DataSet(np.zeros((0, 4)), np.zeros(0, np.int64))
    assert Datasets(d, empty, d.subset([0])).num_classes == 4
    with pytest.raises(DataError, match="integers"): DataSet(np.zeros((2, 2)), np.array([0.0, 1.0]))


def test_registry_lists_every_id_with_shapes():
    df = gd.list_datasets()
    expected = {"breast_cancer", "digits", "wine", "iris", "mnist_5k", "hospital", "spam", "mnist", "mnist_small",
                "cifar10", "cifar10_small", "dogfish", "animals", "cdr", "reduced_cdr", "mnli", "gauss", "fixed",
                "repeats", "gauss2", "gauss3", "gauss4", "ortho2", "gauss5"}
    assert expected <= set(df.dataset_id)
    row = df.set_index("dataset_id")
    assert tuple(row.loc["hospital", ["n_train", "n_test", "num_features", "num_classes"]]) == (20000, 81766, 127, 2)
    assert tuple(row.loc["mnist", ["n_train", "n_validation", "n_test", "num_features"]]) == (55000, 5000, 10000, 784)
    assert tuple(row.loc["dogfish", ["n_train", "n_test", "num_features"]]) == (1800, 600, 2048)
    assert tuple(row.loc["animals", ["n_train", "n_test", "num_classes"]]) == (9000, 3000, 10)
    assert tuple(row.loc["cifar10", ["n_train", "n_validation", "n_test", "num_features"]]) == (49000, 1000, 10000, 3072)
    assert tuple(row.loc["spam", ["n_train", "n_validation", "n_test"]]) == (4137, 0, 1035)
    assert tuple(row.loc["mnli", ["n_train", "num_features", "num_classes"]]) == (392702, 600, 3)
    assert row.loc["mnist_5k", "available_offline"] and row.loc["ortho2", "available_offline"]
    assert {"license", "source", "available_offline"} <= set(df.columns)
    sup = set(gd.list_supplements().supplement_id)
    assert {"cdr_LFs", "reduced_cdr_LFs", "cdr_nonfires", "reduced_cdr_nonfires", "cdr_weights", "reduced_cdr_weights",
            "cdr_labeling_info", "reduced_cdr_labeling_info", "mnli_nonfires", "mnli_nonfires_genres", "mnli_genres",
            "mnli_ids", "mnli_nonfires_ids", "ortho2_ids"} <= sup


def test_unknown_ids_are_one_line_data_errors():
    for f in (gd.load_dataset, gd.load_supplement, gd.fetch_dataset):
        with pytest.raises(DataError, match="known ids") as e: f("no_such_id")
        assert "\n" not in str(e.value)


def test_pinned_checksums_are_the_known_ones():
    import groupinf.datasets.mnist as M, groupinf.datasets.cifar10 as C
    assert {f.path.split("/")[-1]: f.md5 for f in M.MNIST_FILES.values()} == {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873", "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3", "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"}
    assert C.CIFAR10_TAR.md5 == "c58f30108f718f92721af3b95e74349a"
    for k in gd.list_datasets().dataset_id:   # no invented hashes: every pinned hash is one of these five
        for f in gd.dataset_info(k).files:
            assert f.sha256 is None
            assert f.md5 in (None, C.CIFAR10_TAR.md5, *(g.md5 for g in M.MNIST_FILES.values()))


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("GROUPINF_DATA_DIR", str(tmp_path / "dd"))
    assert gd.default_data_dir() == tmp_path / "dd"
    assert gd.dataset_dir("x") == tmp_path / "dd" / "x" and (tmp_path / "dd" / "x").is_dir()
    monkeypatch.delenv("GROUPINF_DATA_DIR")
    assert gd.default_data_dir() == Path("~/.groupinf/data").expanduser()


# ------------------------------------------------------------------------------------------ downloads
@pytest.fixture
def served(tmp_path):
    src = tmp_path / "server" / "blob.bin"; src.parent.mkdir()
    data = os.urandom(3000) + b"end"
    src.write_bytes(data)
    return src, data


def test_download_file_url_and_no_second_download(served, tmp_path, monkeypatch):
    src, data = served
    rf = RemoteFile(src.as_uri(), "fam/blob.bin", sha256=hashlib.sha256(data).hexdigest())
    p = gd.download(rf, tmp_path / "d")
    assert p.read_bytes() == data
    calls = []
    monkeypatch.setattr(gd, "_urlopen", lambda url, timeout: calls.append(url))
    assert gd.download(rf, tmp_path / "d") == p and calls == []
    assert gd.fetch_dataset  # the CLI entry points exist with these names
    assert sorted(x.name for x in (tmp_path / "d" / "fam").iterdir()) == [".blob.bin.digests.json", "blob.bin"]  # no temporary files
    assert json.loads(gd.stamp_path(p).read_text())["sha256"] == rf.sha256      # the download's digests are stamped


def test_checksum_mismatch_deletes_and_names_url_and_hashes(served, tmp_path):
    src, data = served
    rf = RemoteFile(src.as_uri(), "fam/blob.bin", md5="0123456789abcdef0123456789abcdef")
    with pytest.raises(ChecksumError) as e: gd.download(rf, tmp_path / "d")
    msg = str(e.value)
    assert src.as_uri() in msg and "0123456789abcdef0123456789abcdef" in msg and hashlib.md5(data).hexdigest() in msg
    assert "\n" not in msg and isinstance(e.value, DataError)
    assert list((tmp_path / "d" / "fam").iterdir()) == []


def test_mirror_used_after_failure_and_checksum(served, tmp_path):
    src, data = served
    rf = RemoteFile("file:///nonexistent/blob.bin", "fam/blob.bin", md5=hashlib.md5(data).hexdigest(), mirrors=(src.as_uri(),))
    assert gd.download(rf, tmp_path / "d").read_bytes() == data


class _FakeResponse(io.BytesIO):
    def __init__(self, body, length): super().__init__(body); self.headers = {"Content-Length": str(length)}


@pytest.mark.parametrize("error", [urllib.error.URLError("[Errno -3] Temporary failure in name resolution"),
                                   socket.timeout("timed out"), TimeoutError("timed out"),
                                   ConnectionResetError(104, "Connection reset by peer"),
                                   urllib.error.HTTPError("http://x", 403, "Forbidden", {}, None),
                                   http.client.IncompleteRead(b"abc", 10), http.client.RemoteDisconnected("closed")])
def test_offline_is_one_clear_error(error, tmp_path, monkeypatch):
    def fail(url, timeout): raise error
    monkeypatch.setattr(gd, "_urlopen", fail)
    rf = RemoteFile("https://example.org/data.zip", "fam/data.zip", extract_to="fam", provides=("fam/data/file.csv",))
    with pytest.raises(DataUnavailableError) as e: gd.ensure_remote(rf, tmp_path / "d")
    msg = str(e.value)
    assert "https://example.org/data.zip" in msg and str(tmp_path / "d" / "fam" / "data.zip") in msg
    assert str(tmp_path / "d" / "fam" / "data" / "file.csv") in msg and "\n" not in msg
    assert not any((tmp_path / "d" / "fam").iterdir())


def test_truncated_download_is_detected(tmp_path, monkeypatch):
    monkeypatch.setattr(gd, "_urlopen", lambda url, timeout: _FakeResponse(b"x" * 500, 1000))
    rf = RemoteFile("https://example.org/big.bin", "fam/big.bin")
    with pytest.raises(DataUnavailableError, match="truncated download, got 500 of 1000 bytes"):
        gd.download(rf, tmp_path / "d")
    assert list((tmp_path / "d" / "fam").iterdir()) == []


def test_timeout_is_short_and_configurable(tmp_path, monkeypatch):
    seen = []
    def fail(url, timeout): seen.append(timeout); raise socket.timeout()
    monkeypatch.setattr(gd, "_urlopen", fail)
    monkeypatch.setenv("GROUPINF_DOWNLOAD_TIMEOUT", "3")
    with pytest.raises(DataUnavailableError): gd.download(RemoteFile("https://example.org/a", "f/a"), tmp_path)
    monkeypatch.delenv("GROUPINF_DOWNLOAD_TIMEOUT")
    with pytest.raises(DataUnavailableError): gd.download(RemoteFile("https://example.org/a", "f/a"), tmp_path)
    assert seen == [3.0, 20.0]


def test_present_extracted_content_skips_archive(tmp_path, monkeypatch):
    monkeypatch.setattr(gd, "_urlopen", lambda url, timeout: pytest.fail("must not download"))
    (tmp_path / "fam" / "data").mkdir(parents=True); (tmp_path / "fam" / "data" / "file.csv").write_text("a")
    rf = RemoteFile("https://example.org/data.zip", "fam/data.zip", extract_to="fam", provides=("fam/data/file.csv",))
    assert gd.ensure_remote(rf, tmp_path) == tmp_path / "fam" / "data" / "file.csv"
    assert rf.present(tmp_path)


# ------------------------------------------------------------------------------------------ archives
def _tar(path, entries):
    with tarfile.open(path, "w:gz") as t:
        for kind, name, arg in entries:
            info = tarfile.TarInfo(name)
            if kind == "file": info.size = len(arg); t.addfile(info, io.BytesIO(arg))
            elif kind == "sym": info.type, info.linkname = tarfile.SYMTYPE, arg; t.addfile(info)
            elif kind == "hard": info.type, info.linkname = tarfile.LNKTYPE, arg; t.addfile(info)
            elif kind == "dev": info.type = tarfile.CHRTYPE; t.addfile(info)
            elif kind == "fifo": info.type = tarfile.FIFOTYPE; t.addfile(info)
    return path


@pytest.mark.parametrize("entries,match", [
    ([("file", "a/../../evil.txt", b"x")], "contains '..'"),
    ([("file", "../evil.txt", b"x")], "contains '..'"),
    ([("file", "/tmp/evil_abs.txt", b"x")], "absolute path"),
    ([("file", "C:/evil.txt", b"x")], "absolute path"),
    ([("sym", "a/link", "../../../etc"), ("file", "a/ok", b"x")], "'a/link' is a symbolic link"),
    ([("sym", "a/link", "/etc/passwd")], "'a/link' is a symbolic link"),
    ([("file", "a/ok", b"x"), ("sym", "a/inside", "ok")], "'a/inside' is a symbolic link"),   # even one that stays inside
    ([("file", "a/ok", b"x"), ("hard", "a/hard", "../../../etc/passwd")], "'a/hard' is a hard link"),
    ([("file", "a/ok", b"x"), ("hard", "a/hard", "a/ok")], "'a/hard' is a hard link"),
    ([("dev", "a/dev", None)], "'a/dev' is a device file"),
    ([("fifo", "a/fifo", None)], "'a/fifo' is a FIFO"),
    ([("sym", f"p/y{i}", f"x{i}/..") for i in range(3)] + [("sym", f"p/x{i}", f"y{i}/..") for i in range(3)],
     "is a symbolic link")])
def test_unsafe_tar_is_refused_before_writing(entries, match, tmp_path):
    arc = _tar(tmp_path / "evil.tar.gz", entries)
    with pytest.raises(UnsafeArchiveError, match=match): gd.extract_archive(arc, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil_abs.txt").exists()


def test_symlink_then_write_through_it_is_refused(tmp_path):
    arc = _tar(tmp_path / "evil.tar.gz", [("sym", "a/up", "../.."), ("file", "a/up/escape.txt", b"x")])
    with pytest.raises(UnsafeArchiveError): gd.extract_archive(arc, tmp_path / "out" / "x")
    assert not (tmp_path / "out" / "escape.txt").exists()


def test_writes_never_follow_a_link_even_one_planted_in_the_target(tmp_path, monkeypatch):
    "Files are opened component by component with O_NOFOLLOW: a link appearing under the target is not followed."
    (tmp_path / "victim").mkdir()
    arc = _tar(tmp_path / "a.tar.gz", [("file", "pkg/f.txt", b"payload")])
    real = gd._open_dir
    def planting(parent_fd, name):                  # another process swaps a directory for a link mid-extraction
        if name == "pkg": os.symlink(tmp_path / "victim", name, dir_fd=parent_fd)
        return real(parent_fd, name)
    monkeypatch.setattr(gd, "_open_dir", planting)
    with pytest.raises(OSError): gd.extract_archive(arc, tmp_path / "out")
    assert list((tmp_path / "victim").iterdir()) == []


def test_a_failed_gzip_crc_is_refused_before_anything_is_extracted(tmp_path):
    arc = _tar(tmp_path / "a.tar.gz", [("file", "pkg/f.bin", os.urandom(5000))])
    raw = bytearray(arc.read_bytes()); raw[-6] ^= 0xFF; arc.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="it is damaged: delete it and download it again") as e:
        gd.extract_archive(arc, tmp_path / "out")
    assert "\n" not in str(e.value) and list((tmp_path / "out").iterdir()) == []


def test_an_archive_expanding_past_its_cap_is_refused(tmp_path):
    arc = _tar(tmp_path / "bomb.tar.gz", [("file", "z.bin", bytes(32 << 20))])
    with pytest.raises(UnsafeArchiveError, match=f"more than {gd.MAX_EXPANSION}× its size"): gd.extract_archive(arc, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_a_full_disk_is_named_and_not_called_a_bad_download(tmp_path, monkeypatch):
    import errno
    arc = _tar(tmp_path / "a.tar.gz", [("file", "pkg/f.txt", b"x" * 100)])
    real = os.fdopen
    def full(fd, *a, **k):
        f = real(fd, *a, **k)
        def write(_): raise OSError(errno.ENOSPC, "No space left on device")
        f.write = write
        return f
    monkeypatch.setattr(gd.os, "fdopen", full)
    with pytest.raises(DataError, match="no space left on the device while extracting") as e: gd.extract_archive(arc, tmp_path / "out")
    assert "download" not in str(e.value).split("; the archive")[0] and str(tmp_path / "out") in str(e.value)


@pytest.mark.parametrize("name,match", [("../evil.txt", "contains '..'"), ("/abs/evil.txt", "absolute path")])
def test_unsafe_zip_is_refused(name, match, tmp_path):
    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as f: f.writestr(name, b"x")
    with pytest.raises(UnsafeArchiveError, match=match): gd.extract_archive(z, tmp_path / "out")


def test_zip_symlink_is_refused(tmp_path):
    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as f:
        info = zipfile.ZipInfo("link"); info.external_attr = (0o120777 << 16); f.writestr(info, "/etc/passwd")
    with pytest.raises(UnsafeArchiveError, match="symbolic link"): gd.extract_archive(z, tmp_path / "out")


def test_safe_archive_extracts_and_replaces_partial_content(tmp_path):
    arc = _tar(tmp_path / "ok.tar.gz", [("file", "pkg/a.txt", b"a"), ("file", "pkg/b.txt", b"b")])
    (tmp_path / "out" / "pkg").mkdir(parents=True); (tmp_path / "out" / "pkg" / "stale.txt").write_text("old")
    gd.extract_archive(arc, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out" / "pkg").iterdir()) == ["a.txt", "b.txt"]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["pkg"]   # no temporary directory left
    (tmp_path / "junk.tar.gz").write_bytes(b"not an archive")
    with pytest.raises(DataError, match="neither a zip nor a tar"): gd.extract_archive(tmp_path / "junk.tar.gz", tmp_path / "o2")


def test_archive_without_expected_layout(tmp_path):
    arc = _tar(tmp_path / "a.tar.gz", [("file", "other/file.csv", b"x")])
    rf = RemoteFile(arc.as_uri(), "fam/a.tar.gz", extract_to="fam", provides=("fam/data/file.csv",))
    with pytest.raises(DataError, match="does not have the expected layout"): gd.ensure_remote(rf, tmp_path / "d")


# ------------------------------------------------------------------------------------------ caches
def test_cache_roundtrip_params_and_rebuild(tmp_path):
    calls = []
    def build(): calls.append(1); return {"a": np.arange(4.0), "s": np.array(["x", "yy"])}
    gd.cached(tmp_path, "t", {"p": 1}, build)
    assert gd.cached(tmp_path, "t", {"p": 1}, build)["s"].tolist() == ["x", "yy"] and len(calls) == 1
    gd.cached(tmp_path, "t", {"p": 2}, build); assert len(calls) == 2
    gd.cached(tmp_path, "t", {"p": 1}, build, force_refresh=True); assert len(calls) == 3
    path = gd.cache_path(tmp_path, "t", {"p": 1})
    with np.load(path, allow_pickle=False) as z: assert set(z.files) == {"__params__", "a", "s"}
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []   # no temporary files


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "other_params"])
def test_corrupted_cache_is_rebuilt(damage, tmp_path):
    build = lambda: {"a": np.arange(100.0)}
    gd.cached(tmp_path, "t", {"p": 1}, build)
    path = gd.cache_path(tmp_path, "t", {"p": 1})
    raw = bytearray(path.read_bytes())
    if damage == "truncate": raw = raw[: len(raw) // 2]
    elif damage == "flip": raw[bytes(raw).index(np.arange(100.0)[50:51].tobytes()) + 3] ^= 0x55
    elif damage == "garbage": raw = bytearray(b"garbage" * 10)
    path.write_bytes(bytes(raw))
    if damage == "other_params":   # a file with the right name but other parameters inside
        gd.save_cache(path, {"a": np.zeros(3)}, {"p": 99})
    with pytest.warns(UserWarning, match="unusable"):
        out = gd.cached(tmp_path, "t", {"p": 1}, build)
    assert out["a"].tolist() == list(range(100))
    assert gd.load_cache(path, {"p": 1})["a"].tolist() == list(range(100))


def test_cache_refuses_object_arrays(tmp_path):
    with pytest.raises(DataError, match="object arrays"): gd.save_cache(tmp_path / "c.npz", {"o": np.array([{}])}, {})


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    path = gd.save_npz_atomic(tmp_path / "c.npz", {"a": np.arange(3)})
    def boom(*a, **k): raise RuntimeError("disk full")
    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(RuntimeError): gd.save_npz_atomic(path, {"a": np.arange(5)})
    with np.load(path) as z: assert z["a"].tolist() == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]


# ------------------------------------------------------------------------------------------ restricted unpickler
class _Evil:
    def __reduce__(self): return (os.system, ("echo pwned > /dev/null",))


def test_restricted_unpickler():
    arr = np.arange(6, dtype=np.uint8).reshape(2, 3)
    for proto in (2, 3, 4, 5):
        d = gd.restricted_loads(pickle.dumps({b"data": arr, "labels": [1, 2], "f": 1.5, "s": np.float64(2.5)}, protocol=proto))
        assert d[b"data"].tolist() == arr.tolist() and d["labels"] == [1, 2] and d["s"] == 2.5
    for bad in (_Evil(), {"f": print}, [eval], subprocess.Popen):
        with pytest.raises(DataError, match="refusing to unpickle global"): gd.restricted_loads(pickle.dumps(bad))
    with pytest.raises(DataError, match="cannot read pickle"): gd.restricted_loads(b"not a pickle")


def test_load_npz_untrusted_reads_object_arrays_without_pickle(tmp_path):
    np.savez(tmp_path / "g.npz", genres=np.array([np.array(["a", "b"]), [], np.array(["c"])], dtype=object), x=np.eye(2))
    z = gd.load_npz_untrusted(tmp_path / "g.npz")
    assert [list(v) for v in z["genres"]] == [["a", "b"], [], ["c"]] and z["x"].tolist() == np.eye(2).tolist()
    np.savez(tmp_path / "e.npz", e=np.array([_Evil()], dtype=object))
    with pytest.raises(DataError, match="refusing"): gd.load_npz_untrusted(tmp_path / "e.npz")
    with pytest.raises(DataError, match="no array 'y'"): gd.load_npz_untrusted(tmp_path / "g.npz", keys=["y"])
    (tmp_path / "bad.npz").write_bytes(b"junk")
    with pytest.raises(DataError, match="cannot read"): gd.load_npz_untrusted(tmp_path / "bad.npz")


# ------------------------------------------------------------------------------------------ fetch_dataset
def test_fetch_dataset_downloads_extracts_once(tmp_path, monkeypatch):
    from dataclasses import replace
    import groupinf.datasets.cifar10 as C
    from datasets_fixtures import serve, write_cifar_tar
    write_cifar_tar(tmp_path / "c.tar.gz")
    rf = serve(monkeypatch, C, "CIFAR10_TAR", tmp_path / "c.tar.gz", md5=None)
    monkeypatch.setitem(gd._INFO, "cifar10", replace(gd.dataset_info("cifar10"), files=(rf,)))
    assert not gd.list_datasets(tmp_path / "d").set_index("dataset_id").loc["cifar10", "available_offline"]
    paths = gd.fetch_dataset("cifar10", tmp_path / "d")
    assert paths == [tmp_path / "d" / "cifar10" / "cifar-10-batches-py" / "data_batch_1"] and paths[0].is_file()
    assert gd.list_datasets(tmp_path / "d").set_index("dataset_id").loc["cifar10", "available_offline"]
    monkeypatch.setattr(gd, "_urlopen", lambda *a: pytest.fail("downloaded twice"))
    assert gd.fetch_dataset("cifar10", tmp_path / "d") == paths
    assert gd.fetch_dataset("ortho2", tmp_path / "d") == []


def test_truncated_archive_is_a_data_error(tmp_path):
    arc = _tar(tmp_path / "a.tar.gz", [("file", f"pkg/f{i}.bin", os.urandom(20000)) for i in range(5)])
    arc.write_bytes(arc.read_bytes()[:40000])
    rf = RemoteFile(arc.as_uri(), "fam/a.tar.gz", extract_to="fam", provides=("fam/pkg/f4.bin",))
    with pytest.raises(DataError, match="cannot extract|neither a zip nor a tar") as e: gd.ensure_remote(rf, tmp_path / "d")
    assert "\n" not in str(e.value)
    assert sorted(p.name for p in (tmp_path / "d" / "fam").iterdir()) == [".a.tar.gz.digests.json", "a.tar.gz"]   # nothing half-extracted
