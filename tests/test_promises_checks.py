"""Promises about checks before work: every option of the `groupinf` command is checked by its parser, so a bad
value fails at once with one line naming the flag and the value and leaves nothing on disk; the library refuses
input it would otherwise silently misread (complex features, unsigned indices past 2**63, a target where the
dict of targets belongs, data its model was not fitted on); and Ctrl-C ends a run with one line, resumable."""
import os, shutil, signal, subprocess, time

import numpy as np
import pytest
import scipy.sparse as sp

from groupinf.data import load_dataset
from groupinf.groups import group_indicator
from groupinf.influence import GroupInfluence, Target
from groupinf.model import LogisticRegression

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg",
       "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}


def groupinf_exe():
    return shutil.which("groupinf") or pytest.skip("the groupinf console script is not installed")


# ------------------------------------------------------------------------------------------------ the command
BAD_OPTIONS = {   # arguments after `run subsets`: the one line the parser must print
    "seed-negative": (["--subset-seed", "-1"], "argument --subset-seed: expected a seed from 0 to 2**32 - 1, got '-1'"),
    "seed-too-large": (["--subset-seed", "99999999999"], "argument --subset-seed: expected a seed from 0 to 2**32 - 1, got '99999999999'"),
    "rel-size-negative": (["--subset-choice-type", "types", "--subset-rel-size", "-1"],
                          "argument --subset-rel-size: expected a fraction of the training set in (0, 1], got '-1'"),
    "rel-size-above-one": (["--subset-choice-type", "types", "--subset-rel-size", "5"],
                           "argument --subset-rel-size: expected a fraction of the training set in (0, 1], got '5'"),
    "fixed-reg-zero": (["--fixed-reg", "0"], "argument --fixed-reg: expected a regularisation λ/n in (0, 1e+06], got '0'"),
    "fixed-reg-overflow": (["--fixed-reg", "1e308"], "argument --fixed-reg: expected a regularisation λ/n in (0, 1e+06], got '1e308'"),
    "num-subsets-huge": (["--num-subsets", "1000000000000"],
                         "argument --num-subsets: expected a number of group sizes from 1 to 100,000, got '1000000000000'"),
    "lock-timeout-nan": (["--lock-timeout", "nan"], "argument --lock-timeout: expected a finite number of seconds >= 0, got 'nan'"),
    "workers-unbounded": (["--workers", "100000"], "argument --workers: expected between 0 and "),
}


@pytest.mark.parametrize("case", list(BAD_OPTIONS))
def test_a_bad_option_value_fails_at_once_in_one_line_naming_the_flag_and_leaves_nothing(tmp_path, case):
    args, expected = BAD_OPTIONS[case]
    start = time.monotonic()
    r = subprocess.run([groupinf_exe(), "run", "subsets", *args, "--out-dir", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=120, env=ENV)
    elapsed = time.monotonic() - start
    errors = [l for l in r.stderr.splitlines() if "error:" in l]
    assert r.returncode == 2 and len(errors) == 1, r.stderr
    assert errors[0].startswith("groupinf run subsets: error: " + expected), errors
    assert "Traceback" not in r.stderr and not (tmp_path / "out").exists()
    assert elapsed < 10, f"the parser took {elapsed:.1f} s: it must refuse before loading data or TensorFlow"


def test_ctrl_c_ends_a_run_with_one_line_and_status_130(tmp_path):
    out = tmp_path / "out"
    argv = [groupinf_exe(), "run", "subsets", "--dataset-id", "breast_cancer", "--num-subsets", "1", "--out-dir", str(out)]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    deadline = time.monotonic() + 120
    while not list(out.rglob("config.json")) and time.monotonic() < deadline and p.poll() is None: time.sleep(0.1)
    time.sleep(2.0)                                        # well inside the run's phases
    assert p.poll() is None, "the run ended before it could be interrupted"
    p.send_signal(signal.SIGINT)
    stdout, stderr = p.communicate(timeout=120)
    ours = [l for l in stderr.splitlines() if l.startswith("groupinf")]
    assert p.returncode == 130, stderr[-2000:]
    assert ours == ["groupinf: interrupted; run the same command again to resume where it stopped (finished phases "
                    "and tasks are kept)"], stderr[-2000:]
    assert "Traceback" not in stderr and "Traceback" not in stdout


# ------------------------------------------------------------------------------------------------ the library
@pytest.fixture(scope="module")
def fitted():
    d = load_dataset("breast_cancer")
    x, y = d.train.x, d.train.labels
    return LogisticRegression(1.0).fit(x, y), x, y, d.test.x, d.test.labels


@pytest.mark.parametrize("where", ["fit-dense", "fit-sparse", "engine", "target", "sample-weight"])
def test_complex_input_is_refused_not_cast_to_real(fitted, where):
    model, x, y, xt, yt = fitted
    cx = x * (1 + 1e-3j)
    call = {"fit-dense": lambda: LogisticRegression(1.0).fit(cx, y),
            "fit-sparse": lambda: LogisticRegression(1.0).fit(sp.csr_matrix(cx), y),
            "engine": lambda: GroupInfluence(model, cx, y, progress=False),
            "target": lambda: Target.losses(xt[:2] * 1j, yt[:2]),
            "sample-weight": lambda: LogisticRegression(1.0).fit(x, y, sample_weight=np.ones(len(y)) + 0j)}[where]
    with pytest.raises(TypeError, match="must be real; got complex dtype complex128"):
        call()


def test_an_unsigned_index_past_2_63_is_reported_as_it_is_not_as_a_negative_number(fitted):
    _, x, _, _, _ = fitted
    huge = np.array([0, 2**63 + 1], dtype=np.uint64)
    with pytest.raises(ValueError, match=f"group 0 has index {2**63 + 1}, out of range for n = {len(x)}"):
        group_indicator([huge], len(x))
    assert group_indicator([np.array([3, 1], np.uint64)], len(x)).nnz == 2


def test_one_target_is_accepted_where_the_dict_of_targets_belongs_and_anything_else_is_named(fitted):
    model, x, y, xt, yt = fitted
    eng = GroupInfluence(model, x, y, progress=False)
    t, groups = Target.losses(xt[:2], yt[:2]), [np.arange(5), np.arange(5, 12)]
    one, named = eng.influence(groups, t, estimators=("pred",)), eng.influence(groups, {"t": t}, estimators=("pred",))
    np.testing.assert_array_equal(one["target_pred"], named["t_pred"])
    for bad in ([t], ("t", t), {"t": "loss"}):
        with pytest.raises(TypeError, match="targets must be a Target or a dict name -> Target; got "):
            eng.influence(groups, bad)


@pytest.mark.parametrize("other", ["columns-reversed", "shifted", "other-rows", "other-labels"])
def test_an_engine_given_data_its_model_was_not_fitted_on_refuses_it(fitted, other):
    model, x, y, _, _ = fitted
    xo, yo = {"columns-reversed": (x[:, ::-1], y), "shifted": (x + 1e-2, y),
              "other-rows": (np.roll(x, 1, axis=0), y), "other-labels": (x, 1 - y)}[other]
    with pytest.raises(ValueError, match="the model is not at the optimum of the data given to GroupInfluence"):
        GroupInfluence(model, xo, yo, progress=False)
    norm, tol = GroupInfluence(model, x, y, progress=False).optimality()
    assert norm <= tol                                     # the data it was fitted on passes with the fit's own margin
