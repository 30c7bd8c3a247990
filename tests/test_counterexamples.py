"Tests of the counterexamples experiment beyond its notebook: construction equations, Newton batching, retraining fallback, runs."
import argparse, os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import pytest
from scipy.stats import spearmanr

from groupinf.datasets.synthetic import counterexample_datasets
from groupinf.model import LogisticRegression
from groupinf.influence import GroupInfluence
from groupinf.experiments import counterexamples as cx


def _engine(name, max_iter=100):
    d = counterexample_datasets(0)
    x, y = d[f"{name}_train_X"], d[f"{name}_train_Y"].astype(np.int64)
    m = LogisticRegression(1e-3 * len(y), fit_intercept=False, max_iter=max_iter).fit(x, y)
    return GroupInfluence(m, x, y, inverse_hvp_method="explicit", progress=False), x, y


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


def test_batched_newton_matches_engine_and_dense():
    e, x, y = _engine("gauss")  # sizes 1..3: three batches of different k
    groups = [g for g in cx.exhaustive_subsets("gauss", 40)][::97]
    DN = cx.batched_newton_params(e, groups)
    np.testing.assert_allclose(DN, e.newton_params(groups), rtol=1e-9, atol=1e-12)
    p = 1 / (1 + np.exp(-x @ e.theta.numpy())); w = p * (1 - p)
    H = (x.T * w) @ x + e.l2_reg * np.eye(x.shape[1])
    for j in (0, len(groups) // 2, len(groups) - 1):
        g = groups[j]
        dense = np.linalg.solve(H - (x[g].T * w[g]) @ x[g], ((p - y)[:, None] * x)[g].sum(0))
        np.testing.assert_allclose(DN[j], dense, rtol=1e-9, atol=1e-12)


def test_retrain_fallback_forced_agrees_with_batched():
    e, x, y = _engine("gauss")
    groups = [np.array([0, 5]), np.array([3]), np.array([10, 11, 12])]
    ok = cx.retrain_with_fallback(e, groups)
    assert not ok["fallback"].any()
    e.model.max_iter = 1  # every batch "stalls"
    forced = cx.retrain_with_fallback(e, groups)
    assert forced["fallback"].all() and np.all(forced["grad_norm"] <= forced["threshold"])
    np.testing.assert_allclose(forced["dparam"], ok["dparam"], atol=1e-7)


def test_newton_polish_reaches_machine_precision():
    e, x, y = _engine("ortho2")
    w = np.ones(len(y)); w[:23] = 0
    theta0 = e.theta.numpy() + 1e-4
    th, gn = cx.newton_polish(theta0, x, y, w, e.l2_reg)
    assert gn < 1e-12
    p = 1 / (1 + np.exp(-x @ th))
    assert np.linalg.norm(x.T @ (w * (p - y)) + e.l2_reg * th) < 1e-12


def test_fixed_dataset_run_and_resume(tmp_path):
    cfg = cx.counterexamples_config("fixed")
    exp = cx.Counterexamples(cfg, out_dir=tmp_path, progress=False)
    R = exp.run()
    assert exp.run_id == "fixed" and len(R["subset_indices"]) == 84
    assert len(R["cex_X"]) == 1027 and np.array_equal(R["cex_subset_rows"], np.arange(84))
    x, y = R["fixed_train_X"], R["fixed_train_Y"]
    for d, g, thr in zip(R["subset_dparam"], R["subset_indices"], R["subset_retrain_grad_threshold"]):
        w = np.ones(len(y)); w[g] = 0; th = R["initial_params"] + d
        p = 1 / (1 + np.exp(-x @ th))
        assert np.linalg.norm(x.T @ (w * (p - y)) + R["l2_reg"] * th) <= thr * (1 + 1e-6)
    table = exp.summarize()
    t = cx.constructed_test_point(R, "cex_one")
    one = table[table.test_points == "cex_one"].iloc[0]
    p_ = R["cex_subset_test_pred_margin_infl"][:, t]; a_ = R["cex_subset_test_actl_margin_infl"][:, t]
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
    assert args.dataset_id == ["fixed"] and args.no_retrain and args.workers == 0
    assert ap.parse_args(["counterexamples"]).dataset_id == ["ortho2", "gauss4"]
    cx.run_counterexamples(args)
    assert (tmp_path / "counterexamples" / "fixed_no-retrain" / "summary.csv").exists()
