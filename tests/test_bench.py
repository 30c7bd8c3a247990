"""`groupinf bench`: the quick mode runs end to end, its two sides agree, and the command-line hooks behave.

No assertion here depends on timings: the benchmark prints them, the tests only check that it runs and that its
numbers are consistent (both implementations give the same answers, retrained solutions meet the tolerance)."""
import argparse, json, os
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
from groupinf import bench as B


def _parser():
    p = argparse.ArgumentParser(prog="groupinf")
    B.add_bench_parser(p.add_subparsers(dest="command"))
    return p


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    args = _parser().parse_args(["bench", "--quick", "--json", str(out)])
    results, table = B.run_bench(args)
    return results, table, out


def test_quick_bench_runs_every_item(quick):
    results, table, _ = quick
    assert sorted({r["item"] for r in results}) == ["first_order", "fit", "hessian", "newton", "retrain", "scaling"]
    assert set(table["shape"]) == set(B.SHAPES)
    for r in results:
        if r["item"] != "scaling":
            assert r["ours"] > 0 and r["baseline"] > 0 and np.isfinite(r["ratio"]) and r["ratio"] > 0
    assert (table.ratio > 0).all() and set(table.columns) >= {"item", "shape", "ours_s", "baseline_s", "ratio", "target"}


def test_fits_and_retraining_are_at_least_as_close_as_scikit_learn(quick):
    for r in (r for r in quick[0] if r["item"] == "retrain"):
        assert r["ours_within_tol"] and r["at_least_as_close"], r  # at least as close to the optimum as L-BFGS at tol 1e-8
        assert r["rel_param_diff"] < 1e-2 and len(r["ours_newton_iters"]) == r["K"], r
    for r in (r for r in quick[0] if r["item"] == "fit"):
        assert r["at_least_as_close"] and r["ours_grad"] <= r["base_grad"] and r["rel_param_diff"] < 1e-3, r


def test_estimates_agree_with_the_baselines(quick):
    for r in quick[0]:
        if r["item"] in ("newton", "first_order"): assert r["rel_diff"] < 1e-8, r


def test_scaling_slopes_are_reported(quick):
    (s,) = [r for r in quick[0] if r["item"] == "scaling"]
    for key in ("slope_n", "slope_P", "slope_nnz"):
        assert set(s[key]) == {"fit", "first_order", "retrain"} and all(np.isfinite(v) for v in s[key].values())
    assert len(s["rows"]) == 5 and all(r["nnz"] > 0 for r in s["rows"])


def test_json_has_machine_and_results(quick):
    payload = json.loads(quick[2].read_text())
    assert payload["machine"]["cores"] == os.cpu_count()
    assert len(payload["results"]) == len(quick[0])
    assert not list(quick[2].parent.glob("*.tmp"))  # written atomically


def test_hessian_rates_are_positive(quick):
    for r in (r for r in quick[0] if r["item"] == "hessian"):
        assert r["gflops_ours"] > 0 and r["gflops_numpy"] > 0
        np.testing.assert_allclose(r["ratio"], r["gflops_ours"] / r["gflops_numpy"])


def test_baselines_agree_with_the_engine_on_a_small_problem():
    prob = B.problem("binary", quick=True)
    eng = prob.engine()
    groups = B.random_groups(prob.n, 6, seed=5)
    Xa = np.hstack([prob.x, np.ones((prob.n, 1))])
    p = 1 / (1 + np.exp(-(Xa @ prob.model.params)))
    D0 = B.dense_newton(eng.H.numpy(), Xa, p * (1 - p), eng.G.numpy(), groups)
    np.testing.assert_allclose(eng.newton_params(groups), D0, atol=1e-10 * np.abs(D0).max())
    t = B.Target.losses(prob.xt, prob.yt)
    H = eng.H.numpy()
    test0, self0 = B.loop_first_order(lambda v: np.linalg.solve(H, v), eng.G.numpy(), groups, eng.target_gradients(t))
    res = eng.influence(groups, {"t": t}, estimators=("pred",), self_kinds=("loss",))
    np.testing.assert_allclose(res["t_pred"], test0, atol=1e-10 * np.abs(test0).max())
    np.testing.assert_allclose(res["self_loss_pred"], self0, rtol=1e-9)
    thetas, iters = B.sklearn_retrain(prob, groups[:2])
    W = np.ones((2, prob.n))
    for j, g in enumerate(groups[:2]): W[j, g] = 0
    gn = B.gradient_norms(prob, thetas, W)
    assert thetas.shape == (2, prob.P) and (iters > 0).all() and (gn < 1e-2).all()
    # the yardstick itself: the gradient norm at the fitted parameters is the model's own
    np.testing.assert_allclose(B.gradient_norms(prob, prob.model.params[None])[0], prob.model.grad_norm_, rtol=1e-6)


def test_a_full_run_reports_its_phases_and_memory(tmp_path):
    r = B.full_run("breast_cancer", num_subsets=1, out_dir=tmp_path)
    assert r["K"] > 0 and r["ours"] > 0 and 0 < r["peak_rss_gb"] < 8
    assert {p["name"] for p in r["phases"]} >= {"cross_validation", "retrain", "newton"}
    assert r["resolved"]["hessian_strategy"] == "primal" and "newton" in r["resolved"]["initial_fit_solver"]


def test_group_sizes_follow_the_papers_ranges():
    sizes = B.paper_group_sizes(20000, 30)
    assert len(sizes) == 30 and sizes.min() == 50 and sizes.max() == 5000
    assert np.all(np.diff(sizes) > 0) and abs(np.median(sizes) - 2525) <= 100
    gs = B.random_groups(1000, 7, seed=0)
    assert [len(g) for g in gs] == B.paper_group_sizes(1000, 7).tolist()
    assert all(len(np.unique(g)) == len(g) and g.max() < 1000 for g in gs)
    assert [g.tolist() for g in B.random_groups(1000, 7, seed=0)] == [g.tolist() for g in gs]


def test_cli_flags_and_errors():
    p = _parser()
    a = p.parse_args(["bench", "--quick", "--repeats", "2", "--shapes", "binary", "--items", "newton,hessian", "--threads", "1"])
    assert (a.quick, a.repeats, a.shapes, a.items, a.threads) == (True, 2, ("binary",), ("newton", "hessian"), 1)
    d = p.parse_args(["bench"])
    assert d.shapes == B.SHAPES and d.items == B.DEFAULT_ITEMS and "runs" not in d.items and not d.quick
    assert p.parse_args(["bench", "--items", "runs"]).items == ("runs",)
    with pytest.raises(SystemExit): p.parse_args(["bench", "--shapes", "triangle"])
    with pytest.raises(SystemExit): p.parse_args(["bench", "--items", ""])
    with pytest.raises(ValueError, match="--repeats"): B.run_bench(p.parse_args(["bench", "--repeats", "0"]))
    with pytest.raises(ValueError, match="--threads"): B.run_bench(p.parse_args(["bench", "--threads", "0"]))
    with pytest.raises(ValueError, match="unknown"): B.run_benchmark(quick=True, shapes=("triangle",))
