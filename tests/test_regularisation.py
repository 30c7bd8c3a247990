"Tests of the regularisation sweep beyond its notebook: the table, the runs (retraining checked in NumPy), reuse, the CLI hooks."
import argparse, os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import pytest
from scipy.stats import spearmanr, pearsonr

from groupinf.data import load_dataset
from groupinf.store import load_results
from groupinf.experiments import regularisation as rg
from groupinf.experiments.subsets import SubsetInfluence


def _fake_run(rng, binary=True, G=12):
    results = {"cv_l2_reg": 1.5, "fixed_test": np.array([7, 3, 9, 1, 2, 5])}
    for est in ("actl", "pred", "newton"):
        results[f"subset_fixed_test_{est}_infl"] = rng.normal(size=(G, 6))
        results[f"subset_self_{est}_infl"] = rng.normal(size=G)
        if binary: results[f"subset_fixed_test_{est}_margin_infl"] = rng.normal(size=(G, 6))
    return results


def test_sweep_table_matches_scipy():
    rng = np.random.RandomState(0)
    results1, results2 = _fake_run(rng), _fake_run(rng, binary=False)
    results2["subset_self_actl_infl"][:] = 1.0  # constant: no rank correlation
    t = rg.sweep_table({1e-3: (results1, True, "breast_cancer", "a"), 1e-1: (results2, False, "digits", "b")}, test_column=2)
    assert set(t.target[t.rel_reg == 1e-3]) == {"test prediction", "test loss", "self-loss"}
    assert set(t.target[t.rel_reg == 1e-1]) == {"test loss", "self-loss"}
    row = t.query("rel_reg == 0.001 and target == 'test prediction' and estimator == 'newton'").iloc[0]
    a, e = results1["subset_fixed_test_actl_margin_infl"][:, 2], results1["subset_fixed_test_newton_margin_infl"][:, 2]
    assert row.spearman == pytest.approx(spearmanr(a, e)[0]) and row.pearson == pytest.approx(pearsonr(a, e)[0])
    assert row.test_index == 9
    assert t.query("rel_reg == 0.1 and target == 'self-loss'").spearman.isna().all()


def test_sweep_validation(tmp_path):
    with pytest.raises(ValueError, match="rel_regs"): rg.regularisation_sweep("breast_cancer", [-1.0], tmp_path)
    with pytest.raises(TypeError, match="fixed_reg"): rg.regularisation_sweep("breast_cancer", [1e-3], tmp_path, fixed_reg=1e-2)


def _softmax_grad_norm(theta, x, y, w, l2):
    "‖∇(Σ w_i ℓ_i + (λ/2)‖W‖²)‖ of multinomial logistic regression with intercept (W class-major, then b), in NumPy."
    K, d = int(y.max()) + 1, x.shape[1]
    W, b = theta[:K * d].reshape(K, d), theta[K * d:]
    Z = x @ W.T + b; P = np.exp(Z - Z.max(1, keepdims=True)); P /= P.sum(1, keepdims=True)
    results = w[:, None] * (P - np.eye(K)[y])
    return np.linalg.norm(np.r_[(results.T @ x + l2 * W).ravel(), results.sum(0)])


def test_regularisation_run_is_a_subset_influence_run(tmp_path):
    cfg = rg.subsets_config("iris", fixed_reg=1e-2, num_subsets=1, skip_hessian_spectrum=True, kmeans_n_init=1)
    assert rg.RegularisationRun.phases == SubsetInfluence.phases  # same phases, the same methods: no retraining of its own
    assert all(getattr(rg.RegularisationRun, p.method) is getattr(SubsetInfluence, p.method) for p in SubsetInfluence.phases)
    a, b = rg.RegularisationRun(cfg, out_dir=tmp_path), SubsetInfluence(cfg, out_dir=tmp_path)
    assert a.run_dir == b.run_dir and a.run_id.endswith("rel-reg-0.01")


def test_sweep_runs_reuse_and_cli(tmp_path, capsys):
    kw = dict(num_subsets=1, skip_hessian_spectrum=True, kmeans_n_init=1)
    t = rg.regularisation_sweep("iris", (1e-3, 1.0), tmp_path, **kw)
    assert sorted(t.rel_reg.unique()) == [1e-3, 1.0] and set(t.target) == {"test loss", "self-loss"}
    d = load_dataset("iris"); x, y = np.asarray(d.train.x, np.float64), np.asarray(d.train.labels)
    for run_dir, rel in t.groupby("run_dir").rel_reg.first().items():
        results = load_results(run_dir)
        assert float(results["cv_l2_reg"]) == pytest.approx(rel * len(y))
        assert run_dir.endswith(f"rel-reg-{rel:g}") and "subset_retrain_fallback" not in results
        assert _softmax_grad_norm(results["initial_params"], x, y, np.ones(len(y)), results["cv_l2_reg"]) < 1e-8
        for g, dp, gn, thr in zip(results["subset_indices"], results["subset_dparam"], results["subset_retrain_grad_norm"], results["subset_retrain_grad_threshold"]):
            w = np.ones(len(y)); w[g[g >= 0]] = 0  # groups are stored padded with -1
            ours = _softmax_grad_norm(results["initial_params"] + dp, x, y, w, results["cv_l2_reg"])
            assert ours <= thr * (1 + 1e-6) and ours == pytest.approx(gn, abs=1e-9)
    again = rg.RegularisationRun(rg.subsets_config("iris", fixed_reg=1.0, **kw), out_dir=tmp_path, progress=False)
    again.run(); assert all(p["status"] == "loaded" for p in again.phase_log)
    fig = rg.figure3(t); fig2 = rg.figure3_spearman(t)
    import matplotlib.pyplot as plt; plt.close(fig); plt.close(fig2)
    ap = argparse.ArgumentParser(); sub = ap.add_subparsers(dest="experiment")
    rg.add_regularisation_parser(sub)
    assert ap.parse_args(["regularisation"]).rel_regs == list(rg.REL_REGS_PAPER)
    assert ap.parse_args(["regularisation"]).num_subsets == 10
    args = ap.parse_args(["regularisation", "--dataset-id", "iris", "--rel-regs", "1.0", "--num-subsets", "1",
                          "--skip-hessian-spectrum", "--out-dir", str(tmp_path / "cli")])
    rg.run_regularisation(args)
    assert "iris: 1 runs" in capsys.readouterr().out
    assert (tmp_path / "cli" / "regularisation" / "iris" / "spearman.csv").exists()
    assert (tmp_path / "cli" / "regularisation" / "iris" / "paper-fig3.png").exists()
