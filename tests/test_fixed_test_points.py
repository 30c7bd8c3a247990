"Fixed test points: the frozen lists only on the paper's copy of a dataset, the rule otherwise, checked before any work."
import dataclasses, hashlib, json, shutil, subprocess, time

import numpy as np
import pytest

import groupinf.data as gd
import groupinf.datasets.mnist as M
import groupinf.datasets.spam as S
from groupinf.groups import FIXED_TEST, choose_fixed_test, is_paper_copy
from datasets_fixtures import enron_texts, no_internet, serve, write_enron_tar, write_idx, write_mnist  # noqa: F401


def test_a_copy_of_spam_with_another_test_set_runs_to_completion_with_rule_chosen_points(tmp_path, monkeypatch):
    from groupinf.experiments.subsets import SubsetInfluence, subsets_config
    serve(monkeypatch, S, "ENRON1_TAR", write_enron_tar(tmp_path / "enron1.tar.gz", enron_texts(n_spam=24, n_ham=36)))
    data = tmp_path / "data"
    assert gd.load_dataset("spam", data_dir=data).test.num_examples == 12          # the paper's has 1,035
    exp = SubsetInfluence(subsets_config("spam", data, num_subsets=2, fixed_reg=1e-2), out_dir=tmp_path / "out",
                          progress=False)
    results = exp.run()
    assert str(results["fixed_test_rule"]) == "rule" and len(results["fixed_test"]) == 6 and max(results["fixed_test"]) < 12
    losses = np.asarray(results["initial_test_losses"])
    assert sorted(results["fixed_test"][:3]) == sorted(np.argsort(losses, kind="stable")[-3:])   # the 3 highest losses
    reason = str(results["fixed_test_reason"])
    assert "not the paper's copy of 'spam'" in reason and "its test set has 12 points, the paper's had 1,035" in reason
    config = json.loads((exp.run_dir / "config.json").read_text())
    assert config["fixed_test"] == "auto" and config["resolved"]["fixed_test_rule"] == "rule"
    assert config["resolved"]["fixed_test_reason"] == reason
    assert "subset_fixed_test_actl_infl" in results                                   # the run went through to the end


def test_the_paper_fingerprint_selects_the_frozen_list_and_a_changed_source_does_not(tmp_path, monkeypatch):
    "On MNIST files whose digests are the pinned ones, a test set of the recorded size selects the frozen list."
    raw = write_mnist(tmp_path / "data" / "mnist", n_train=40, n_test=12)
    for k, f in M.MNIST_FILES.items():
        own = hashlib.md5((tmp_path / "data" / f.path).read_bytes()).hexdigest()
        monkeypatch.setitem(M.MNIST_FILES, k, dataclasses.replace(f, md5=own))
    monkeypatch.setitem(gd._INFO, "mnist", dataclasses.replace(gd.dataset_info("mnist"), files=tuple(M.MNIST_FILES.values())))
    provenance, frozen = {"mnist": dict(n_test=12)}, {"mnist": (3, 1, 4, 1 + 4, 9, 2)}
    d = gd.load_dataset("mnist", data_dir=tmp_path / "data", validation_size=8)
    copy = is_paper_copy("mnist", d.test.num_examples, data_dir=tmp_path / "data", provenance=provenance)
    assert copy == (True, "test set of 12 points, 4 source files match their pinned digests")
    rule, idx, why = choose_fixed_test("auto", "mnist", d.test.num_examples, copy, frozen)
    assert rule == "frozen" and idx.tolist() == [3, 1, 4, 5, 9, 2] and "this is the paper's copy" in why
    f = tmp_path / "data" / "mnist" / "t10k-labels-idx1-ubyte.gz"
    write_idx(f, (raw["t10k"][1] + 1) % 10)                                      # a variant, used on purpose
    with pytest.warns(gd.UnverifiedDataWarning):
        d = gd.load_dataset("mnist", data_dir=tmp_path / "data", validation_size=8, verify=False)
    copy = is_paper_copy("mnist", d.test.num_examples, data_dir=tmp_path / "data", provenance=provenance)
    assert copy == (False, "mnist/t10k-labels-idx1-ubyte.gz does not match its pinned md5")
    assert choose_fixed_test("auto", "mnist", 12, copy, frozen)[:2] == ("rule", None)


def test_an_out_of_range_list_is_refused_before_any_computation(tmp_path):
    from groupinf.experiments.subsets import SubsetInfluence, subsets_config
    exp = SubsetInfluence(subsets_config("breast_cancer", fixed_test="0,5,114"), out_dir=tmp_path / "out", progress=False)
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"fixed test point 114 is out of range: the test set of 'breast_cancer' has 114 points"):
        exp.run()
    assert time.perf_counter() - t0 < 5 and not (tmp_path / "out").exists()     # no cross-validation, no run directory
    with pytest.raises(ValueError, match="go up to 842, but this copy's test set has 114"):
        choose_fixed_test("frozen", "spam", 114)
    assert choose_fixed_test("frozen", "hospital", 81766)[1].tolist() == list(FIXED_TEST["hospital"])


def test_the_command_line_refuses_bad_fixed_test_points_in_one_line(tmp_path):
    exe = shutil.which("groupinf") or pytest.skip("the groupinf console script is not installed")
    run = lambda *a: subprocess.run([exe, "run", "subsets", "--out-dir", str(tmp_path), *a], capture_output=True, text=True, timeout=300)
    r = run("--fixed-test", "1,1,2")
    assert r.returncode == 2 and "distinct non-negative test indices" in r.stderr
    r = run("--fixed-test", "0,5,114")
    assert r.returncode == 1, r.stderr
    assert [l for l in r.stderr.splitlines() if l.startswith("groupinf:")] == [
        "groupinf: error: fixed test point 114 is out of range: the test set of 'breast_cancer' has 114 points (indices 0 to 113)"]
    assert not any(tmp_path.iterdir())
