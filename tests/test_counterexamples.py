"Tests of the counterexamples experiment beyond its notebook: construction equations, Newton steps, retraining, runs."
import argparse, os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import pytest
from scipy.stats import spearmanr

from groupinf.datasets.synthetic import counterexample_datasets
from groupinf.model import LogisticRegression
from groupinf.influence import GroupInfluence
from groupinf.experiments import counterexamples as cx
from groupinf.experiments.base import DataSpec, EngineSpec, retrain_task


def _engine(name):
    d = counterexample_datasets(0)
    x, y = d[f"{name}_train_X"], d[f"{name}_train_Y"].astype(np.int64)
    m = LogisticRegression(1e-3 * len(y), fit_intercept=False).fit(x, y)
    return GroupInfluence(m, x, y, inverse_hvp_method="primal", progress=False), x, y


def _numpy_parts(theta, x, y, w, l2):
    "Gradient and Hessian of `Σ w_i ℓ_i + (λ/2)‖θ‖²` (binary, no intercept), in NumPy."
    p = 1 / (1 + np.exp(-x @ theta))
    return x.T @ (w * (p - y)) + l2 * theta, (x.T * (w * p * (1 - p))) @ x + l2 * np.eye(x.shape[1])


def test_exhaustive_subsets_counts_and_validation():
    ids = counterexample_datasets(0)["ortho2_ids"]
    og = cx.exhaustive_subsets("ortho2", 120, ortho2_ids=ids)
    assert len(og) == 116 and max(len(g) for g in og) == 39
    assert len(cx.exhaustive_subsets("gauss4", 120)) == 7140
    assert len(cx.exhaustive_subsets("fixed", 8)) == 28 + 56
    assert len(cx.exhaustive_subsets("gauss5", 100)) == 100
    with pytest.raises(ValueError, match="ortho2_ids"): cx.exhaustive_subsets("ortho2", 120)
    with pytest.raises(ValueError, match="dataset_id"): cx.exhaustive_subsets("hospital", 10)


def test_dparam_cosines_true_and_guarded():
    a = np.array([[1.0, 0.0], [1e-3, 0.0], [0.0, 0.0]])
    b = np.array([[1.0, 1.0], [1e-3, 0.0], [1.0, 0.0]])
    true = cx.dparam_cosines(a, b, 0.0)
    np.testing.assert_allclose(true[:2], [1 / np.sqrt(2), 1.0]); assert np.isnan(true[2])
    guarded = cx.dparam_cosines(a, b)
    np.testing.assert_allclose(guarded[:2], [1 / (np.sqrt(2) + 1e-4), 1e-6 / (1e-6 + 1e-4)])
    assert guarded[2] == 0.0  # zero change: the guard gives 0, ranked "most misaligned"


def test_adversarial_points_satisfy_their_equations():
    rng = np.random.RandomState(3)
    a, b = rng.normal(size=(150, 3)), rng.normal(size=(150, 3))
    T = cx.adversarial_test_points(a, b, seed=7, eps=0.0, prefix="p_")
    order = np.argsort(cx.dparam_cosines(a, b, 0.0))
    assert len(T["p_X"]) == 4 * 200 + 21 * 6 + 50 + 50 + 1 and T["p_tags"][-1] == "cex_one"
    redraw, pos = np.random.RandomState(7), 0
    for K in (1, 3, 6, 9):
        np.testing.assert_array_equal(T[f"p_lstsq_uv_K-{K}_subsets"], order[:K])
        A = np.vstack([a[order[:K]], b[order[:K]]])
        uv = redraw.normal(0, 1, (100, 2))
        for u, v in uv:
            x = T["p_X"][pos]; B = np.r_[np.full(K, u), np.full(K, v)]
            c = (x @ A.T @ B) / (x @ A.T @ A @ x)
            np.testing.assert_allclose(np.linalg.norm(x), 1.0)
            np.testing.assert_allclose(A.T @ (A @ (c * x) - B), 0, atol=1e-9); pos += 1
        for r in redraw.normal(0, 1, (100, 2 * K)):
            np.testing.assert_allclose(A.T @ (A @ T["p_X"][pos] - r), 0, atol=1e-9); pos += 1
    assert set(T["p_Y"][:-51]) == {1.0}


def test_newton_params_match_dense_solves():
    e, x, y = _engine("gauss")  # sizes 1..3 on 5 parameters: Woodbury for singletons, dense factorisations otherwise
    groups = [g for g in cx.exhaustive_subsets("gauss", 40)][::97]
    DN = e.newton_params(groups)
    _, H = _numpy_parts(e.theta.numpy(), x, y, np.ones(len(y)), e.l2_reg)
    p = 1 / (1 + np.exp(-x @ e.theta.numpy())); w = p * (1 - p)
    for j, g in enumerate(groups):
        dense = np.linalg.solve(H - (x[g].T * w[g]) @ x[g], ((p - y)[:, None] * x)[g].sum(0))
        np.testing.assert_allclose(DN[j], dense, rtol=1e-9, atol=1e-12)


def test_retrain_task_reaches_the_optimum_without_each_group():
    e, x, y = _engine("gauss")
    spec = EngineSpec.of(DataSpec.of(cx.counterexample_data, dataset_id="gauss", seed=0), e.theta.numpy(), e.l2_reg, 2, "primal", 1e9)
    groups = [[0, 5], [3], [10, 11, 12], list(range(20))]
    rows = retrain_task(groups, spec)
    assert [sorted(r) for r in rows] == [["dparam", "grad_norm", "n_iter", "threshold"]] * len(groups)
    for r, g in zip(rows, groups):
        w = np.ones(len(y)); w[g] = 0
        th = e.theta.numpy() + r["dparam"]
        gn = np.linalg.norm(_numpy_parts(th, x, y, w, e.l2_reg)[0])
        assert gn <= r["threshold"] * (1 + 1e-6) and gn == pytest.approx(r["grad_norm"], abs=1e-12) and r["n_iter"] >= 1
        ref = e.theta.numpy().copy()  # an independent fit: undamped Newton in NumPy to machine precision
        for _ in range(30):
            gr, H = _numpy_parts(ref, x, y, w, e.l2_reg); ref = ref - np.linalg.solve(H, gr)
        assert np.linalg.norm(_numpy_parts(ref, x, y, w, e.l2_reg)[0]) < 1e-12
        np.testing.assert_allclose(th, ref, atol=r["threshold"] / e.l2_reg)  # strong convexity: ‖θ − θ*‖ ≤ ‖∇L(θ)‖/λ


def test_fixed_dataset_run_and_resume(tmp_path):
    cfg = cx.counterexamples_config("fixed")
    exp = cx.Counterexamples(cfg, out_dir=tmp_path, progress=False)
    results = exp.run()
    assert exp.run_id == "fixed" and len(results["subset_indices"]) == 84
    assert len(results["cex_X"]) == 1027 and np.array_equal(results["cex_subset_rows"], np.arange(84))
    assert "subset_retrain_fallback" not in results and results["subset_retrain_n_iter"].min() >= 1
    x, y, th0 = results["fixed_train_X"], results["fixed_train_Y"], results["initial_params"]
    g0, H = _numpy_parts(th0, x, y, np.ones(len(y)), results["l2_reg"])
    assert np.linalg.norm(g0) < 1e-8
    np.testing.assert_allclose(results["hessian"], H, rtol=1e-10, atol=1e-12)
    p = 1 / (1 + np.exp(-x @ th0)); gi = (p - y)[:, None] * x
    for j, (d, g, thr) in enumerate(zip(results["subset_dparam"], results["subset_indices"], results["subset_retrain_grad_threshold"])):
        w = np.ones(len(y)); w[g] = 0
        assert np.linalg.norm(_numpy_parts(th0 + d, x, y, w, results["l2_reg"])[0]) <= thr * (1 + 1e-6)
        np.testing.assert_allclose(H @ results["subset_pred_dparam"][j], gi[g].sum(0), atol=1e-10)
        HU = (x[g].T * (p * (1 - p))[g]) @ x[g]
        np.testing.assert_allclose((H - HU) @ results["subset_newton_pred_dparam"][j], gi[g].sum(0), atol=1e-10)
    table = exp.summarize()
    t = cx.constructed_test_point(results, "cex_one")
    one = table[table.test_points == "cex_one"].iloc[0]
    p_ = results["cex_subset_test_pred_margin_infl"][:, t]; a_ = results["cex_subset_test_actl_margin_infl"][:, t]
    np.testing.assert_allclose(one.rho_pred_actual_median, spearmanr(p_, a_)[0])
    again = cx.Counterexamples(cfg, out_dir=tmp_path, progress=False); again.run()
    assert all(p["status"] == "loaded" for p in again.phase_log)
    assert (exp.run_dir / "plots" / "figure4-panel.png").exists()


def test_config_and_cli_parser(tmp_path):
    with pytest.raises(ValueError, match="dataset_id"): cx.counterexamples_config("breast_cancer")
    with pytest.raises(ValueError, match="test_infl_subsets"): cx.counterexamples_config("ortho2", test_infl_subsets="some")
    assert cx.counterexamples_config("gauss4", retrain=False)["tag"] == "no-retrain"
    ap = argparse.ArgumentParser(); sub = ap.add_subparsers(dest="experiment")
    cx.add_counterexamples_parser(sub)
    args = ap.parse_args(["counterexamples", "--dataset-id", "fixed", "--out-dir", str(tmp_path), "--no-retrain"])
    assert args.dataset_id == ["fixed"] and args.retrain is False and args.workers == 0
    assert ap.parse_args(["counterexamples"]).dataset_id == ["ortho2", "gauss4"]
    cx.run_counterexamples(args)
    assert (tmp_path / "counterexamples" / "fixed_no-retrain" / "summary.csv").exists()
