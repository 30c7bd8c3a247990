"""Every public name of the package imports, and every public callable of the numerical core runs on a small problem.

The core's table below must name every callable in the `__all__` of `objective`, `hessian`, `model` and `influence`: a
new public function without a call here fails `test_the_call_table_covers_the_core`."""
import importlib, os, pkgutil
import numpy as np
import pytest
import scipy.sparse as sp

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import groupinf
from groupinf import objective as O, hessian as H, model as M, influence as I

CORE = (O, H, M, I)


def _modules():
    yield groupinf
    for info in pkgutil.walk_packages(groupinf.__path__, "groupinf."):
        yield importlib.import_module(info.name)


@pytest.mark.parametrize("module", list(_modules()), ids=lambda m: m.__name__)
def test_every_public_name_imports(module):
    for name in getattr(module, "__all__", []):
        assert hasattr(module, name), f"{module.__name__}.{name} is in __all__ but missing"


@pytest.fixture(scope="module")
def p():
    "A small binary problem with sparse features, its fit, its engine and a few groups."
    rng = np.random.RandomState(0)
    x = sp.csr_matrix(rng.randn(60, 5) * (rng.rand(60, 5) < 0.6)); y = rng.randint(2, size=60)
    m = M.LogisticRegression(0.6).fit(x, y)
    lay, X = m.layout_, O.Features(x)
    probs = O.probabilities(lay, O.logits(lay, X, m.params[:, None]))
    eng = I.GroupInfluence(m, x, y, progress=False)
    groups = [np.arange(3), np.arange(10, 25)]
    return dict(x=x, y=y, m=m, lay=lay, X=X, th=m.params, probs=probs, s=np.ones(60), eng=eng, groups=groups,
                V=np.random.RandomState(1).randn(lay.num_params, 2), t=I.Target.losses(x[:3], y[:3]))


CALLS = {
    # objective
    "Layout": lambda p: O.Layout(4, 3),
    "check_features": lambda p: O.check_features(p["x"]), "check_labels": lambda p: O.check_labels(p["y"], 60),
    "check_weights": lambda p: O.check_weights(None, 60), "check_positive": lambda p: O.check_positive(2.0, "v"),
    "as_tensor": lambda p: O.as_tensor(0.5, "float64"), "batch_size_for": lambda p: O.batch_size_for(1e6, 10),
    "Features": lambda p: O.Features(p["x"]), "as_features": lambda p: O.as_features(p["x"]),
    "FeatureProducts": lambda p: O.FeatureProducts(*p["X"].tensors()).tmatmul(np.ones((60, 1))),
    "sparse_matmul": lambda p: O.sparse_matmul(p["X"].tensors()[0], np.ones((5, 3))),
    "logits": lambda p: O.logits(p["lay"], p["x"], p["V"]), "probabilities": lambda p: O.probabilities(p["lay"], O.logits(p["lay"], p["x"], p["V"])),
    "losses_from_logits": lambda p: O.losses_from_logits(p["lay"], O.logits(p["lay"], p["x"], p["V"]), p["y"]),
    "residuals": lambda p: O.residuals(p["lay"], p["probs"], p["y"]),
    "pack": lambda p: O.pack(p["lay"], p["x"], np.ones((60, 2, 1))), "as_columns": lambda p: O.as_columns(p["th"], "float64"),
    "regulariser_columns": lambda p: O.regulariser_columns(p["lay"], 0.6, O.as_columns(p["V"], "float64")),
    "objective_and_gradient": lambda p: O.objective_and_gradient(p["lay"], p["x"], p["y"], p["s"], 0.6, p["th"]),
    "per_example_gradients": lambda p: O.per_example_gradients(p["lay"], p["x"], p["th"], p["y"]),
    "margin_gradients": lambda p: O.margin_gradients(p["lay"], p["x"], p["y"]),
    "outer_rows": lambda p: O.outer_rows(p["lay"], p["x"], np.ones((60, 1))),
    "point_scores": lambda p: O.point_scores(p["lay"], p["x"], np.ones((60, 1)), p["V"]),
    "group_sums": lambda p: O.group_sums(p["lay"], p["x"], np.ones((60, 1)), np.ones((2, 60))),
    "gradient_operator": lambda p: O.gradient_operator(p["lay"], p["x"], np.ones((60, 1))) @ p["V"],
    "curvature_apply": lambda p: O.curvature_apply(p["lay"], p["probs"], np.ones((60, 1, 1))),
    "curvature_factors": lambda p: O.curvature_factors(p["lay"], p["probs"][:, 0, :]),
    "null_basis": lambda p: O.null_basis(O.Layout(3, 4)), "project_gauge": lambda p: O.project_gauge(O.Layout(3, 4), np.ones(16)),
    # hessian
    "ConvergenceError": lambda p: H.ConvergenceError("x"), "NotPositiveDefiniteError": lambda p: H.NotPositiveDefiniteError("x"),
    "SingularMatrixError": lambda p: H.SingularMatrixError("x"),
    "hvp": lambda p: H.hvp(p["lay"], p["x"], p["probs"], p["s"], 0.6, p["V"]),
    "logits_direction": lambda p: H.logits_direction(p["lay"], p["x"], p["V"]),
    "hvp_autodiff": lambda p: H.hvp_autodiff(p["lay"], p["th"], p["x"].toarray(), p["y"], p["V"], p["s"], 0.6),
    "hessian": lambda p: H.hessian(p["lay"], p["x"], p["probs"], p["s"], 0.6),
    "third_derivative": lambda p: H.third_derivative(p["lay"], p["x"], p["probs"], p["s"], p["V"], p["V"]),
    "cholesky_or_raise": lambda p: H.cholesky_or_raise(np.eye(3)), "solve": lambda p: H.solve(np.eye(3), np.ones((3, 1))),
    "pcg": lambda p: H.pcg(lambda V, c: V, np.ones((3, 2))),
    "kfac_affordable": lambda p: H.kfac_affordable(p["lay"]),
    "kfac_build_ops": lambda p: H.kfac_build_ops(p["lay"], p["X"]),
    "hvp_ops": lambda p: H.hvp_ops(p["lay"], p["X"]),
    "KFACPreconditioner": lambda p: H.KFACPreconditioner(p["lay"], p["X"], p["probs"], p["s"])(np.ones((6, 1)), 0.6),
    "JacobiPreconditioner": lambda p: H.JacobiPreconditioner(p["lay"], p["X"], p["probs"], p["s"])(np.ones((6, 1)), 0.6),
    "GroupRows": lambda p: H.GroupRows(p["lay"], p["X"], p["probs"], [1, 2], [1.0, 1.0]).dense(),
    "AllRows": lambda p: H.AllRows(p["lay"], p["X"], p["probs"], p["s"]).mul(p["V"]),
    "Strategy": lambda p: str(H.Strategy("primal", "small")), "dual_dimension": lambda p: H.dual_dimension(p["lay"], 60),
    "choose_strategy": lambda p: H.choose_strategy(p["lay"], 60),
    "HessianSystem": lambda p: H.HessianSystem.build(p["lay"], p["X"], p["y"], p["s"], 0.6, p["th"]).solve(p["V"]),
    "PrimalSystem": lambda p: H.PrimalSystem(p["lay"], p["X"], p["y"], p["s"], 0.6, p["th"]).solve(p["V"]),
    "DualSystem": lambda p: H.DualSystem(p["lay"], p["X"], p["y"], p["s"], 0.6, p["th"]).solve(p["V"]),
    "MatrixFreeSystem": lambda p: H.MatrixFreeSystem(p["lay"], p["X"], p["y"], p["s"], 0.6, p["th"]).solve(p["V"]),
    "group_row_index": lambda p: H.group_row_index(p["groups"], [None, None], p["s"], 1),
    "removal_route": lambda p: H.removal_route("primal", 6, 2), "removal_bytes": lambda p: H.removal_bytes("dual", 6, 60, 2),
    "Removal": lambda p: H.Removal(p["eng"].system, p["groups"]).solve(p["V"]),
    # model
    "HessianSteps": lambda p: M.HessianSteps(p["lay"], p["X"]), "KFACSteps": lambda p: M.KFACSteps(p["lay"], p["X"]),
    "JacobiSteps": lambda p: M.JacobiSteps(p["lay"], p["X"]),
    "SystemSteps": lambda p: M.SystemSteps(p["eng"].system)(p["V"], [0, 1]),
    "NewtonResult": lambda p: M.NewtonResult(np.zeros((6, 1)), np.zeros(1), np.ones(1), np.zeros(1)).converged,
    "newton_columns": lambda p: M.newton_columns(p["lay"], p["X"], p["y"], np.ones((60, 1)), 0.6, np.zeros((6, 1)),
                                                 M.JacobiSteps(p["lay"], p["X"])),
    "l2_reg_from_relative": lambda p: M.l2_reg_from_relative(1e-3, 60),
    "fit_steps": lambda p: M.fit_steps("auto", p["lay"], p["X"]),
    "LogisticRegression": lambda p: M.LogisticRegression(0.6).fit(p["x"], p["y"]).fit_many(p["x"], p["y"], np.ones((2, 60)), [0.5, 1.0]),
    "check_classes_weighted": lambda p: M.check_classes_weighted(p["y"], np.ones((60, 2)), 2, True),
    # influence
    "Target": lambda p: I.Target.loss_sums(p["x"][:3], p["y"][:3], np.ones((1, 3))),
    "GroupInfluence": lambda p: p["eng"].influence(p["groups"], {"t": p["t"]}),
    "Retrained": lambda p: p["eng"].retrain(p["groups"]),

}


def _core_callables():
    return sorted({(mod.__name__, name) for mod in CORE for name in mod.__all__ if callable(getattr(mod, name))})


def test_the_call_table_covers_the_core():
    missing = [f"{m}.{n}" for m, n in _core_callables() if n not in CALLS]
    assert not missing, f"public callables without a smoke call in CALLS: {missing}"


@pytest.mark.parametrize("name", sorted(CALLS))
def test_every_public_core_callable_runs_on_a_small_problem(p, name):
    out = CALLS[name](p)
    arrays = [v for v in (out if isinstance(out, (tuple, list)) else [out])
              if hasattr(v, "numpy") or isinstance(v, np.ndarray)]
    for a in arrays:
        a = a.numpy() if hasattr(a, "numpy") else a
        if np.issubdtype(np.asarray(a).dtype, np.number): assert np.all(np.isfinite(a)), name
