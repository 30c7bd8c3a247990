"""Promises about bad input: every kind of bad input to the library or to the `groupinf` command gets a clear typed
error (ValueError / TypeError or a subclass, a message naming what is wrong), and nothing half-written is left behind.

The library is called in-process; the command is the installed `groupinf` console script run as a subprocess, which
must print ONE line `groupinf: error: ...` and exit with status 1. Argument-parser errors (status 2) and the demo's
unknown dataset are in test_cli.py; the runner's own argument checks are in test_runner.py.
"""
import os, shutil, subprocess
from pathlib import Path

import numpy as np
import pytest

from groupinf.data import DataError, DataSet, Datasets, load_dataset
from groupinf.model import ConvergenceError, LogisticRegression
from groupinf.store import is_temp_file

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "MPLBACKEND": "Agg",
       "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}   # offline: every download is refused


@pytest.fixture(scope="module")
def data():
    d = load_dataset("breast_cancer")
    return d.train.x, d.train.labels, d.test.x, d.test.labels


@pytest.fixture(scope="module")
def engine(data):
    from groupinf.influence import GroupInfluence
    x, y, _, _ = data
    return GroupInfluence(LogisticRegression(1.0).fit(x, y), x, y, progress=False)


def result_files(directory):
    "Files that would carry results or half-written results: arrays, tables, figures, temporary files."
    d = Path(directory)
    return [p for p in d.rglob("*") if p.is_file() and (p.suffix in (".npz", ".csv", ".png", ".pdf") or is_temp_file(p))] \
        if d.exists() else []


# ------------------------------------------------------------------------------------------------ datasets
def test_a_dataset_refuses_non_finite_features():
    for bad in (np.nan, np.inf, -np.inf):
        with pytest.raises(DataError, match="x contains NaN or infinite values"):
            DataSet(np.array([[0.0, 1.0], [bad, 2.0]]), np.array([0, 1]))
    import scipy.sparse as sp
    with pytest.raises(DataError, match="NaN"): DataSet(sp.csr_matrix(np.array([[0.0, np.nan]])), np.array([0]))
    with pytest.raises(DataError, match="numeric"): DataSet(np.array([["a", "b"]]), np.array([0]))


def test_a_dataset_refuses_labels_outside_0_to_K_minus_1_and_mismatched_lengths():
    with pytest.raises(DataError, match="0..K-1"): DataSet(np.zeros((2, 2)), np.array([0, -1]))
    with pytest.raises(DataError, match="integers"): DataSet(np.zeros((2, 2)), np.array([0.0, 1.5]))
    with pytest.raises(DataError, match="3 rows but labels has 2"): DataSet(np.zeros((3, 2)), np.array([0, 1]))


def test_splits_with_different_feature_counts_are_refused():
    a = DataSet(np.zeros((2, 3)), np.array([0, 1]))
    with pytest.raises(DataError, match="same number of features"):
        Datasets(a, None, DataSet(np.zeros((2, 4)), np.array([0, 1])))


def test_an_unknown_dataset_id_is_a_data_error():
    with pytest.raises(DataError, match="unknown dataset id 'no_such_data'; known ids: .*breast_cancer"):
        load_dataset("no_such_data")


# ------------------------------------------------------------------------------------------------ the model
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_fit_refuses_non_finite_features(data, bad):
    x, y, _, _ = data
    x = x.copy(); x[3, 4] = bad
    with pytest.raises(ValueError, match="X contains NaN or infinite values"): LogisticRegression(1.0).fit(x, y)


def test_fit_refuses_labels_that_do_not_match_num_classes(data):
    "Labels of any values are encoded (test_model_sklearn.py); with num_classes=K they are codes 0..K-1 or K values."
    x, y, _, _ = data
    with pytest.raises(ValueError, match=r"with num_classes=2, y must hold the codes 0..1 or exactly 2 distinct labels; got 3: \[0, 1, 2\]"):
        LogisticRegression(1.0, num_classes=2).fit(x, np.where(np.arange(len(y)) == 0, 2, y))
    with pytest.raises(ValueError, match=r"exactly 3 distinct labels; got 2: \[-1, 0\]"):
        LogisticRegression(1.0, num_classes=3).fit(x, y - 1)


def test_fit_refuses_a_single_class(data):
    x, y, _, _ = data
    with pytest.raises(ValueError, match="at least two classes"): LogisticRegression(1.0).fit(x, np.zeros_like(y))


def test_fit_refuses_a_class_without_examples_when_the_intercept_has_no_optimum(data):
    x, y, _, _ = data
    with pytest.raises(ValueError, match="class"):
        LogisticRegression(1.0, num_classes=2).fit(x, np.zeros_like(y))


def test_fit_refuses_mismatched_lengths(data):
    x, y, _, _ = data
    with pytest.raises(ValueError, match="y must be a 1-d array of length 455"): LogisticRegression(1.0).fit(x, y[:-1])
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(455,\)"):
        LogisticRegression(1.0).fit(x, y, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="sample_weight must be finite and non-negative"):
        LogisticRegression(1.0).fit(x, y, sample_weight=-np.ones(len(y)))


@pytest.mark.parametrize("make, error, match", [
    (lambda x, y: (x.astype(str), y), TypeError, "X must be numeric"),
    (lambda x, y: (x.astype(object), y), TypeError, "X must be numeric"),
    (lambda x, y: (x[:, 0], y), ValueError, "X must be a 2-d array"),
    (lambda x, y: (x[:, :, None], y), ValueError, "X must be a 2-d array"),
    (lambda x, y: (x, np.stack([y, y], 1)), ValueError, "y must be a 1-d array"),  # a column vector is read as 1-d
    (lambda x, y: (x, y + 0.5), ValueError, "Unknown label type: continuous"),     # strings are labels like any other
    (lambda x, y: (x, np.where(np.arange(len(y)) == 0, np.nan, y)), ValueError, "Input y contains NaN"),
], ids=["x-str", "x-object", "x-1d", "x-3d", "y-2d", "y-fractional", "y-nan"])
def test_fit_refuses_wrong_dtypes_and_shapes(data, make, error, match):
    x, y, _, _ = data
    with pytest.raises(error, match=match): LogisticRegression(1.0).fit(*make(x, y))


def test_predictions_refuse_the_wrong_number_of_features(data):
    x, y, xt, yt = data
    m = LogisticRegression(1.0).fit(x, y)
    with pytest.raises(ValueError, match="X has 3 features, but LogisticRegression is expecting 30 features as input"): m.losses(xt[:, :3], yt)
    with pytest.raises(ValueError, match=r"y has labels not in classes_ \[0, 1\]: \[2\]"): m.losses(xt[:2], np.array([2, 0]))


@pytest.mark.parametrize("l2_reg", [-1.0, float("nan"), float("inf")])
def test_l2_reg_must_be_finite_and_non_negative(data, l2_reg):
    x, y, _, _ = data
    with pytest.raises(ValueError, match="l2_reg must be finite and >= 0"): LogisticRegression(l2_reg).fit(x, y)


def test_zero_l2_reg_with_a_singular_hessian_is_a_clear_error(data):
    "A duplicated feature makes the unregularised Hessian exactly singular: a LinAlgError (a ValueError), no NaN."
    x, y, _, _ = data
    xd = np.hstack([x, x[:, :1]])
    with pytest.raises(np.linalg.LinAlgError, match="singular") as e: LogisticRegression(0.0).fit(xd, y)
    assert isinstance(e.value, ValueError) and "\n" not in str(e.value)


def test_non_convergence_within_the_iteration_limit_warns_or_with_strict_raises_convergence_error(data, engine):
    from sklearn.exceptions import ConvergenceWarning
    x, y, _, _ = data
    with pytest.raises(ConvergenceError, match="after 1 iterations .*raise max_iter or l2_reg"):
        LogisticRegression(1.0, max_iter=1, strict=True).fit(x, y)
    with pytest.warns(ConvergenceWarning, match="after 1 iterations .*raise max_iter or l2_reg"):
        assert not LogisticRegression(1.0, max_iter=1).fit(x, y).converged_
    assert issubclass(ConvergenceError, RuntimeError)
    engine.model.max_iter = 1
    try:
        with pytest.raises(ConvergenceError, match=r"retraining did not converge for row\(s\) \[0\]"):
            engine.retrain([np.arange(200)])
    finally: engine.model.max_iter = 100


@pytest.mark.parametrize("kw", [dict(l2_reg="1"), dict(l2_reg=1.0, max_iter=-1), dict(l2_reg=1.0, max_iter=1.5)],
                         ids=["l2_reg-str", "max_iter-negative", "max_iter-float"])
def test_hyperparameters_of_the_wrong_type_or_range_are_named(data, kw):
    x, y, _, _ = data
    name = "max_iter" if "max_iter" in kw else "l2_reg"
    with pytest.raises((TypeError, ValueError), match=name): LogisticRegression(**kw).fit(x[:40], y[:40])


def test_max_memory_must_be_a_positive_number_of_bytes(data):
    from groupinf.experiments.subsets import subsets_config
    x, y, _, _ = data
    with pytest.raises(ValueError, match="max_memory"): subsets_config(max_memory=-5)
    with pytest.raises(ValueError, match="max_memory"): LogisticRegression(1.0, max_memory=-5).fit(x[:40], y[:40])


# ------------------------------------------------------------------------------------------------ the estimators
@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
def test_estimators_refuse_non_finite_features(data, engine, bad):
    from groupinf.influence import GroupInfluence
    x, y, _, _ = data
    x = x.copy(); x[3, 4] = bad
    with pytest.raises(ValueError, match="x contains NaN or infinite values"):
        GroupInfluence(engine.model, x, y, progress=False)


def test_estimators_refuse_labels_outside_the_models_classes(data, engine):
    from groupinf.influence import GroupInfluence, Target
    x, y, xt, yt = data
    with pytest.raises(ValueError, match="labels must be in 0..1"):
        GroupInfluence(engine.model, x, np.where(np.arange(len(y)) == 0, 2, y), progress=False)
    with pytest.raises(ValueError, match="labels must be in 0..1"):
        engine.pointwise_influence(Target.losses(xt[:2], np.array([2, 0])))


@pytest.mark.parametrize("which", ["labels-short", "features-missing", "weights-short"])
def test_estimators_refuse_data_of_the_wrong_shape(data, engine, which):
    from groupinf.influence import GroupInfluence
    x, y, _, _ = data
    args = {"labels-short": (x, y[:-1], None), "features-missing": (x[:, :-1], y, None),
            "weights-short": (x, y, np.ones(3))}[which]
    with pytest.raises(ValueError):
        GroupInfluence(engine.model, *args[:2], sample_weight=args[2], progress=False)


def test_targets_refuse_non_finite_features(data):
    from groupinf.influence import Target
    _, _, xt, yt = data
    xt = xt[:2].copy(); xt[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"): Target.losses(xt, yt[:2])


BAD_GROUPS = {"empty": (np.array([], np.int64), "group 0 is empty"),
              "out-of-range": (np.array([0, 455]), "group 0 has index 455, out of range for n = 455"),
              "negative": (np.array([-1, 2]), "group 0 has a negative index -1"),
              "duplicate": (np.array([1, 1, 2]), "group 0 repeats index 1"),
              "float": (np.array([1.0, 2.0]), "group 0 must hold integer indices"),
              "2-d": (np.array([[1, 2]]), "group 0 must be a 1-d array")}
ESTIMATOR_CALLS = {"first_order_params": lambda e, g: e.first_order_params(g),
                   "newton_params": lambda e, g: e.newton_params(g),
                   "retrain": lambda e, g: e.retrain(g),
                   "influence": lambda e, g: e.influence(g, {}, estimators=("pred", "newton", "actual"))}


@pytest.mark.parametrize("estimator, bad", [
    (e, b) for e in ESTIMATOR_CALLS for b in BAD_GROUPS])
def test_bad_groups_are_refused_naming_the_group(engine, estimator, bad):
    group, match = BAD_GROUPS[bad]
    with pytest.raises(ValueError, match=match): ESTIMATOR_CALLS[estimator](engine, [group])


@pytest.mark.parametrize("dataset", ["breast_cancer", "iris"])
def test_retraining_refuses_a_group_that_removes_a_whole_class(dataset):
    from groupinf.influence import GroupInfluence
    d = load_dataset(dataset)
    e = GroupInfluence(LogisticRegression(1.0).fit(d.train.x, d.train.labels), d.train.x, d.train.labels, progress=False)
    with pytest.raises(ValueError, match="class"): e.retrain([np.flatnonzero(d.train.labels == 1)])


# ------------------------------------------------------------------------------------------------ experiments
def test_an_unknown_dataset_in_an_experiment_is_a_data_error_that_stores_no_results(tmp_path):
    from groupinf.experiments.subsets import SubsetInfluence, subsets_config
    exp = SubsetInfluence(subsets_config("no_such_data", num_subsets=1), out_dir=tmp_path, progress=False)
    with pytest.raises(DataError, match="unknown dataset id 'no_such_data'"): exp.run()
    assert result_files(tmp_path) == [] and not exp.run_dir.exists()   # not even its config and lock


def test_an_unwritable_output_directory_is_an_os_error_that_writes_nothing(tmp_path):
    from groupinf.experiments.subsets import SubsetInfluence, subsets_config
    (tmp_path / "a_file").write_text("not a directory")
    exp = SubsetInfluence(subsets_config(num_subsets=1), out_dir=tmp_path / "a_file" / "out", progress=False)
    with pytest.raises(OSError, match="Not a directory"): exp.run()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"] and (tmp_path / "a_file").read_text() == "not a directory"


@pytest.mark.parametrize("kw, match", [(dict(fixed_reg=0.0), r"fixed_reg: expected a regularisation λ/n in \(0, 1e\+06\], got 0.0"),
                                       (dict(fixed_reg=-1.0), r"fixed_reg: expected a regularisation λ/n in \(0, 1e\+06\], got -1.0"),
                                       (dict(num_subsets=0), "num_subsets: expected a number of group sizes from 1 to 100,000, got 0"),
                                       (dict(subset_choice_type="all"), "subset_choice_type: expected one of 'range', 'types', got 'all'"),
                                       (dict(subset_min_rel_size=2.0), "subset_min_rel_size"),
                                       (dict(subset_min_rel_size=0.5, subset_max_rel_size=0.1), "subset_min_rel_size <= subset_max_rel_size")])
def test_experiment_configurations_out_of_range_are_refused_before_anything_runs(kw, match):
    from groupinf.experiments.subsets import subsets_config
    with pytest.raises(ValueError, match=match): subsets_config(**kw)


# ------------------------------------------------------------------------------------------------ the command
# (arguments, the start of the one error line); each runs `groupinf` with --out-dir <tmp>/out and no network.
CLI_CASES = {
    "unknown-dataset": (["run", "subsets", "--dataset-id", "no_such_data", "--num-subsets", "1"],
                        "groupinf: error: unknown dataset id 'no_such_data'; known ids: "),
    "unwritable-out-dir": (["run", "subsets", "--num-subsets", "1", "--out-dir", "{tmp}/a_file/out"],
                           "groupinf: error: [Errno 20] Not a directory: "),
    "missing-data-offline": (["run", "subsets", "--dataset-id", "hospital", "--data-dir", "{tmp}/data", "--num-subsets", "1"],
                             "groupinf: error: dataset_diabetes.zip is not available here: could not download "),
    "negative-l2-reg": (["demo", "--rel-l2-reg", "-1"], "groupinf: error: l2_reg must be finite and >= 0; got -455.0"),
    "fetch-unknown-dataset": (["datasets", "fetch", "no_such_data", "--data-dir", "{tmp}/data"],
                              "groupinf: error: unknown dataset id 'no_such_data'"),
}


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory):
    "Run every bad command at once (each is a separate `groupinf` process) and collect what it left."
    exe = shutil.which("groupinf") or pytest.skip("the groupinf console script is not installed")
    procs = {}
    for name, (args, _) in CLI_CASES.items():
        tmp = tmp_path_factory.mktemp(name)
        (tmp / "a_file").write_text("x")
        argv = [a.format(tmp=tmp) for a in args]
        if "--out-dir" not in argv and argv[0] == "run": argv += ["--out-dir", str(tmp / "out")]
        procs[name] = (tmp, subprocess.Popen([exe, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                             env=ENV, cwd=tmp))
    out = {}
    for name, (tmp, p) in procs.items():
        stdout, stderr = p.communicate(timeout=600)
        out[name] = (p.returncode, stdout, stderr, tmp)
    return out


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_the_command_reports_bad_input_in_one_line_exits_1_and_leaves_no_results(cli_results, case):
    code, stdout, stderr, tmp = cli_results[case]
    ours = [l for l in stderr.splitlines() if l.startswith("groupinf")]
    assert code == 1, stderr[-2000:]
    assert len(ours) == 1 and ours[0].startswith(CLI_CASES[case][1].format(tmp=tmp)), stderr[-2000:]
    assert "Traceback" not in stderr and "Traceback" not in stdout
    assert result_files(tmp) == []
    left = sorted(p.relative_to(tmp).as_posix() for p in tmp.rglob("*") if p.is_file())
    assert set(left) <= {"a_file", f"out/{'/'.join(RUN_OF.get(case, ('-',)))}/config.json",
                         f"out/{'/'.join(RUN_OF.get(case, ('-',)))}/.lock"}, left   # at most the run's config and lock
    assert (tmp / "a_file").read_text() == "x"


RUN_OF = {"unknown-dataset": ("ss_logreg", "no_such_data_range-1_seed-0"),
          "missing-data-offline": ("ss_logreg", "hospital_range-1_seed-0")}


def test_bad_option_values_are_refused_by_the_parser_before_any_work(tmp_path):
    r = subprocess.run([shutil.which("groupinf"), "run", "subsets", "--num-subsets", "0", "--out-dir", str(tmp_path)],
                       capture_output=True, text=True, timeout=120, env=ENV)
    assert r.returncode == 2 and "argument --num-subsets: expected a number of group sizes from 1 to" in r.stderr
    assert not any(tmp_path.iterdir())
