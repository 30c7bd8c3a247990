"""`LogisticRegression` by scikit-learn's conventions, beyond the model notebook: labels of any values encoded inside
(codes kept as they are), `ConvergenceWarning` by default and `ConvergenceError` with `strict=True`, the arguments
`X, y, sample_weight` with weights as any array-like, and the exact list of scikit-learn's estimator checks that fail."""
import inspect, os, warnings
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.exceptions import ConvergenceWarning, DataConversionWarning
from sklearn.linear_model import LogisticRegression as SkLR
from sklearn.model_selection import GridSearchCV
from sklearn.preprocessing import StandardScaler

from groupinf.hessian import ConvergenceError
from groupinf.model import LogisticRegression

LAM = 2.0


@pytest.fixture(scope="module")
def binary():
    x, y = load_breast_cancer(return_X_y=True)
    return StandardScaler().fit_transform(x), y


@pytest.fixture(scope="module")
def three():
    "Digits 0, 1, 2 (standardised, constant pixels dropped): a three-class problem with labels 0..2."
    x, y = load_digits(return_X_y=True)
    x, y = x[y < 3], y[y < 3]
    x = x[:, x.std(0) > 0]
    return StandardScaler().fit_transform(x), y


def _rel(a, b): return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# ------------------------------------------------------------------------------------------------ labels
@pytest.mark.parametrize("names", [["no", "yes"], [3, 7], [-1, 1], [False, True], [0.0, 1.0]],
                         ids=["strings", "ints-3-7", "minus-one-one", "bools", "floats"])
def test_binary_labels_of_any_values_agree_with_sklearn_and_with_the_codes(binary, names):
    x, y = binary
    yl = np.asarray(names)[y]
    ours, sk, codes = (LogisticRegression(LAM).fit(x, yl), SkLR(C=1 / LAM, tol=1e-10, max_iter=10000).fit(x, yl),
                       LogisticRegression(LAM).fit(x, y))
    np.testing.assert_array_equal(ours.classes_, sk.classes_)
    np.testing.assert_array_equal(ours.predict(x), sk.predict(x))
    assert ours.predict(x).dtype == sk.predict(x).dtype
    assert _rel(ours.coef_, sk.coef_) < 1e-5 and _rel(ours.intercept_, sk.intercept_) < 1e-5
    np.testing.assert_allclose(ours.decision_function(x), sk.decision_function(x), rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(ours.params, codes.params)  # the same model as on the codes
    for method in ("losses", "margins", "accuracy", "score", "objective", "gradient"):
        np.testing.assert_array_equal(getattr(ours, method)(x, yl), getattr(codes, method)(x, y))


def test_multiclass_labels_3_7_9_agree_with_sklearn(three):
    x, y = three
    yl = np.array([3, 7, 9])[y]
    ours, sk = LogisticRegression(LAM).fit(x, yl), SkLR(C=1 / LAM, tol=1e-10, max_iter=10000).fit(x, yl)
    np.testing.assert_array_equal(ours.classes_, [3, 7, 9])
    np.testing.assert_array_equal(ours.predict(x), sk.predict(x))
    assert _rel(ours.coef_, sk.coef_) < 1e-5
    np.testing.assert_allclose(ours.predict_proba(x), sk.predict_proba(x), atol=1e-6)
    assert ours.decision_function(x).shape == (len(y), 3)
    assert ours.score(x, yl) == sk.score(x, yl)


def test_string_labels_given_as_a_pandas_series_of_objects(binary):
    x, y = binary
    ys = pd.Series(np.where(y == 1, "benign", "malignant"), dtype=object)
    m = LogisticRegression(LAM).fit(pd.DataFrame(x), ys)
    assert m.classes_.tolist() == ["benign", "malignant"]
    np.testing.assert_array_equal(m.params, LogisticRegression(LAM).fit(x, (ys == "malignant").astype(int)).params)


def test_num_classes_keeps_codes_even_with_a_class_absent(three):
    "Cross-validation folds fit with num_classes=K: classes_ = arange(K), the codes are the labels, numbers unchanged."
    x, y = three
    keep = y < 2
    m = LogisticRegression(1.0, num_classes=3, fit_intercept=False).fit(x[keep], y[keep])
    np.testing.assert_array_equal(m.classes_, [0, 1, 2])
    assert m.coef_.shape == (3, x.shape[1])
    assert LogisticRegression(1.0, fit_intercept=False).fit(x[keep], y[keep]).classes_.tolist() == [0, 1]
    w = keep.astype(float)  # a fold without class 2 as weights: the model still has three classes
    r = LogisticRegression(1.0, num_classes=3, fit_intercept=False).fit_many(x, y, np.stack([w, np.ones(len(y))]))
    assert r.converged.all() and r.params.shape[0] == 3 * x.shape[1]
    assert LogisticRegression.from_params(m.params, 1.0, x.shape[1], 3, fit_intercept=False).classes_.tolist() == [0, 1, 2]


def test_num_classes_with_labels_that_are_not_codes(three):
    x, y = three
    m = LogisticRegression(LAM, num_classes=3).fit(x, y + 10)
    assert m.classes_.tolist() == [10, 11, 12]
    np.testing.assert_array_equal(m.params, LogisticRegression(LAM).fit(x, y).params)
    with pytest.raises(ValueError, match=r"with num_classes=4, y must hold the codes 0..3 or exactly 4 distinct labels; got 3"):
        LogisticRegression(LAM, num_classes=4).fit(x, y + 10)


@pytest.mark.parametrize("method", ["losses", "margins", "accuracy", "score", "objective", "gradient", "hessian_system",
                                    "warm_fit", "fit_many"])
def test_every_method_taking_labels_names_an_unknown_label(binary, method):
    x, y = binary
    m = LogisticRegression(LAM).fit(x, np.where(y == 1, "yes", "no"))
    yl = np.where(np.arange(len(y)) == 3, "maybe", np.where(y == 1, "yes", "no"))
    args = (x, yl, np.ones((1, len(y)))) if method == "fit_many" else (x, yl)
    with pytest.raises(ValueError, match=r"y has labels not in classes_ \['no', 'yes'\]: \['maybe'\]"):
        getattr(m, method)(*args)
    with pytest.raises(ValueError, match=r"y has labels not in classes_ \['no', 'yes'\]: \[0, 1\]"):
        getattr(m, method)(*(x, y) + args[2:])  # codes are not the labels of a model fitted on strings


def test_warm_fit_and_fit_many_take_the_original_labels(three):
    x, y = three
    yl = np.array(["a", "b", "c"])[y]
    w = np.ones(len(y)); w[:30] = 0
    W = np.stack([w, np.ones(len(y))])
    m = LogisticRegression(LAM).fit(x, yl).warm_fit(x, yl, sample_weight=w)
    np.testing.assert_array_equal(m.params, LogisticRegression(LAM).fit(x, y).warm_fit(x, y, sample_weight=w).params)
    np.testing.assert_allclose(m.params, LogisticRegression(LAM).fit(x[30:], yl[30:]).params, atol=1e-6)  # to the fits' tolerance
    r = LogisticRegression(LAM).fit_many(x, yl, W)  # unfitted: classes as fit infers them
    np.testing.assert_array_equal(r.params, LogisticRegression(LAM).fit_many(x, y, W).params)
    np.testing.assert_array_equal(LogisticRegression(LAM).fit(x, yl).fit_many(x, yl, W, warm=True).params,
                                  LogisticRegression(LAM).fit(x, y).fit_many(x, y, W, warm=True).params)


def test_a_column_vector_y_warns_and_is_read_as_1d(binary):
    x, y = binary
    with pytest.warns(DataConversionWarning, match="column-vector y"):
        m = LogisticRegression(LAM).fit(x, y[:, None])
    np.testing.assert_array_equal(m.params, LogisticRegression(LAM).fit(x, y).params)


@pytest.mark.parametrize("bad, match", [(None, "requires y to be passed, but the target y is None"),
                                        ("continuous", "Unknown label type: continuous"),
                                        ("one-class", r"at least two classes to infer num_classes; got one class: \['a'\]")])
def test_bad_labels_are_refused_with_scikit_learns_phrases(binary, bad, match):
    x, y = binary
    yb = {None: None, "continuous": y + 0.25 * np.arange(len(y)) / len(y), "one-class": np.full(len(y), "a")}[bad]
    with pytest.raises(ValueError, match=match): LogisticRegression(LAM).fit(x, yb)


# ------------------------------------------------------------------------------------------------ convergence
def test_non_convergence_warns_and_keeps_the_result_by_default(binary, three):
    x, y = binary
    with pytest.warns(ConvergenceWarning, match=r"fit stopped at gradient norm .* after 1 iterations .*raise max_iter or l2_reg"):
        m = LogisticRegression(LAM, max_iter=1).fit(x, y)
    assert not m.converged_ and m.n_iter_ == 1 and np.all(np.isfinite(m.params)) and m.predict(x).shape == y.shape
    m.set_params(max_iter=100).fit(x, y)
    w = np.ones(len(y)); w[:100] = 0
    m.set_params(max_iter=0)
    with pytest.warns(ConvergenceWarning, match="warm_fit stopped"):
        m.warm_fit(x, y, sample_weight=w)
    x3, y3 = three
    with pytest.warns(ConvergenceWarning, match=r"fit_many: 2 of 2 problems stopped above their tolerance \(\[0, 1\]\)"):
        r = LogisticRegression(LAM, max_iter=1).fit_many(x3, y3, np.ones((2, len(y3))))
    assert not r.converged.any()


def test_strict_raises_convergence_error(binary, three):
    x, y = binary
    with pytest.raises(ConvergenceError, match="after 1 iterations"):
        LogisticRegression(LAM, max_iter=1, strict=True).fit(x, y)
    m = LogisticRegression(LAM, strict=True).fit(x, y)
    m.max_iter = 0
    with pytest.raises(ConvergenceError, match="warm_fit stopped"):
        m.warm_fit(x, y, sample_weight=np.r_[np.zeros(100), np.ones(len(y) - 100)])
    x3, y3 = three
    with pytest.raises(ConvergenceError, match="fit_many: 2 of 2 problems"):
        LogisticRegression(LAM, max_iter=1, strict=True).fit_many(x3, y3, np.ones((2, len(y3))))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a converged fit neither warns nor raises
        assert LogisticRegression(LAM, strict=True).fit(x, y).converged_


def test_strict_is_a_hyperparameter(binary):
    x, y = binary
    m = LogisticRegression(LAM, strict=True)
    assert m.get_params()["strict"] is True and clone(m).strict is True
    assert LogisticRegression().get_params()["strict"] is False
    with pytest.raises(TypeError, match="strict must be True or False; got 'yes'"):
        LogisticRegression(LAM, strict="yes").fit(x, y)


# ------------------------------------------------------------------------------------------------ arguments
def test_argument_names_are_scikit_learns():
    names = lambda f: list(inspect.signature(f).parameters)[1:]
    assert names(LogisticRegression.fit) == ["X", "y", "sample_weight"]
    assert names(LogisticRegression.warm_fit) == ["X", "y", "sample_weight"]
    assert names(LogisticRegression.score) == ["X", "y", "sample_weight"]
    for f in ("predict", "predict_proba", "decision_function"): assert names(getattr(LogisticRegression, f)) == ["X"]


def test_keyword_calls_and_sample_weights_as_any_array_like(binary):
    x, y = binary
    w = np.random.default_rng(0).uniform(0.2, 3, len(y))
    ref = LogisticRegression(LAM).fit(x, y, sample_weight=w)
    for given in (w.tolist(), tuple(w), pd.Series(w)):
        m = LogisticRegression(LAM).fit(X=x, y=y, sample_weight=given)
        np.testing.assert_array_equal(m.params, ref.params)
    assert ref.score(X=x, y=y, sample_weight=w.tolist()) == pytest.approx(np.average(ref.predict(x) == y, weights=w))
    np.testing.assert_array_equal(ref.predict(X=x), ref.predict(x))
    with pytest.raises(ValueError, match="sample_weight is zero for every example"):
        LogisticRegression(LAM).fit(x, y, sample_weight=np.zeros(len(y)))


def test_grid_search_with_string_labels(binary):
    x, y = binary
    yl = np.where(y == 1, "yes", "no")
    search = GridSearchCV(LogisticRegression(), {"l2_reg": [0.1, 10.0]}, cv=3).fit(x, yl)
    assert search.best_estimator_.classes_.tolist() == ["no", "yes"]
    assert set(search.predict(x)) <= {"no", "yes"}


# ------------------------------------------------------------------------------------------------ estimator checks
def test_scikit_learns_estimator_checks_fail_only_where_groupinf_refuses_with_its_own_messages():
    from sklearn.utils.estimator_checks import check_estimator
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        checks = check_estimator(LogisticRegression(), on_fail=None)
    failed = {r["check_name"] for r in checks if r["status"] == "failed"}
    assert failed == {"check_complex_data", "check_dtype_object", "check_fit2d_predict1d",
                      "check_estimators_empty_data_messages"}, failed
