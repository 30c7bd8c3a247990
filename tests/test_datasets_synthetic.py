"The counterexample datasets against an independent, step-by-step replay of the original generator."
import numpy as np
import pytest

import groupinf.data as gd
from groupinf.datasets.synthetic import COUNTEREXAMPLE_IDS, counterexample_datasets


def replay(seed=0):
    "Written from the specification (experiments.md §3.1), one random call at a time."
    rng = np.random.RandomState(seed)
    out = {}

    def mixture(n, axis):
        a = rng.normal(0, 1, size=(n, len(axis))) + axis / 2
        b = rng.normal(0, 1, size=(n, len(axis))) - axis / 2
        x, y = np.vstack([a, b]), np.array([0.0] * n + [1.0] * n)
        order = np.arange(2 * n); rng.shuffle(order)
        return x[order], y[order]

    def gauss(name, n, D, scale):
        sep = rng.normal(0, 1, size=(D,)); sep = sep / np.linalg.norm(sep) * scale
        out[name] = (mixture(n, sep), mixture(n, sep))

    gauss("gauss", 20, 5, 1)
    x = np.array([[1, 0], [1, 0], [1, 0], [0, 1], [0, 1], [0, 1], [0.75, 0.25], [0.25, 0.75]])
    y = np.array([0, 0, 0, 1, 1, 1, 1, 0.0])
    order = np.arange(8); rng.shuffle(order)
    out["fixed"] = ((x[order], y[order]),) * 2
    vecs = [rng.normal(0, 1, 20)]; vecs[0] = vecs[0] / np.linalg.norm(vecs[0])
    while len(vecs) < 20:
        v = rng.normal(0, 1, 20)
        if np.linalg.matrix_rank(np.array(vecs + [v])) == len(vecs): continue
        for u in vecs: v = v - (u @ v) * u
        if np.linalg.norm(v) < 1e-3: continue
        vecs.append(v / np.linalg.norm(v))
    rng.normal(0, 1, 20)                                   # the unused axis
    labels = rng.randint(0, 2, 20)
    xs, ys = [], []
    for i in range(20): xs += [vecs[i]] * (i + 1); ys += [labels[i]] * (i + 1)
    x = np.vstack([np.array(xs), rng.normal(0, 0.1, (40, 20))]); y = np.array(ys + list(rng.randint(0, 2, 40)), float)
    out["repeats"] = ((x, y),) * 2
    gauss("gauss2", 20, 10, 0)
    gauss("gauss3", 40, 100, 0.1)
    gauss("gauss4", 60, 60, 0.5)
    x = np.array([[0.075, 0]] * 40 + [[0.15, 0]] * 20 + [[0, 1]] * 40 + [[0, 0.1]] * 20)
    y = np.array([0] * 40 + [1] * 20 + [0] * 40 + [1] * 20, float)
    out["ortho2"] = ((x, y),) * 2
    sep = rng.normal(0, 1, 10); sep /= np.linalg.norm(sep)
    x, y = mixture(40, sep)
    x = np.vstack([np.hstack([x, np.zeros((80, 1))]), rng.normal(0, 1, (20, 11))])
    y = np.concatenate([y, rng.randint(0, 2, 20)])
    out["gauss5"] = ((x, y),) * 2
    return out


@pytest.mark.parametrize("seed", [0, 3])
def test_matches_independent_replay(seed):
    ref, res = replay(seed), counterexample_datasets(seed)
    for k in COUNTEREXAMPLE_IDS:
        for s, ((x, y)) in zip(("train", "test"), ref[k]):
            np.testing.assert_allclose(res[f"{k}_{s}_X"], x, rtol=0, atol=1e-12, err_msg=k)
            assert res[f"{k}_{s}_Y"].tolist() == y.tolist(), k
    assert res["repeats_N_unique"] == 20 and res["ortho2_ids"].tolist() == [0] * 40 + [1] * 20 + [2] * 40 + [3] * 20


def test_registered_ids():
    ref = replay(0)
    for k in COUNTEREXAMPLE_IDS:
        d = gd.load_dataset(k)
        assert d.validation is None and d.num_classes == 2 and d.train.labels.dtype == np.int64
        np.testing.assert_allclose(d.test.x, ref[k][1][0], atol=1e-12)
        sh = gd.dataset_info(k).shapes
        assert (d.train.num_examples, d.test.num_examples, d.train.num_features) == (sh[0], sh[2], sh[3])
    assert gd.load_supplement("ortho2_ids").tolist()[::20] == [0, 0, 1, 2, 2, 3]
    assert gd.load_supplement("repeats_N_unique") == 20
