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
    assert sorted({r["item"] for r in results}) == ["first_order", "hessian", "newton", "retrain", "scaling"]
    assert set(table["shape"]) == {"binary", "multiclass"}
    for r in results:
        if r["item"] != "scaling":
            assert r["ours"] > 0 and r["baseline"] > 0 and np.isfinite(r["ratio"]) and r["ratio"] > 0
    assert (table.ratio > 0).all() and set(table.columns) >= {"item", "shape", "ours_s", "baseline_s", "ratio", "target"}


def test_retraining_meets_the_tolerance_and_agrees_with_scikit_learn(quick):
    for r in (r for r in quick[0] if r["item"] == "retrain"):
        assert r["ours_within_tol"], r
        assert max(r["ours_grad"]) <= max(r["base_grad"]), r  # at least as close to the optimum as L-BFGS at tol 1e-8
        assert r["rel_param_diff"] < 1e-2, r
        assert len(r["ours_grad"]) == len(r["base_grad"]) == r["K"]


def test_estimates_agree_with_the_baselines(quick):
    for r in quick[0]:
        if r["item"] in ("newton", "first_order"): assert r["rel_diff"] < 1e-8, r


def test_scaling_slopes_are_reported(quick):
    (s,) = [r for r in quick[0] if r["item"] == "scaling"]
    assert set(s["slope_n"]) == set(s["slope_P"]) == {"engine build", "first-order", "Newton", "retrain"}
    assert all(np.isfinite(v) for v in [*s["slope_n"].values(), *s["slope_P"].values()])
    assert all(len(v) == len(s["ns"]) for v in s["times_n"].values())


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
    prob = B.binary_problem(n=600, d=9)
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
    gn = B.full_gradient_norms(prob, thetas, groups[:2])
    assert thetas.shape == (2, prob.P) and (iters > 0).all() and (gn < 1e-2).all()


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
    assert d.shapes == ("binary", "multiclass") and len(d.items) == 5 and not d.quick
    with pytest.raises(SystemExit): p.parse_args(["bench", "--shapes", "triangle"])
    with pytest.raises(SystemExit): p.parse_args(["bench", "--items", ""])
    with pytest.raises(ValueError, match="--repeats"): B.run_bench(p.parse_args(["bench", "--repeats", "0"]))
    with pytest.raises(ValueError, match="--threads"): B.run_bench(p.parse_args(["bench", "--threads", "0"]))
    with pytest.raises(ValueError, match="unknown"): B.run_benchmark(quick=True, shapes=("triangle",))
