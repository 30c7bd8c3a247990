"""Credit assignment: the real MultiNLI loaders on a fixture bundle, the stand-in, and every number against an
independent computation (dense NumPy solves for first-order effects, scikit-learn refits for actual effects)."""
import argparse, contextlib, io, json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression as SkLR

from datasets_fixtures import no_internet, write_mnli_bundle  # noqa: F401
from groupinf.data import DataError
from groupinf.model import LogisticRegression
import groupinf.experiments.credit_assignment as CA
import groupinf.experiments.base as B


def softmax_parts(theta, x, y, K):
    "Per-example loss gradients (W class-major, then b) and probabilities, written out from the formulas."
    d = x.shape[1]
    W, b = theta[:K * d].reshape(K, d), theta[K * d:]
    z = x @ W.T + b
    p = np.exp(z - z.max(1, keepdims=True)); p /= p.sum(1, keepdims=True)
    r = p - np.eye(K)[y]
    return np.concatenate([(r[:, :, None] * x[:, None, :]).reshape(len(y), -1), r], 1), p


def dense_hessian(theta, x, y, s, K, lam):
    "The weighted Hessian with λ on the weights, by summing per-example blocks."
    n, d = x.shape
    _, p = softmax_parts(theta, x, y, K)
    xa = np.c_[x, np.ones(n)]
    H = np.zeros((K * d + K, K * d + K))
    idx = [np.r_[k * d:(k + 1) * d, K * d + k] for k in range(K)]
    for i in range(n):
        F = s[i] * (np.diag(p[i]) - np.outer(p[i], p[i]))
        for k in range(K):
            for l in range(K): H[np.ix_(idx[k], idx[l])] += F[k, l] * np.outer(xa[i], xa[i])
    H[:K * d, :K * d] += lam * np.eye(K * d)
    return H


def gauge_inverse(H, K, d):
    "Inverse of H + NNᵀ (N: the bias gauge), which equals H⁺ on gradients (all orthogonal to N)."
    N = np.r_[np.zeros(K * d), np.ones(K) / np.sqrt(K)]
    return np.linalg.inv(H + np.outer(N, N))


def sklearn_losses(x, y, w, lam, *evals):
    sk = SkLR(C=1 / lam, solver="newton-cholesky", tol=1e-12, max_iter=1000).fit(x, y, sample_weight=w)
    return [-np.log(sk.predict_proba(xe)[np.arange(len(ye)), ye]) for xe, ye in evals]


def check_against_independent(exp, results, groups_to_refit):
    d, K = exp.data, exp.data.num_classes
    theta, lam = results["initial_params"], float(results["cv_l2_reg"])
    G, _ = softmax_parts(theta, d.x, d.labels, K)
    Hinv = gauge_inverse(dense_hessian(theta, d.x, d.labels, d.weights, K, lam), K, d.x.shape[1])
    gU = np.stack([d.weights[U] @ G[U] for U in exp.groups])
    Gt, _ = softmax_parts(theta, d.test_x, d.test_labels, K)
    Gn, _ = softmax_parts(theta, d.nonfires_x, d.nonfires_labels, K)
    scale = lambda a: 1e-8 * max(1.0, np.abs(a).max())
    # first-order: every genre and class target of both evaluation sets, the fixed points, train, self
    for split, Ge, y, genres in (("test", Gt, d.test_labels, d.test_genres), ("nonfires", Gn, d.nonfires_labels, d.nonfires_genres)):
        for g in np.unique(genres):
            want = gU @ Hinv @ Ge[genres == g].sum(0)
            np.testing.assert_allclose(results[f"{g}_{split}_pred_infl"], want, atol=scale(want))
        for k in range(K):
            want = gU @ Hinv @ Ge[y == k].sum(0)
            np.testing.assert_allclose(results[f"class_{k}_{split}_pred_infl"], want, atol=scale(want))
        want = gU @ Hinv @ Ge[results[f"fixed_{split}"]].T
        np.testing.assert_allclose(results[f"fixed_{split}_pred_infl"], want, atol=scale(want))
    want = gU @ Hinv @ (d.weights @ G)
    np.testing.assert_allclose(results["all_train_pred_infl"], want, atol=scale(want))
    want = np.einsum("gp,pq,gq->g", gU, Hinv, gU)
    np.testing.assert_allclose(results["self_pred_infl"], want, atol=scale(want))
    np.testing.assert_allclose(results["subset_train_grad_for_pred_infl"], gU, atol=1e-10)
    # actual: refit without the group (weights kept on the other rows)
    for j in groups_to_refit:
        keep = np.setdiff1d(np.arange(len(d.labels)), exp.groups[j])
        lt, ln, ltr = sklearn_losses(d.x[keep], d.labels[keep], d.weights[keep], lam, (d.test_x, d.test_labels),
                                     (d.nonfires_x, d.nonfires_labels), (d.x, d.labels))
        np.testing.assert_allclose(results["all_test_actl_infl"][j], (lt - results["initial_test_losses"]).sum(), atol=1e-6)
        for g in np.unique(d.nonfires_genres):
            sel = d.nonfires_genres == g
            np.testing.assert_allclose(results[f"{g}_nonfires_actl_infl"][j], (ln - results["initial_nonfires_losses"])[sel].sum(), atol=1e-6)
        np.testing.assert_allclose(results["fixed_test_actl_infl"][j], (lt - results["initial_test_losses"])[results["fixed_test"]], atol=1e-6)
        np.testing.assert_allclose(results["all_train_actl_infl"][j], d.weights @ (ltr - results["initial_train_losses"]), atol=1e-6)
        U = exp.groups[j]
        np.testing.assert_allclose(results["self_actl_infl"][j], d.weights[U] @ (ltr - results["initial_train_losses"])[U], atol=1e-6)


def test_real_loader_path_on_fixture_bundle(tmp_path):
    "dataset_id 'mnli' reads the bundle through the MultiNLI loaders; every number checks out independently."
    bundle = write_mnli_bundle(tmp_path / "data" / "multinli_1.0")
    cfg = CA.credit_assignment_config("mnli", data_dir=tmp_path / "data", num_features=6, fixed_reg=0.05,
                                      use_frozen_fixed_points=False, newton=True)
    exp = CA.CreditAssignment(cfg, out_dir=tmp_path / "out", progress=False)
    results = exp.run()
    d = exp.data
    assert exp.run_id == "mnli_sample_weights-None"
    assert np.array_equal(d.x, bundle["train"]["x"][:, :6].astype(np.float64))
    assert list(d.test_genres) == list(bundle["dev_matched"]["genres"])
    workers = sorted(set(bundle["train"]["ids"]))
    assert results["subset_tags"] == [f"same_turker-{w}" for w in workers]
    for w, U in zip(workers, exp.groups):
        assert U.tolist() == [i for i, a in enumerate(bundle["train"]["ids"]) if a == w]
    assert results["test_genres"] == sorted(set(bundle["dev_matched"]["genres"]))
    counts = {(w, g): 0 for w in workers for g in results["train_genres"]}
    for w, g in zip(bundle["train"]["ids"], bundle["train"]["genres"]): counts[w, g] += 1
    assert results["subset_genre_counts"].tolist() == [[counts[w, g] for g in results["train_genres"]] for w in workers]
    assert len(results["fixed_test"]) == 6 and len(results["fixed_nonfires"]) == 6
    check_against_independent(exp, results, range(len(exp.groups)))
    # Newton: (H − H_U)⁻¹ g_U against a dense solve
    K, dd = 3, 6
    theta, lam = results["initial_params"], float(results["cv_l2_reg"])
    G, _ = softmax_parts(theta, d.x, d.labels, K)
    H = dense_hessian(theta, d.x, d.labels, d.weights, K, lam)
    Gt, _ = softmax_parts(theta, d.test_x, d.test_labels, K)
    for j, U in enumerate(exp.groups):
        HU = dense_hessian(theta, d.x[U], d.labels[U], d.weights[U], K, 0.0)
        step = gauge_inverse(H - HU, K, dd) @ (d.weights[U] @ G[U])
        np.testing.assert_allclose(results["all_test_newton_infl"][j], Gt.sum(0) @ step, atol=1e-8)


def test_weighted_standin_keeps_weights_when_retraining(tmp_path):
    cfg = CA.credit_assignment_config("mnli_standin", sample_weights=True, fixed_reg=0.02, tag="standin",
                                      standin=dict(num_workers=8, num_train=240, num_eval_per_genre=12, num_features=5))
    exp = CA.CreditAssignment(cfg, out_dir=tmp_path, progress=False)
    results = exp.run()
    assert exp.run_id == "mnli_standin_sample_weights-True_standin"
    assert not np.allclose(exp.data.weights, 1) and exp.data.weights.min() >= 0.5
    assert np.all(results["subset_retrain_grad_norm"] <= results["subset_retrain_grad_threshold"])
    np.testing.assert_allclose(results["subset_weight_sums"], [exp.data.weights[U].sum() for U in exp.groups])
    check_against_independent(exp, results, [int(np.argmax(results["subset_sizes"])), int(np.argmin(results["subset_sizes"]))])


def test_cross_validation_selects_best_mean_accuracy(tmp_path):
    cfg = CA.credit_assignment_config("mnli_standin", cv_range=(1e-3, 1.0, 3), tag="standin",
                                      standin=dict(num_workers=6, num_train=150, num_eval_per_genre=6, num_features=4))
    exp = CA.CreditAssignment(cfg, out_dir=tmp_path, progress=False)
    exp.run()
    results, d = exp.results, exp.data
    n = len(d.labels)
    np.testing.assert_allclose(results["cv_regs"], np.logspace(np.log10(1e-3 * n), np.log10(n), 3))
    size = int(np.ceil(n / 5))
    accs, losses = [], []
    for lam in results["cv_regs"]:
        a, l = [], 0.0
        for k in range(5):
            held = np.zeros(n, bool); held[k * size:(k + 1) * size] = True
            sk = SkLR(C=1 / lam, solver="newton-cholesky", tol=1e-12, max_iter=1000).fit(d.x[~held], d.labels[~held])
            a.append(np.mean(sk.predict(d.x[held]) == d.labels[held]))
            l += -np.log(sk.predict_proba(d.x[held])[np.arange(held.sum()), d.labels[held]]).sum()
        accs.append(np.mean(a)); losses.append(l)
    np.testing.assert_allclose(results["cv_accs"], accs, atol=1e-12)
    np.testing.assert_allclose(results["cv_errors"], losses, rtol=1e-6)
    assert results["cv_l2_reg"] == results["cv_regs"][int(np.argmax(accs))]


def test_batched_cross_validation_equals_separate_fold_fits(tmp_path):
    "All folds of one λ fitted together (fit_many, held-out weights zero) = one LogisticRegression.fit per fold."
    cfg = CA.credit_assignment_config("mnli_standin", sample_weights=True, cv_range=(1e-3, 1e-1, 3), tag="standin",
                                      standin=dict(num_workers=8, num_train=240, num_eval_per_genre=12, num_features=5))
    exp = CA.CreditAssignment(cfg, out_dir=tmp_path, progress=False)
    results = exp.run()
    d = exp.data
    n, K = len(d.labels), d.num_classes
    folds = B.fold_bounds(n, 5)
    sizes = np.diff(folds)   # contiguous, ceil(n / 5) rows each but the last, covering every row once
    assert len(folds) == 6 and folds[0] == 0 and folds[-1] == n and np.all(sizes[:-1] == -(-n // 5)) and 0 < sizes[-1] <= sizes[0]
    W = B.fold_weights(d.weights, folds)
    for k, (a, b) in enumerate(zip(folds, folds[1:])):
        assert np.all(W[k, a:b] == 0) and np.array_equal(np.delete(W[k], np.s_[a:b]), np.delete(d.weights, np.s_[a:b]))
    losses, accs = np.zeros((len(results["cv_regs"]), 5)), np.zeros((len(results["cv_regs"]), 5))
    for j, lam in enumerate(results["cv_regs"]):
        batched = B.fit_folds(d.x, d.labels, d.weights, folds, lam, K)
        assert batched.params.shape == (6 * K, 5) and batched.converged.all()
        for k, (a, b) in enumerate(zip(folds, folds[1:])):
            keep = np.r_[0:a, b:n]
            m = LogisticRegression(lam, num_classes=K).fit(d.x[keep], d.labels[keep], sample_weight=d.weights[keep])
            np.testing.assert_allclose(batched.params[:, k], m.params, atol=1e-8 * max(1.0, np.abs(m.params).max()))
            losses[j, k] = d.weights[a:b] @ m.losses(d.x[a:b], d.labels[a:b])
            accs[j, k] = m.accuracy(d.x[a:b], d.labels[a:b])
    np.testing.assert_allclose(results["cv_errors"], losses.sum(1), rtol=1e-9)
    np.testing.assert_array_equal(results["cv_accs"], accs.mean(1))
    assert results["cv_l2_reg"] == results["cv_regs"][int(np.argmax(accs.mean(1)))]


def test_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="dataset_id"): CA.credit_assignment_config("snli")
    with pytest.raises(ValueError, match="unknown stand-in"): CA.credit_assignment_config("mnli_standin", standin=dict(workers=3))
    with pytest.raises(ValueError, match="fixed_reg"): CA.credit_assignment_config(fixed_reg=0)
    with pytest.raises(ValueError, match="inverse_hvp_method"): CA.credit_assignment_config(inverse_hvp_method="lu")
    with pytest.raises(ValueError, match="num_workers"): CA.standin_mnli(num_workers=1)
    write_mnli_bundle(tmp_path / "multinli_1.0")
    with pytest.raises(DataError, match="sample-weight"): CA.credit_data("mnli", tmp_path, sample_weights=True)
    with pytest.raises(ValueError, match="shape"):
        CA.CreditData(np.zeros((3, 2)), [0, 1, 2], None, ["a", "b"], ["g"] * 3, np.zeros((1, 2)), [0], ["g"],
                      np.zeros((1, 2)), [0], ["h"])


def test_a_copy_of_mnli_with_another_test_set_uses_the_rule_not_the_frozen_points(tmp_path):
    write_mnli_bundle(tmp_path / "data" / "multinli_1.0")
    cfg = CA.credit_assignment_config("mnli", data_dir=tmp_path / "data", num_features=4, fixed_reg=0.05)
    results = CA.CreditAssignment(cfg, out_dir=tmp_path / "out", progress=False).run()
    for key, split in (("fixed_test", "test"), ("fixed_nonfires", "nonfires")):
        losses = np.asarray(results[f"initial_{split}_losses"])
        assert str(results[f"{key}_rule"]) == "rule" and max(results[key]) < len(losses)
        assert sorted(results[key][:3]) == sorted(np.argsort(losses, kind="stable")[-3:])
        assert f"this is not the paper's copy of 'mnli {split}'" in str(results[f"{key}_reason"])
        assert "the paper's had 9,815" in str(results[f"{key}_reason"])


def test_cli_hooks(tmp_path):
    parser = argparse.ArgumentParser(prog="groupinf run")
    sub = parser.add_subparsers(dest="experiment")
    CA.add_credit_assignment_parser(sub)
    args = parser.parse_args(["credit-assignment"])
    cfg = CA.credit_assignment_config_from_args(args)
    assert cfg["dataset_id"] == "mnli" and cfg["sample_weights"] is None and cfg["num_features"] == 600 and cfg["tag"] is None
    assert CA.CreditAssignment(cfg, out_dir=tmp_path).run_id == "mnli_sample_weights-None"
    args = parser.parse_args(["credit-assignment", "--standin", "--fixed-reg", "0.05", "--out-dir", str(tmp_path),
                              "--grad-batch-size", "400", "--hessian-batch-size", "30"])
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf): results = CA.run_credit_assignment(args)
    out = buf.getvalue()
    assert "fiction_test" in out and "verbatim_nonfires" in out and "summary.csv" in out
    run_dir = tmp_path / "credit_assignment" / "mnli_standin_sample_weights-None_standin"
    assert (run_dir / "results.npz").exists()
    assert sorted(p.name for p in (run_dir / "plots").iterdir()) == sorted(CA.PAPER_FIGURES)
    assert json.loads((run_dir / "config.json").read_text())["standin"]["num_workers"] == 40
    assert results["fiction_test_actl_infl"].shape == (len(results["subset_tags"]),)
