"""Data valuation and babble reduce: the CDR loaders on stand-in and fixture databases, and every number against an
independent computation (direct SQL counts, dense NumPy solves, scikit-learn refits)."""
import argparse, contextlib, io, sqlite3

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression as SkLR
from sklearn.metrics import f1_score

from datasets_fixtures import no_internet, write_babble_db  # noqa: F401
import groupinf.experiments.data_valuation as DV
from groupinf.experiments.base import fit_folds, fold_bounds
from groupinf.model import LogisticRegression
from groupinf.objective import Layout, gradient_operator
from groupinf.data import load_dataset, load_supplement
from groupinf.datasets.cdr import babble_reduce

SMALL = dict(num_candidates=(240, 80, 120), num_features=60, num_positive_lfs=3, num_negative_lfs=4, num_signal_features=10)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("dv")
    data_dir = DV.standin_cdr_data_dir(root / "standin-data", **SMALL)
    cfg = DV.data_valuation_config("reduced_cdr", data_dir, sample_weights=True, cv_range=(1e-3, 1e-1, 3),
                                   use_frozen_fixed_test=False, tag="standin")
    exp = DV.DataValuation(cfg, out_dir=root / "out", progress=False)
    return exp, exp.run(), data_dir


def test_rows_weights_and_lf_statistics_match_the_database(small_run):
    exp, results, data_dir = small_run
    con = sqlite3.connect(data_dir / "babble" / "cdr.db")
    rows = con.execute("SELECT l.value, l.candidate_id, l.key_id FROM label l JOIN candidate c ON c.id = l.candidate_id "
                       "WHERE c.split = 0").fetchall()
    fired = dict(con.execute("SELECT candidate_id, COUNT(*) FROM label GROUP BY candidate_id").fetchall())
    gold = dict(con.execute("SELECT candidate_id, value FROM gold_label").fetchall())
    allvotes = con.execute("SELECT value, candidate_id, key_id FROM label").fetchall()
    con.close()
    d = exp.data
    assert d.weights.tolist() == [1 / fired[c] for _, c, _ in rows]
    assert d.labels.tolist() == [(v + 1) // 2 for v, _, _ in rows] and d.lf_ids.tolist() == [k for _, _, k in rows]
    lfs = sorted({k for _, _, k in rows})
    assert results["subset_lf_ids"].tolist() == lfs and results["subset_tags"] == [f"same_features-{k}" for k in lfs]
    for j, k in enumerate(lfs):
        mine = [i for i, (_, _, kk) in enumerate(rows) if kk == k]
        assert exp.groups[j].tolist() == mine
        assert results["lf_coverage"][j] == len(mine) / len(rows)
        votes = [(v, c) for v, c, kk in allvotes if kk == k]
        assert results["lf_precision"][j] == pytest.approx(np.mean([v == gold[c] for v, c in votes]), abs=1e-15)
        assert results["lf_polarity"][j] == votes[0][0]


def dense(a): return a.toarray() if sp.issparse(a) else np.asarray(a)


def check_first_order(exp, results):
    "Every first-order number and the stored residuals against dense NumPy (features densified for the check only)."
    d, theta, lam = exp.data, results["initial_params"], float(results["cv_l2_reg"])
    x, tx, nx = dense(d.x), dense(d.test_x), dense(d.nonfires_x)
    n, D = x.shape
    xa, ta, na = np.c_[x, np.ones(n)], np.c_[tx, np.ones(len(d.test_labels))], np.c_[nx, np.ones(len(d.nonfires_labels))]
    sig = lambda z: 1 / (1 + np.exp(-z))
    p, pt, pn = sig(xa @ theta), sig(ta @ theta), sig(na @ theta)
    G = (p - d.labels)[:, None] * xa
    assert "train_grad_loss" not in results and results["train_grad_residuals"].shape == (n, 1)
    np.testing.assert_allclose(results["train_grad_residuals"][:, 0], p - d.labels, atol=1e-12)
    V = np.random.RandomState(0).normal(size=(D + 1, 3))
    np.testing.assert_allclose(gradient_operator(Layout(D, 2), d.x, results["train_grad_residuals"]) @ V, G @ V, atol=1e-10)
    H = (xa * (d.weights * p * (1 - p))[:, None]).T @ xa + lam * np.diag(np.r_[np.ones(D), 0.0])
    Gt = (pt - d.test_labels)[:, None] * ta
    Mt = (2 * d.test_labels - 1)[:, None] * ta
    A = np.stack([np.isin(np.arange(n), U) * d.weights for U in exp.groups])
    close = lambda a, b: np.testing.assert_allclose(a, b, atol=1e-8 * max(1.0, np.abs(b).max()))
    for name, sel in (("all_test", np.ones(len(d.test_labels), bool)), ("pos_test", d.test_labels == 1), ("neg_test", d.test_labels == 0)):
        r = G @ np.linalg.solve(H, Gt[sel].sum(0))
        close(results[f"{name}_pred_infl"], r); close(results[f"subset_{name}_pred_infl"], A @ r)
        r = G @ np.linalg.solve(H, Mt[sel].sum(0))
        close(results[f"{name}_pred_margin_infl"], r); close(results[f"subset_{name}_pred_margin_infl"], A @ r)
    r = (G @ np.linalg.solve(H, Gt[results["fixed_test"]].T)).T
    close(results["fixed_test_pred_infl"], r); close(results["subset_fixed_test_pred_infl"], A @ r.T)
    r = G @ np.linalg.solve(H, d.weights @ G)
    close(results["all_train_pred_infl"], r); close(results["subset_all_train_pred_infl"], A @ r)
    Gn = (pn - d.nonfires_labels)[:, None] * na
    close(results["subset_nonfires_pred_infl"], A @ G @ np.linalg.solve(H, Gn.T))
    gU = A @ G
    close(results["subset_self_pred_infl"], np.einsum("gp,pq,gq->g", gU, np.linalg.inv(H), gU))
    mU = A @ ((2 * d.labels - 1)[:, None] * xa)
    close(results["subset_self_pred_margin_infl"], np.einsum("gp,pq,gq->g", mU, np.linalg.inv(H), gU))


def check_actual(exp, results, which):
    "Actual effects of the groups `which` against scikit-learn refits with the group's weights zeroed (sparse x as it is)."
    d, lam = exp.data, float(results["cv_l2_reg"])
    assert np.all(results["subset_retrain_grad_norm"] <= results["subset_retrain_grad_threshold"])
    for j in which:
        U = exp.groups[j]
        w = d.weights.copy(); w[U] = 0
        sk = SkLR(C=1 / lam, solver="newton-cholesky", tol=1e-12, max_iter=1000).fit(d.x, d.labels, sample_weight=w)
        loss = lambda x, y: -np.log(sk.predict_proba(x)[np.arange(len(y)), y])
        margin = lambda x, y: (2 * y - 1) * sk.decision_function(x)
        dt = loss(d.test_x, d.test_labels) - results["initial_test_losses"]
        dm = margin(d.test_x, d.test_labels) - results["initial_test_margins"]
        for name, sel in (("all_test", slice(None)), ("pos_test", d.test_labels == 1), ("neg_test", d.test_labels == 0)):
            assert results[f"subset_{name}_actl_infl"][j] == pytest.approx(dt[sel].sum(), abs=1e-6)
            assert results[f"subset_{name}_actl_margin_infl"][j] == pytest.approx(dm[sel].sum(), abs=1e-6)
        np.testing.assert_allclose(results["subset_fixed_test_actl_infl"][j], dt[results["fixed_test"]], atol=1e-6)
        dtr = loss(d.x, d.labels) - results["initial_train_losses"]
        assert results["subset_all_train_actl_infl"][j] == pytest.approx(d.weights @ dtr, abs=1e-6)
        assert results["subset_self_actl_infl"][j] == pytest.approx(d.weights[U] @ dtr[U], abs=1e-6)
        np.testing.assert_allclose(results["subset_nonfires_actl_infl"][j], loss(d.nonfires_x, d.nonfires_labels) - results["initial_nonfires_losses"], atol=1e-6)


def test_first_order_matches_dense_numpy(small_run):
    exp, results, _ = small_run
    check_first_order(exp, results)


def test_actual_effects_match_sklearn_refits(small_run):
    exp, results, _ = small_run
    check_actual(exp, results, range(len(exp.groups)))


def test_lambda_is_chosen_on_validation_not_test(small_run):
    exp, results, _ = small_run
    d = exp.data
    n = len(d.labels)
    size = int(np.ceil(n / 5))
    val, test = [], []
    for lam in results["cv_regs"]:
        v, t = [], []
        for k in range(5):
            held = np.zeros(n, bool); held[k * size:(k + 1) * size] = True
            sk = SkLR(C=1 / lam, solver="newton-cholesky", tol=1e-12, max_iter=1000).fit(d.x[~held], d.labels[~held], sample_weight=d.weights[~held])
            v.append(f1_score(d.validation_labels, sk.predict_proba(d.validation_x)[:, 1] > 0.5, sample_weight=d.validation_weights))
            t.append(f1_score(d.test_labels, sk.predict_proba(d.test_x)[:, 1] > 0.5))
        val.append(np.mean(v)); test.append(np.mean(t))
    np.testing.assert_allclose(results["cv_validation_f1s"], val, atol=1e-9)
    np.testing.assert_allclose(results["cv_test_f1s"], test, atol=1e-9)
    np.testing.assert_allclose(results["cv_f1s"], val)
    assert results["cv_l2_reg"] == results["cv_regs"][int(np.argmax(val))]


def test_original_test_f1_criterion_on_request(small_run, tmp_path):
    _, results, data_dir = small_run
    cfg = DV.data_valuation_config("reduced_cdr", data_dir, sample_weights=True, cv_range=(1e-3, 1e-1, 3),
                                   cv_criterion="test_f1", use_frozen_fixed_test=False, tag="standin")
    cv = DV.DataValuation(cfg, out_dir=tmp_path, progress=False).run()
    np.testing.assert_allclose(cv["cv_test_f1s"], results["cv_test_f1s"])
    np.testing.assert_allclose(cv["cv_f1s"], results["cv_test_f1s"])
    assert cv["cv_l2_reg"] == results["cv_regs"][int(np.argmax(results["cv_test_f1s"]))]


def test_fixture_database_through_the_real_loader(tmp_path):
    "The loader-test fixture database (cdr, not reduced) runs end to end, unweighted."
    (tmp_path / "data" / "babble").mkdir(parents=True)
    write_babble_db(tmp_path / "data" / "babble" / "cdr.db")
    cfg = DV.data_valuation_config("cdr", tmp_path / "data", sample_weights=False, fixed_reg=0.05, use_frozen_fixed_test=False)
    exp = DV.DataValuation(cfg, out_dir=tmp_path / "out", progress=False)
    results = exp.run()
    assert exp.run_id == "cdr_sample_weights-False" and np.all(exp.data.weights == 1)
    full = load_dataset("cdr", tmp_path / "data")
    assert sp.isspmatrix_csr(exp.data.x) and (exp.data.x != full.train.x).nnz == 0          # kept sparse, never densified
    assert exp.engine.x.sparse and exp.config["inverse_hvp_method"] == "auto"
    check_first_order(exp, results)
    check_actual(exp, results, range(len(exp.groups)))
    lfs = load_supplement("cdr_LFs", tmp_path / "data")[0]
    assert results["subset_sizes"].tolist() == [int((lfs == k).sum()) for k in results["subset_lf_ids"]]
    assert set(DV.correlation_table(results, ("pred",)).target) >= {"subset_pos_test", "subset_neg_test", "subset_self"}


def test_sparse_cdr_end_to_end_with_batched_cross_validation(tmp_path):
    "The stand-in's full sparse cdr: the batched fold fits on CSR equal separate fits; the run's numbers check out."
    data_dir = DV.standin_cdr_data_dir(tmp_path, **SMALL)
    cfg = DV.data_valuation_config("cdr", data_dir, sample_weights=True, cv_range=(1e-2, 1e-1, 2), use_frozen_fixed_test=False)
    exp = DV.DataValuation(cfg, out_dir=tmp_path / "out", progress=False)
    results = exp.run()
    d = exp.data
    assert sp.isspmatrix_csr(d.x) and sp.isspmatrix_csr(d.test_x) and sp.isspmatrix_csr(d.validation_x) and exp.engine.x.sparse
    n = len(d.labels)
    folds = fold_bounds(n, 5)
    val = []
    for lam in results["cv_regs"]:
        batched = fit_folds(d.x, d.labels, d.weights, folds, lam, 2)
        f = []
        for k, (a, b) in enumerate(zip(folds, folds[1:])):
            keep = np.r_[0:a, b:n]
            m = LogisticRegression(lam, num_classes=2).fit(d.x[keep].toarray(), d.labels[keep], sample_weight=d.weights[keep])
            np.testing.assert_allclose(batched.params[:, k], m.params, atol=1e-8 * max(1.0, np.abs(m.params).max()))
            f.append(f1_score(d.validation_labels, m.predict_proba(d.validation_x.toarray())[:, 1] > 0.5, sample_weight=d.validation_weights))
        val.append(np.mean(f))
    np.testing.assert_allclose(results["cv_validation_f1s"], val, atol=1e-12)
    assert results["cv_l2_reg"] == results["cv_regs"][int(np.argmax(val))]
    check_first_order(exp, results)
    check_actual(exp, results, [int(np.argmax(results["subset_sizes"])), int(np.argmin(results["subset_sizes"]))])


def test_babble_reduce_step_reuses_the_loader(tmp_path):
    data_dir = DV.standin_cdr_data_dir(tmp_path, **SMALL)
    exp = DV.BabbleReduce(DV.babble_reduce_config(data_dir, tag="standin"), out_dir=tmp_path / "out", progress=False)
    results = exp.run()
    direct = babble_reduce(load_dataset("cdr", data_dir), load_supplement("cdr_weights", data_dir))
    for k in ("feature_inds", "regs", "accs", "f1s", "nonzeros", "coefs", "intercepts"):
        np.testing.assert_array_equal(results[k], direct[k])
    assert results["best_i"] == int(np.argmax(direct["f1s"][1]))
    reduced = load_dataset("reduced_cdr", data_dir)
    assert results["reduced_shapes"][:3].tolist() == [list(s.x.shape) for s in (reduced.train, reduced.validation, reduced.test)]
    np.testing.assert_array_equal(reduced.train.x, load_dataset("cdr", data_dir).train.x[:, results["feature_inds"]].toarray())
    assert exp.run_id == "cdr_regularization_type-l1_sample_weights-True_standin"
    assert (exp.run_dir / "plots" / "babble-reduce.pdf").exists()


def test_lf_statistics_by_hand():
    votes = np.array([[1, 10, 1], [1, 11, 1], [-1, 11, 2], [-1, 12, 2], [1, 13, 1]])
    gold = np.array([[-1, 12], [1, 10], [-1, 11], [1, 99]])      # candidate 13 has no gold label
    st = DV.lf_statistics([1, 1, 2, 2, 1], [1, 1, 0, 0, 1], votes, gold, [1, 2])
    assert st["lf_polarity"].tolist() == [1, -1]
    np.testing.assert_allclose(st["lf_coverage"], [0.6, 0.4])
    np.testing.assert_allclose(st["lf_precision"], [0.5, 1.0])


def test_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="cv_criterion"): DV.data_valuation_config(cv_criterion="f1")
    with pytest.raises(ValueError, match="inverse_hvp_method"): DV.data_valuation_config(inverse_hvp_method="lu")
    with pytest.raises(ValueError, match="dataset_id"): DV.data_valuation_config("spam")
    with pytest.raises(ValueError, match="unknown stand-in"): DV.standin_cdr_data_dir(tmp_path, lfs=3)
    with pytest.raises(ValueError, match="num_features"): DV.write_standin_cdr_db(tmp_path / "x.db", num_features=5)


def test_a_copy_of_cdr_with_another_test_set_uses_the_rule_not_the_frozen_points(tmp_path):
    data_dir = DV.standin_cdr_data_dir(tmp_path, **SMALL)
    cfg = DV.data_valuation_config("reduced_cdr", data_dir, fixed_reg=0.05)          # 120 test rows, not the paper's 4,101
    results = DV.DataValuation(cfg, out_dir=tmp_path / "o", progress=False).run()
    losses = np.asarray(results["initial_test_losses"])
    assert str(results["fixed_test_rule"]) == "rule" and max(results["fixed_test"]) < len(losses)
    assert sorted(results["fixed_test"][:3]) == sorted(np.argsort(losses, kind="stable")[-3:])
    assert f"its test set has {len(losses)} points, the paper's had 4,101" in str(results["fixed_test_reason"])


def test_cli_hooks(tmp_path):
    parser = argparse.ArgumentParser(prog="groupinf")
    sub = parser.add_subparsers(dest="command")
    DV.add_data_valuation_parser(sub); DV.add_babble_reduce_parser(sub)
    cfg = DV.data_valuation_config_from_args(parser.parse_args(["data-valuation", "--sample-weights"]))
    assert cfg["dataset_id"] == "reduced_cdr" and cfg["sample_weights"] is True and cfg["use_frozen_fixed_test"]
    assert DV.DataValuation(cfg, out_dir=tmp_path).run_id == "reduced_cdr_sample_weights-True"
    args = parser.parse_args(["data-valuation", "--standin", "--sample-weights", "--fixed-reg", "0.01", "--out-dir", str(tmp_path)])
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf): results = DV.run_data_valuation(args)
    assert "subset_pos_test" in buf.getvalue() and "labelling functions" in buf.getvalue()
    run_dir = tmp_path / "data_valuation" / "reduced_cdr_sample_weights-True_standin"
    assert sorted(p.name for p in (run_dir / "plots").iterdir()) == sorted(DV.PAPER_FIGURES)
    assert len(results["subset_tags"]) == 14
    args = parser.parse_args(["babble-reduce", "--standin", "--out-dir", str(tmp_path)])
    with contextlib.redirect_stdout(io.StringIO()): BR = DV.run_babble_reduce(args)
    assert BR["reduced_shapes"][0, 1] == len(BR["feature_inds"]) == results["initial_params"].shape[0] - 1
