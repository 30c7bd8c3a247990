"""Promises about archives and data files, tried as an attacker and a careless user would: nothing escapes the data
directory, damaged or substituted files are refused before anything is extracted or read, and `fetch` says what it
verified. The command is the installed `groupinf` console script, run offline as a subprocess."""
import io, os, shutil, subprocess, tarfile
from pathlib import Path

import pytest

import groupinf.data as gd
import groupinf.datasets.mnist as M
import groupinf.datasets.spam as S
from datasets_fixtures import enron_texts, no_internet, serve, write_cifar_tar, write_enron_tar, write_mnist  # noqa: F401

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}


def groupinf(*args, env=ENV):
    exe = shutil.which("groupinf") or pytest.skip("the groupinf console script is not installed")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=300, env=env)


def one_error_line(r):
    lines = [l for l in r.stderr.splitlines() if l.strip() and not l.startswith("Downloading")]
    assert r.returncode == 1 and len(lines) == 1 and lines[0].startswith("groupinf: error: "), r.stderr
    return lines[0]


def tar_of(path, members):
    "A .tar.gz of (name, kind, data-or-link-target) members, in order."
    with tarfile.open(path, "w:gz") as t:
        for name, kind, arg in members:
            info = tarfile.TarInfo(name)
            if kind == "file": info.size = len(arg); t.addfile(info, io.BytesIO(arg))
            elif kind == "dir": info.type = tarfile.DIRTYPE; t.addfile(info)
            else: info.type, info.linkname = {"sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE}[kind], arg; t.addfile(info)
    return Path(path)


def data_files(root):
    "Every file and link under `root`, except the digest stamps beside verified files."
    return sorted(p.relative_to(root).as_posix() for p in Path(root).rglob("*")
                  if (p.is_file() or p.is_symlink()) and not p.name.endswith(".digests.json"))


def test_the_realpath_overflow_archive_cannot_touch_a_file_outside(tmp_path):
    "CVE-2025-4517's shape: symlinks through long directory names past PATH_MAX, then a link out and a hard link through it."
    victim = tmp_path / "victim.txt"; victim.write_text("precious")
    data = tmp_path / "data"; (data / "spam").mkdir(parents=True)
    long = "d" * 247
    members, path = [], ""
    for i in range(16):                                   # each step: a long directory and a short link to it
        members += [(f"{path}{long}", "dir", None), (f"{path}{i:x}", "sym", long)]
        path += f"{i:x}/"
    members += [(f"{path}l", "sym", "../" * 16 * 2), ("escape", "sym", f"{path}l/../../{victim}"),
                ("enron1/ham/hijack", "hard", "escape"), ("enron1/spam/x.txt", "file", b"spam")]
    tar_of(data / "spam" / "enron1.tar.gz", members)
    r = groupinf("datasets", "fetch", "spam", "--data-dir", str(data))
    line = one_error_line(r)
    assert "is a symbolic link" in line and "refusing to extract" in line
    assert victim.read_text() == "precious" and os.stat(victim).st_nlink == 1
    assert data_files(data) == ["spam/enron1.tar.gz"]                     # no link, no half-extracted content


def test_a_chain_of_safe_looking_links_is_refused_and_nothing_is_left(tmp_path):
    data = tmp_path / "data"; (data / "spam").mkdir(parents=True)
    chain = [("x0", "dir", None)] + [(f"y{i}", "sym", f"x{i}/..") for i in range(3)] + \
            [(f"x{i + 1}", "sym", f"y{i}") for i in range(3)] + [("enron1/spam/a.txt", "file", b"a"), ("enron1/ham/b.txt", "file", b"b")]
    tar_of(data / "spam" / "enron1.tar.gz", chain)
    line = one_error_line(groupinf("datasets", "fetch", "spam", "--data-dir", str(data)))
    assert "'y0' is a symbolic link" in line
    assert data_files(data) == ["spam/enron1.tar.gz"]


def test_a_tar_gz_with_a_failed_crc_is_refused_before_extraction(tmp_path):
    data = tmp_path / "data"; (data / "spam").mkdir(parents=True)
    arc = write_enron_tar(data / "spam" / "enron1.tar.gz")
    raw = bytearray(arc.read_bytes()); raw[-6] ^= 0xFF; arc.write_bytes(bytes(raw))   # the gzip trailer's CRC-32
    line = one_error_line(groupinf("datasets", "fetch", "spam", "--data-dir", str(data)))
    assert f"cannot extract {arc}" in line and "it is damaged" in line
    assert data_files(data) == ["spam/enron1.tar.gz"]


def test_a_damaged_deflate_stream_in_an_idx_file_is_a_data_error(tmp_path, monkeypatch):
    write_mnist(tmp_path / "server", n_train=40, n_test=12)
    for k, f in M.MNIST_FILES.items():
        serve(monkeypatch, M, "MNIST_FILES", tmp_path / "server" / f.path.split("/")[-1], key=k, md5=None)
    gd.load_dataset("mnist", data_dir=tmp_path / "data", validation_size=8)
    f = tmp_path / "data" / "mnist" / "train-images-idx3-ubyte.gz"
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 64] = os.urandom(64)            # the same length, a broken deflate stream
    f.write_bytes(bytes(raw))
    with pytest.raises(gd.DataError, match="changed since groupinf downloaded it"):
        gd.load_dataset("mnist", data_dir=tmp_path / "data", validation_size=8)
    with pytest.warns(gd.UnverifiedDataWarning), pytest.raises(gd.DataError, match=f"cannot read {f}"):
        gd.load_dataset("mnist", data_dir=tmp_path / "data", validation_size=8, verify=False)


def test_fetch_refuses_garbage_under_mnist_names(tmp_path):
    (tmp_path / "mnist").mkdir()
    for f in M.MNIST_FILES.values(): (tmp_path / f.path).write_bytes(b"garbage")
    line = one_error_line(groupinf("datasets", "fetch", "mnist", "--data-dir", str(tmp_path)))
    assert "is not the file groupinf expects" in line and "the pinned md5 is" in line
    assert all((tmp_path / f.path).read_bytes() == b"garbage" for f in M.MNIST_FILES.values())


def test_fetch_refuses_another_well_formed_archive_under_cifars_name(tmp_path):
    (tmp_path / "cifar10").mkdir()
    write_cifar_tar(tmp_path / "cifar10" / "cifar-10-python.tar.gz")
    line = one_error_line(groupinf("datasets", "fetch", "cifar10", "--data-dir", str(tmp_path)))
    assert "cifar-10-python.tar.gz is not the file groupinf expects" in line and "c58f30108f718f92721af3b95e74349a" in line
    assert data_files(tmp_path) == ["cifar10/cifar-10-python.tar.gz"]   # nothing extracted


def test_fetch_says_what_it_verified(tmp_path, monkeypatch):
    "Each file's line: its pinned digest verified, no published checksum, or not verified because that was asked."
    write_mnist(tmp_path / "data" / "mnist")
    r = groupinf("datasets", "fetch", "mnist", "--data-dir", str(tmp_path / "data"), "--no-verify")
    assert r.returncode == 0 and r.stdout.count(": NOT verified (verification turned off)") == 4
    assert r.stderr.count("groupinf: warning: ") == 4                   # each unverified file named once, in one line
    status = gd.verification_status(M.MNIST_FILES["t10k-labels"], tmp_path / "data")
    assert status == "t10k-labels-idx1-ubyte.gz: md5 ec29112dd5afa0611ce80d1b7f02629c verified"


def test_a_file_without_a_published_hash_is_held_to_the_digest_recorded_at_its_download(tmp_path, monkeypatch, capfd):
    src = write_enron_tar(tmp_path / "enron1.tar.gz", enron_texts())
    serve(monkeypatch, S, "ENRON1_TAR", src)
    gd.load_dataset("spam", data_dir=tmp_path / "data", min_df=1)
    assert "no checksum is published for it; recorded its SHA-256" in capfd.readouterr().err   # said once, at download
    arc = tmp_path / "data" / "spam" / "enron1.tar.gz"
    write_enron_tar(arc, enron_texts(n_spam=3, n_ham=3))                # another file under the same name
    shutil.rmtree(tmp_path / "data" / "spam" / "enron1")
    with pytest.raises(gd.ChecksumError, match=f"{arc} changed since groupinf downloaded it"):
        gd.load_dataset("spam", data_dir=tmp_path / "data", min_df=1)
    with pytest.warns(gd.UnverifiedDataWarning):
        gd.load_dataset("spam", data_dir=tmp_path / "data", min_df=1, verify=False)
    assert len(list((tmp_path / "data" / "spam" / "enron1" / "ham").iterdir())) == 3


@pytest.mark.parametrize("kind, what", [(tarfile.FIFOTYPE, "a FIFO"), (tarfile.CHRTYPE, "a device file"),
                                        (tarfile.BLKTYPE, "a device file")], ids=["fifo", "char-device", "block-device"])
def test_an_archive_with_a_special_file_is_refused_naming_the_member(tmp_path, kind, what):
    archive = tmp_path / "a.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        t.addfile(tarfile.TarInfo("enron1/ham/a.txt"), io.BytesIO(b""))
        info = tarfile.TarInfo("enron1/ham/dev"); info.type = kind; t.addfile(info)
    with pytest.raises(gd.UnsafeArchiveError, match=f"member 'enron1/ham/dev' is {what}; archives with links or special"):
        gd.extract_archive(archive, tmp_path / "out")
    assert data_files(tmp_path / "out") == []


def test_an_archive_that_expands_past_its_limit_is_refused_and_nothing_is_left(tmp_path):
    archive = tmp_path / "bomb.tar.gz"                    # 8 MB of zeros compress ~1000-fold: past 200× plus 1 MB
    tar_of(archive, [("enron1/ham/zeros.txt", "file", bytes(8 << 20))])
    limit = gd.MAX_EXPANSION * archive.stat().st_size + (1 << 20)
    with pytest.raises(gd.UnsafeArchiveError, match=rf"extracts to more than {gd.MAX_EXPANSION}× its size \({limit:,} bytes\)"):
        gd.extract_archive(archive, tmp_path / "out")
    assert data_files(tmp_path / "out") == []
    small = tar_of(tmp_path / "ok.tar.gz", [("enron1/ham/zeros.txt", "file", bytes(1 << 19))])   # within the 1 MB allowance
    assert (gd.extract_archive(small, tmp_path / "ok") / "enron1/ham/zeros.txt").stat().st_size == 1 << 19


def test_a_full_disk_is_named_and_not_blamed_on_the_download(tmp_path, monkeypatch):
    archive = tar_of(tmp_path / "a.tar.gz", [("enron1/ham/a.txt", "file", b"x" * 1000)])
    real_fdopen = os.fdopen
    class Full(io.RawIOBase):
        def __init__(self, fd): self.f = real_fdopen(fd, "wb")
        def writable(self): return True
        def write(self, b): raise OSError(28, "No space left on device")
        def close(self): self.f.close(); super().close()
    monkeypatch.setattr(os, "fdopen", lambda fd, mode="r", *a, **k: Full(fd) if "w" in mode else real_fdopen(fd, mode, *a, **k))
    with pytest.raises(gd.DataError) as e:
        gd.extract_archive(archive, tmp_path / "out")
    msg = str(e.value)
    assert msg.startswith(f"no space left on the device while extracting {archive} into ") and "the archive itself is fine" in msg
    assert "download it again" not in msg
    monkeypatch.undo()
    assert data_files(tmp_path / "out") == []
