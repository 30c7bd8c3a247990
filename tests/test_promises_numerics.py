"""Promises about numerical edge cases: the estimators give finite numbers that agree with independent computations,
or raise a clear typed error; a NaN is never produced (or stored) silently.

Cases: separable data with a tiny l2_reg (weights in the hundreds or thousands), a group of identical points (a rank-one
H_U, checked against the Sherman–Morrison formula in NumPy), Hessians that are singular or nearly so (Cholesky fails:
the documented LU fallback of `solve`, or NotPositiveDefiniteError / SingularMatrixError), and a whole subset run at a
tiny fixed regularisation. The bad-input counterparts (λ ≤ 0 with a duplicated feature, non-convergence) are in
test_promises_input.py.
"""
import numpy as np
import pytest
import tensorflow as tf

from groupinf.hessian import NotPositiveDefiniteError, SingularMatrixError, solve
from groupinf.influence import ESTIMATORS, GroupInfluence, Target
from groupinf.model import ConvergenceError, LogisticRegression


def all_finite(out):
    return [k for k, v in out.items() if np.asarray(v).dtype.kind in "fc" and not np.all(np.isfinite(v))]


def separable(n=60, seed=0):
    rng = np.random.RandomState(seed)
    x = rng.randn(n + 10, 2)
    y = (x[:, 0] + 0.3 * x[:, 1] > 0).astype(np.int64)
    return x[:n], y[:n], x[n:], y[n:]


def numpy_hessian(theta, x, l2_reg, weights=None):
    "Σ s_i p_i(1 − p_i) x̃_i x̃_iᵀ + λ diag(1, …, 1, 0) of a binary model, in NumPy."
    xa = np.hstack([x, np.ones((len(x), 1))])
    p = 1 / (1 + np.exp(-(xa @ theta)))
    s = np.ones(len(x)) if weights is None else weights
    return (xa * (s * p * (1 - p))[:, None]).T @ xa + l2_reg * np.diag([1.0] * x.shape[1] + [0.0]), xa, p


# ------------------------------------------------------------------------------------------------ separable data
@pytest.mark.parametrize("l2_reg", [1e-6, 1e-10, 1e-14])
def test_separable_data_with_a_tiny_l2_reg_gives_finite_converged_estimates(l2_reg):
    x, y, xt, yt = separable()
    m = LogisticRegression(l2_reg).fit(x, y)
    assert m.converged_ and m.accuracy(x, y) == 1.0 and np.linalg.norm(m.params) > 100
    e = GroupInfluence(m, x, y, progress=False)
    groups = [np.arange(5), np.arange(10, 30), np.flatnonzero(y == 1)[:3]]
    out = e.influence(groups, {"test": Target.losses(xt, yt), "margin": Target.margins(xt, yt)}, estimators=ESTIMATORS)
    assert all_finite(out) == []
    assert np.all(out["actual_grad_norm"] <= out["actual_grad_threshold"])


def test_weights_grow_as_l2_reg_shrinks_on_separable_data():
    x, y, _, _ = separable()
    norms = [np.linalg.norm(LogisticRegression(lam).fit(x, y).params) for lam in (1e-2, 1e-6, 1e-10)]
    assert norms[0] < norms[1] < norms[2] and np.all(np.isfinite(norms))


# ------------------------------------------------------------------------------------------------ identical points
@pytest.fixture(scope="module")
def repeated():
    "80 points of which the first 10 are the same point (same label); a fitted model and its engine."
    rng = np.random.RandomState(1)
    x = rng.randn(80, 3); y = (x[:, 0] + 0.5 * rng.randn(80) > 0).astype(np.int64)
    x[:10] = x[0]; y[:10] = y[0]
    m = LogisticRegression(0.1).fit(x, y)
    return x, y, m, GroupInfluence(m, x, y, progress=False)


def test_a_group_of_identical_points_matches_the_sherman_morrison_formula(repeated):
    x, y, m, e = repeated
    k = 10
    H, xa, p = numpy_hessian(m.params, x, 0.1)
    g_U = k * (p[0] - y[0]) * xa[0]
    z = np.sqrt(k * p[0] * (1 - p[0])) * xa[0]
    Hinv_g, Hinv_z = np.linalg.solve(H, g_U), np.linalg.solve(H, z)
    newton = Hinv_g + Hinv_z * (z @ Hinv_g) / (1 - z @ Hinv_z)          # (H − z zᵀ)⁻¹ g_U, Sherman–Morrison
    group = [np.arange(k)]
    np.testing.assert_allclose(e.first_order_params(group)[0], Hinv_g, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(e.newton_params(group)[0], newton, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(e.first_order_params(group)[0], k * e.first_order_params([np.arange(1)])[0], rtol=1e-12)


def test_a_group_of_identical_points_has_a_rank_one_spectrum_and_retrains_close_to_newton(repeated):
    x, y, m, e = repeated
    H, xa, p = numpy_hessian(m.params, x, 0.1)
    expected = 10 * p[0] * (1 - p[0]) * xa[0] @ np.linalg.solve(H, xa[0])
    spectrum = np.sort(e.hessian_spectra([np.arange(10)])[0])
    assert np.isclose(spectrum[-1], expected, rtol=1e-9) and np.all(np.abs(spectrum[:-1]) < 1e-10)
    r = e.retrain([np.arange(10)])
    assert np.all(np.isfinite(r.dparams)) and r.grad_norms[0] <= r.thresholds[0]
    newton = e.newton_params([np.arange(10)])[0]
    assert np.linalg.norm(r.dparams[0] - newton) <= 0.1 * np.linalg.norm(r.dparams[0])


# ------------------------------------------------------------------------------------------------ (near-)singular Hessians
def test_solve_falls_back_to_lu_when_cholesky_fails_on_an_indefinite_matrix():
    "The documented fallback of method='cholesky_lu': an indefinite but invertible system is solved exactly by LU."
    A = np.array([[2.0, 1.0, 0.0], [1.0, -3.0, 1.0], [0.0, 1.0, 1.0]])
    V = np.arange(6.0).reshape(3, 2)
    with pytest.raises(NotPositiveDefiniteError, match="not positive definite"): solve(tf.constant(A), V, "cholesky")
    np.testing.assert_allclose(solve(tf.constant(A), V, "cholesky_lu").numpy(), np.linalg.solve(A, V), rtol=1e-12)


@pytest.mark.parametrize("method, error", [("cholesky", NotPositiveDefiniteError), ("lu", SingularMatrixError),
                                           ("cholesky_lu", SingularMatrixError)])
def test_solve_refuses_an_exactly_singular_matrix(method, error):
    A = tf.constant([[1.0, 1.0], [1.0, 1.0]], tf.float64)
    with pytest.raises(error) as e: solve(A, np.ones((2, 1)), method)
    assert isinstance(e.value, np.linalg.LinAlgError) and isinstance(e.value, ValueError) and "\n" not in str(e.value)


def test_a_nan_in_the_matrix_is_an_error_not_a_nan_answer():
    A = tf.constant([[1.0, np.nan], [np.nan, 1.0]], tf.float64)
    with pytest.raises(np.linalg.LinAlgError): solve(A, np.ones((2, 1)), "cholesky_lu")


@pytest.fixture(scope="module")
def feature_only_in_group():
    "100 points; a 4th feature is non-zero on the first 10 only, so removing them leaves that direction flat (if λ = 0)."
    rng = np.random.RandomState(0)
    x = np.hstack([rng.randn(100, 3), np.zeros((100, 1))]); x[:10, 3] = rng.randn(10)
    y = (x[:, 0] + rng.randn(100) > 0).astype(np.int64)
    return x, y


@pytest.mark.parametrize("l2_reg", [1e-3, 1e-8, 1e-12])
@pytest.mark.parametrize("method", ["explicit", "cg"])
def test_removing_the_only_points_with_a_feature_at_a_tiny_l2_reg_stays_finite(feature_only_in_group, l2_reg, method):
    x, y = feature_only_in_group
    e = GroupInfluence(LogisticRegression(l2_reg).fit(x, y), x, y, inverse_hvp_method=method, progress=False)
    out = e.influence([np.arange(10), np.arange(10, 30)], {"t": Target.losses(x[50:53], y[50:53])},
                      estimators=("pred", "newton", "actual"))
    assert all_finite(out) == [] and np.all(out["actual_grad_norm"] <= out["actual_grad_threshold"])


def test_a_group_whose_removal_makes_the_hessian_singular_is_a_clear_error(feature_only_in_group):
    "λ = 0: H − H_U is exactly singular along the 4th feature; the explicit Newton step refuses, naming the group."
    x, y = feature_only_in_group
    e = GroupInfluence(LogisticRegression(0.0).fit(x, y), x, y, progress=False)
    with pytest.raises(NotPositiveDefiniteError, match="group 0: H − H_U is not positive definite") as err:
        e.newton_params([np.arange(10)])
    assert "increase l2_reg" in str(err.value)
    assert np.all(np.isfinite(e.newton_params([np.arange(10, 30)])))   # other groups are unaffected
    cg = GroupInfluence(e.model, x, y, inverse_hvp_method="cg", progress=False)
    try: D = cg.newton_params([np.arange(10)])                            # consistent singular system: CG's solution,
    except (NotPositiveDefiniteError, ConvergenceError): pass            # or a clear error
    else: assert np.all(np.isfinite(D))




@pytest.mark.parametrize("method", ["explicit", "cg"])
def test_an_exactly_singular_hessian_at_the_optimum_is_refused_or_gives_finite_effects(method):
    "λ = 0 and a duplicated feature: H is exactly singular. A clear error, or finite effects; never NaN."
    rng = np.random.RandomState(3)
    x = rng.randn(100, 3); y = (x[:, 0] + rng.randn(100) > 0).astype(np.int64)
    base = LogisticRegression(0.0).fit(x, y).params          # the optimum at λ = 0 (the data are not separable) ...
    xd = np.hstack([x, x[:, :1]])                             # ... stays one with a copy of feature 0 at weight 0
    m = LogisticRegression.from_params(np.concatenate([base[:3], [0.0], base[3:]]), 0.0, 4, 2)
    try:
        e = GroupInfluence(m, xd, y, inverse_hvp_method=method, progress=False)
        effects = e.first_order([np.arange(5), np.arange(20, 40)], Target.losses(xd[:4], y[:4]))
    except (np.linalg.LinAlgError, ConvergenceError) as err:
        assert "\n" not in str(err)
    else:
        assert np.all(np.isfinite(effects))


# ------------------------------------------------------------------------------------------------ a whole run
def test_a_subset_run_at_a_tiny_fixed_reg_stores_no_nan(tmp_path):
    "breast_cancer is separable at λ/n = 1e-9: every stored array is finite; the summary has NaN only where undefined."
    import pandas as pd
    from scipy.stats import spearmanr
    from groupinf.experiments.subsets import SubsetInfluence, subsets_config
    from groupinf.store import load_results
    exp = SubsetInfluence(subsets_config(fixed_reg=1e-9, num_subsets=1, kmeans_n_init=1), out_dir=tmp_path, progress=False)
    import warnings
    with warnings.catch_warnings():                                     # scipy warns of constant input (undefined ρ)
        warnings.simplefilter("ignore")
        exp.run()
    results = load_results(exp.run_dir)
    assert results["initial_train_accuracy"] == 1.0
    assert all_finite(results) == []
    summary = pd.read_csv(exp.run_dir / "summary.csv")
    for _, row in summary[summary.spearman.isna()].iterrows():           # only where an input is constant
        kind = "_margin" if "margin" in row.target else ""
        if row.target.startswith("self"):
            actual, est = results[f"subset_self_actl{kind}_infl"], results[f"subset_self_{row.estimator}{kind}_infl"]
        else:
            j = int(np.flatnonzero(results["fixed_test"] == int(row.target.split()[-1]))[0])
            actual = results[f"subset_fixed_test_actl{kind}_infl"][:, j]
            est = results[f"subset_fixed_test_{row.estimator}{kind}_infl"][:, j]
        assert np.ptp(actual) == 0 or np.ptp(est) == 0, row.to_dict()
        assert np.isnan(spearmanr(actual, est)[0])
