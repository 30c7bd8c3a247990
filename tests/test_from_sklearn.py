"""`GroupInfluence.from_sklearn`, DataFrame/Series inputs and groups as masks or index labels, beyond the notebook:
agreement with the native path (binary, multinomial, weighted, without intercept), string labels, every refusal."""
import os, warnings
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.linear_model import LogisticRegression as SkLR, LogisticRegressionCV
from sklearn.preprocessing import StandardScaler

from groupinf.influence import GroupInfluence, Target
from groupinf.model import LogisticRegression

C = 0.5
ESTS = ("pred", "newton", "actual")


def _max_rel(a, b): return float(np.abs(np.asarray(a) - b).max() / np.abs(b).max())


@pytest.fixture(scope="module")
def cancer():
    "Standardised breast cancer as a DataFrame with string ids and a Series of labels, plus three groups."
    d = load_breast_cancer(as_frame=True)
    X = d.data.set_axis([f"id{i}" for i in range(len(d.data))])
    X = (X - X.mean()) / X.std(ddof=0)
    y = d.target.set_axis(X.index)
    rng = np.random.default_rng(0)
    groups = [np.sort(rng.choice(len(y), k, replace=False)) for k in (4, 15, 50)]
    return X, y, groups


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    x, y = StandardScaler().fit_transform(x[:600]), y[:600]
    x = x[:, x.std(0) > 0]
    rng = np.random.default_rng(1)
    return x, y, [np.sort(rng.choice(len(y), k, replace=False)) for k in (3, 12)]


def _agreement(sk, X, y, groups, target, sample_weight=None):
    "Max relative differences between from_sklearn and the native engine, and of the polished vs sklearn parameters."
    codes = np.searchsorted(sk.classes_, np.asarray(y))
    eng_sk = GroupInfluence.from_sklearn(sk, X, y, sample_weight, tol=1e-12, progress=False)
    native = LogisticRegression(1 / sk.C, fit_intercept=sk.fit_intercept, tol=1e-12).fit(np.asarray(X, float), codes, sample_weight)
    eng_nat = GroupInfluence(native, X, codes, sample_weight, progress=False)
    a, b = eng_sk.influence(groups, target, estimators=ESTS), eng_nat.influence(groups, target, estimators=ESTS)
    W, b0 = sk.coef_, np.atleast_1d(sk.intercept_)
    theta_sk = np.r_[W.ravel(), (b0 - b0.mean()) if len(W) > 1 else b0] if sk.fit_intercept else W.ravel()
    return {**{e: _max_rel(a[f"target_{e}"], b[f"target_{e}"]) for e in ESTS},
            "params": _max_rel(eng_sk.theta.numpy(), theta_sk), "change": eng_sk.sklearn_param_change_}


def test_binary_agrees_with_native(cancer):
    X, y, groups = cancer
    sk = SkLR(C=C, tol=1e-10, max_iter=10000).fit(X.to_numpy(), y.to_numpy())
    d = _agreement(sk, X.to_numpy(), y.to_numpy(), groups, Target.losses(X.to_numpy()[:8], y.to_numpy()[:8]))
    assert max(d[e] for e in ESTS) < 1e-8, d
    assert d["params"] < 1e-4 and 0 < d["change"] < 1e-4, d  # polishing moved sklearn's solution, a little


def test_binary_weighted_and_without_intercept(cancer):
    X, y, groups = cancer
    x, yy = X.to_numpy(), y.to_numpy()
    w = np.random.default_rng(2).uniform(0.2, 3, len(yy))
    t = Target.losses(x[:8], yy[:8])
    sk = SkLR(C=C, tol=1e-10, max_iter=10000).fit(x, yy, sample_weight=w)  # λ = 1/C also with sample weights
    d = _agreement(sk, x, yy, groups, t, w)
    assert max(d[e] for e in ESTS) < 1e-8 and d["params"] < 1e-4, d
    sk = SkLR(C=C, tol=1e-10, max_iter=10000, solver="liblinear", fit_intercept=False).fit(x, yy)
    d = _agreement(sk, x, yy, groups, t)
    assert max(d[e] for e in ESTS) < 1e-8 and d["params"] < 1e-4, d


def test_multinomial_agrees_with_native(digits):
    x, y, groups = digits
    sk = SkLR(C=C, tol=1e-10, max_iter=10000).fit(x, y)
    d = _agreement(sk, x, y, groups, Target.losses(x[:6], y[:6]))
    assert max(d[e] for e in ESTS) < 1e-8 and d["params"] < 1e-4, d


def test_multinomial_gauge_centres_sklearn_biases(digits):
    x, y, _ = digits
    sk = SkLR(C=C, tol=1e-10, max_iter=10000).fit(x, y)
    sk.intercept_ = sk.intercept_ + 3.0  # the same model: a constant added to every bias
    eng = GroupInfluence.from_sklearn(sk, x, y, progress=False)
    assert abs(eng.theta.numpy()[-10:].sum()) < 1e-10 and eng.sklearn_param_change_ < 1e-4


def test_string_labels_and_dataframe(cancer):
    X, y, groups = cancer
    names = pd.Series(np.where(y == 1, "benign", "malignant"), index=X.index)
    sk = SkLR(C=C, tol=1e-10, max_iter=10000).fit(X, names)
    eng = GroupInfluence.from_sklearn(sk, X, names, progress=False)
    assert eng.classes_.tolist() == ["benign", "malignant"] and eng.index.equals(X.index)
    np.testing.assert_array_equal(eng.labels.numpy(), (names == "malignant").astype(int).to_numpy())
    eng_arr = GroupInfluence.from_sklearn(sk, X.to_numpy(), names.to_numpy(), progress=False)
    a = eng.influence([X.index[g] for g in groups], estimators=ESTS)
    b = eng_arr.influence(groups, estimators=ESTS)
    for k in b: np.testing.assert_allclose(a[k], b[k], rtol=0, atol=1e-12 * max(1, np.abs(b[k]).max()))
    with pytest.raises(ValueError, match=r"not in estimator.classes_: \['unknown'\]"):
        GroupInfluence.from_sklearn(sk, X, names.replace("benign", "unknown"))


def test_dataframe_series_masks_labels_equal_arrays(cancer):
    X, y, groups = cancer
    m = LogisticRegression(1.0).fit(X.to_numpy(), y.to_numpy())
    e_np = GroupInfluence(m, X.to_numpy(), y.to_numpy(), progress=False)
    e_df = GroupInfluence(m, X, y, progress=False)
    t = Target.losses(X.to_numpy()[:5], y.to_numpy()[:5])
    ref = e_np.influence(groups, t)
    masks = [np.isin(np.arange(len(y)), g) for g in groups]
    labels = [X.index[g].tolist() for g in groups]
    for gs in (groups, masks, labels, [pd.Index(g) for g in labels], [pd.Series(mk, index=X.index) for mk in masks]):
        r = e_df.influence(gs, t)
        assert r.keys() == ref.keys()
        for k in ref: np.testing.assert_allclose(r[k], ref[k], rtol=0, atol=1e-12 * max(1, np.abs(ref[k]).max()))
    np.testing.assert_allclose(e_df.first_order_params(masks), ref["pred_dparam"], atol=1e-14)
    np.testing.assert_allclose(e_df.retrain(labels).dparams, ref["actual_dparam"], atol=1e-14)
    np.testing.assert_allclose(e_df.hessian_spectra(masks)[1], e_np.hessian_spectra(groups)[1], atol=1e-14)
    assert e_df.group_positions(groups) is groups


def test_group_refusals(cancer):
    X, y, groups = cancer
    m = LogisticRegression(1.0).fit(X.to_numpy(), y.to_numpy())
    e_df = GroupInfluence(m, X, y, progress=False)
    e_np = GroupInfluence(m, X.to_numpy(), y.to_numpy(), progress=False)
    with pytest.raises(ValueError, match=r"group 1 has labels not in the training index: \['nobody'\]"):
        e_df.influence([["id1"], ["id2", "nobody"]])
    with pytest.raises(ValueError, match=r"group 0 is a boolean mask of shape \(10,\)"):
        e_df.newton_params([np.ones(10, bool)])
    with pytest.raises(ValueError, match="no pandas index"):
        e_np.retrain([["id1"]])
    with pytest.raises(ValueError, match="index differs"):
        e_df.influence([pd.Series(np.ones(len(y), bool))])
    with pytest.raises(ValueError, match="group 0 is empty"):
        e_df.influence([np.zeros(len(y), bool)])
    with pytest.raises(TypeError, match=r"non-numeric columns \['site'\]"):
        GroupInfluence(m, X.assign(site="a").drop(columns=X.columns[0]), y)
    with pytest.raises(ValueError, match="different indexes"):
        GroupInfluence(m, X, y.reset_index(drop=True))


def _refusal(sk, x, y):
    with pytest.raises((TypeError, ValueError)) as e: GroupInfluence.from_sklearn(sk, x, y, progress=False)
    return e.type, str(e.value)


def test_from_sklearn_refusals(cancer, digits):
    X, y, _ = cancer
    x, yy = X.to_numpy(), y.to_numpy()
    xd, yd, _ = digits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = {
            "got StandardScaler": (TypeError, StandardScaler().fit(x)),
            "C=estimator.C_[0]": (TypeError, LogisticRegressionCV()),
            "not fitted": (ValueError, SkLR()),
            "penalty is 'l1'": (ValueError, SkLR(l1_ratio=1.0, solver="liblinear", fit_intercept=False).fit(x, yy)),
            "penalty is 'elasticnet'": (ValueError, SkLR(l1_ratio=0.5, solver="saga", max_iter=30).fit(x, yy)),
            "penalty is 'none'": (ValueError, SkLR(C=np.inf, max_iter=30).fit(x, yy)),
            "pass the equivalent sample_weight": (ValueError, SkLR(class_weight={0: 2.0, 1: 1.0}).fit(x, yy)),
            "penalises the intercept": (ValueError, SkLR(solver="liblinear").fit(x, yy)),
        }
    for msg, (kind, sk) in cases.items():
        k, m = _refusal(sk, x, yy)
        assert k is kind and msg in m, (msg, k, m)
    ovr = SkLR(max_iter=50).fit(xd, yd); ovr.multi_class = "ovr"  # as scikit-learn < 1.8 would store it
    k, m = _refusal(ovr, xd, yd)
    assert k is ValueError and "one-vs-rest over 10 classes" in m
    soft = SkLR().fit(x, yy); soft.multi_class = "multinomial"
    k, m = _refusal(soft, x, yy)
    assert k is ValueError and "different objective" in m


def test_far_from_optimum_warns(cancer):
    X, y, _ = cancer
    sk = SkLR(C=C, tol=1e-10, max_iter=10000).fit(X.to_numpy(), y.to_numpy())
    sk.coef_ = sk.coef_ * 1.5
    with pytest.warns(UserWarning, match="polishing moved scikit-learn's parameters"):
        eng = GroupInfluence.from_sklearn(sk, X.to_numpy(), y.to_numpy(), progress=False)
    assert eng.sklearn_param_change_ > 0.1


def test_integer_labels_not_from_zero_become_their_positions_in_classes(digits):
    "sklearn's classes_ 3..12: the engine's labels are their positions 0..9, and it agrees with the native engine."
    x, y, groups = digits
    sk = SkLR(C=C, tol=1e-10, max_iter=10000).fit(x, y + 3)
    eng = GroupInfluence.from_sklearn(sk, x, y + 3, progress=False)
    assert eng.classes_.tolist() == list(range(3, 13)) and eng.model.classes_.tolist() == list(range(10))
    np.testing.assert_array_equal(eng.labels.numpy(), y)
    d = _agreement(sk, x, y + 3, groups, Target.losses(x[:6], y[:6]))
    assert max(d[e] for e in ESTS) < 1e-8 and d["params"] < 1e-4, d


def test_the_polish_is_strict(cancer):
    "A polish that cannot meet its tolerance raises ConvergenceError, as before, rather than warning."
    from groupinf.hessian import ConvergenceError
    X, y, _ = cancer
    sk = SkLR(C=C, tol=1e-10, max_iter=10000).fit(X.to_numpy(), y.to_numpy())
    with pytest.raises(ConvergenceError, match="warm_fit stopped at gradient norm"):
        GroupInfluence.from_sklearn(sk, X, y, tol=1e-30)


def test_a_model_fitted_on_labels_that_are_not_codes_is_refused_by_the_engine(cancer):
    "The engine and its Targets work on codes 0..K-1: our model fitted on other labels is refused, naming its classes."
    X, y, groups = cancer
    x, yy = X.to_numpy(), y.to_numpy()
    for labels in (np.where(yy == 1, "benign", "malignant"), yy + 3):
        m = LogisticRegression(1.0).fit(x, labels)
        with pytest.raises(ValueError, match=r"GroupInfluence works on class codes 0..K-1.*classes_ are \[.*\]: fit it on "
                                             r"the codes np.searchsorted\(model.classes_, y\)"):
            GroupInfluence(m, x, labels, progress=False)
        codes = np.searchsorted(m.classes_, labels)       # the remedy the message names: the same model, on codes
        m_codes = LogisticRegression(1.0).fit(x, codes)
        np.testing.assert_array_equal(m_codes.params, m.params)
        assert GroupInfluence(m_codes, x, codes, progress=False).influence(groups[:1], estimators=("pred",))
    m = LogisticRegression(1.0, num_classes=2).fit(x, yy.astype(float))  # integral floats are codes: accepted
    assert m.classes_.dtype == np.float64 and GroupInfluence(m, x, yy, progress=False).n == len(yy)
