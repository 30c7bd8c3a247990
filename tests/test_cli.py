"""The installed `groupinf` console script: help, argument errors and the demo, run as a user runs them."""
import os, re, shutil, subprocess
from pathlib import Path
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def groupinf(*args, timeout=300):
    exe = shutil.which("groupinf") or pytest.skip("the groupinf console script is not installed")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout, env=ENV)


def test_help_lists_every_command():
    r = groupinf("--help")
    assert r.returncode == 0
    for cmd in ("demo", "datasets", "run", "figures"):
        assert cmd in r.stdout


def test_unknown_flag_is_one_line_and_nonzero():
    r = groupinf("demo", "--no-such-flag")
    assert r.returncode == 2
    assert "unrecognized arguments: --no-such-flag" in r.stderr


def test_unknown_dataset_is_one_line_error():
    r = groupinf("demo", "--dataset", "no_such_data")
    assert r.returncode == 1
    lines = [l for l in r.stderr.splitlines() if l.startswith("groupinf:")]
    assert lines == [l for l in r.stderr.splitlines() if l.strip() and "groupinf" in l]
    assert lines and lines[0].startswith("groupinf: error: unknown dataset id 'no_such_data'")


def test_demo_table_agrees_with_retraining_for_small_groups():
    r = groupinf("demo", "--sizes", "5,10")
    assert r.returncode == 0, r.stderr
    rows = [l.split() for l in r.stdout.splitlines() if re.match(r"^\s+\d+\s", l)]
    assert len(rows) == 2
    for size, pred, newton, actual in rows:
        assert abs(float(newton) - float(actual)) <= 0.1 * abs(float(actual)) + 1e-4


def test_ci_runs_the_readme_test_command_verbatim():
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    readme = (ROOT / "README.md").read_text()
    assert ci[-1] in readme, "the last line of .ci/run must be the README's test command"


def test_fetch_refuses_files_that_are_not_the_pinned_mnist_and_no_verify_uses_them(tmp_path):
    "IDX files placed under MNIST's names are checked against the real pinned MD5s, before anything reads them."
    from datasets_fixtures import write_mnist
    write_mnist(tmp_path / "mnist", n_train=20, n_test=6)
    placed = {p.name: p.read_bytes() for p in (tmp_path / "mnist").iterdir()}
    r = groupinf("datasets", "fetch", "mnist", "--data-dir", str(tmp_path))
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"groupinf: error: {tmp_path / 'mnist'}/") and "is not the file groupinf expects" in r.stderr
    assert "the pinned md5 is" in r.stderr and "--no-verify" in r.stderr
    assert {p.name: p.read_bytes() for p in (tmp_path / "mnist").iterdir() if p.name in placed} == placed   # all kept
    for how in (["--no-verify"], []):
        env = ENV if how else {**ENV, "GROUPINF_VERIFY": "0"}
        r = subprocess.run([shutil.which("groupinf"), "datasets", "fetch", "mnist", "--data-dir", str(tmp_path), *how],
                           capture_output=True, text=True, timeout=120, env=env)
        assert r.returncode == 0, r.stderr
        assert r.stdout.count("NOT verified (verification turned off)") == 4
        assert all(str(tmp_path / "mnist" / name) in r.stderr for name in placed)       # each file named in a warning


@pytest.mark.parametrize("bug, kind", [(lambda *a: {}["cv_l2_reg"], "KeyError"),
                                       (lambda *a: np.arange(3).reshape(2, 2), "ValueError")],
                         ids=["key-error-in-our-code", "value-error-inside-numpy"])
def test_a_bug_shows_its_traceback_and_says_it_is_a_bug(monkeypatch, capsys, bug, kind):
    import groupinf.cli as cli
    monkeypatch.setattr(cli, "demo", bug)
    assert cli.main(["demo"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and f"\n{kind}: " in err
    assert err.rstrip().splitlines()[-1].startswith(f"groupinf: internal error ({kind}: ")
    assert err.rstrip().endswith("this is a bug in groupinf; please report it with the traceback above")


def test_own_errors_are_one_line_unless_traceback_is_asked_for(capsys):
    from groupinf.cli import main
    assert main(["demo", "--dataset", "no_such_data"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("groupinf: error: unknown dataset id 'no_such_data'")
    assert main(["--traceback", "demo", "--dataset", "no_such_data"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.rstrip().splitlines()[-1].startswith("groupinf: error: unknown")
