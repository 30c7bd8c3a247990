"""Tests of the group samplers beyond the notebook: paper-scale counts, edge cases, fresh-process determinism,
clustering in the top principal coordinates (dense, sparse and operator inputs)."""
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator, aslinearoperator
from sklearn.cluster import KMeans

from groupinf.groups import (CLUSTER_DIM, GROUP_TYPES, _derived_seed, cluster_groups, clusterings,
                             feature_window_groups, group_indicator, groups_by_value, hierarchical_labels,
                             influence_tail_groups, kmeans_labels, pad_groups, pick_subsets, principal_coordinates,
                             random_groups, random_same_class_groups, requested_sizes, simplified_tag,
                             tail_phase_sizes, tail_window, unpad_groups)


FAST = dict(kmeans_n_init=1)   # one k-means++ start: these tests are not about k-means quality


def _synthetic(n=2000, d=5, p=6, t=6, seed=0, classes=2):
    rng = np.random.RandomState(seed)
    labels = np.repeat(np.arange(classes), n // classes)
    x = rng.randn(n, d) + labels[:, None]
    grads = rng.randn(n, p)
    infl = rng.standard_t(3, size=(t, n))
    fixed = np.arange(100, 100 + t)
    return x, labels, grads, fixed, infl


@pytest.mark.parametrize("num_subsets,per_phase", [(100, (33, 33, 34)), (10, (3, 3, 4))])
def test_paper_size_rules(num_subsets, per_phase):
    sizes = requested_sizes(20_000, num_subsets=num_subsets)
    assert (sizes[0], sizes[-1], len(sizes)) == (50, 5000, num_subsets)
    phases = tail_phase_sizes(20_000, num_subsets)
    assert tuple(len(p) for p in phases) == per_phase
    assert [(int(p[0]), int(p[-1])) for p in phases] == [(50, 500), (50, 2000), (50, 5000)]
    assert [tail_window(p) for p in phases] == [750, 3000, 7500]


def test_counts_order_and_windows_at_100_sizes():
    x, labels, grads, fixed, infl = _synthetic()
    tags, groups = pick_subsets(x, labels, grads, fixed, infl, num_subsets=100, **FAST)
    types = [simplified_tag(t) for t in tags]
    assert set(types) <= set(GROUP_TYPES)
    counts = {g: types.count(g) for g in GROUP_TYPES}
    assert counts['random'] == counts['random_same_class'] == counts['feature_window'] == 100
    assert counts['neg_tail_test'] == counts['pos_tail_test'] == 600          # 6 test points x (33 + 33 + 34)
    assert counts['same_features'] <= 100 and counts['same_grad'] <= 100
    # the order of the types is the original's
    first = [types.index(g) for g in GROUP_TYPES if g != 'pos_tail_test']
    assert first == sorted(first)
    # each tail group inside its window at the right end of its test point's order
    sizes = {phase: p for phase, p in enumerate(tail_phase_sizes(len(labels), 100), 1)}
    for tag, g in zip(tags, groups):
        kind = simplified_tag(tag)
        if kind not in ('neg_tail_test', 'pos_tail_test'): continue
        _, phase, test_idx = tag.split('-')
        row = infl[list(fixed).index(int(test_idx))]
        order = np.argsort(row, kind='stable')
        w = tail_window(sizes[int(phase)])
        window = order[:w] if kind == 'neg_tail_test' else order[-w:]
        assert np.isin(g, window).all()
    for tag, g in zip(tags, groups):
        assert g.dtype == np.int64 and np.all(np.diff(g) > 0)
        if tag.startswith('random_same_class'):
            assert set(labels[g]) == {int(tag.split('-')[1])}


def test_small_n_and_few_sizes():
    x, labels, grads, fixed, infl = _synthetic(n=60, t=2)
    for num_subsets in (1, 2, 3):
        tags, groups = pick_subsets(x, labels, grads, fixed, infl, num_subsets=num_subsets, **FAST)
        assert all(len(g) >= 1 for g in groups)                            # sizes below 1 are raised to 1
        assert sum(simplified_tag(t) == 'neg_tail_test' for t in tags) == 2 * num_subsets
    assert len(clusterings(x[:10], hierarchical=False, **FAST)) == 4 + 8          # k > n skipped
    assert cluster_groups(np.random.RandomState(0), [], [3], 'same_grad') == ([], [])


def test_sparse_features_match_dense():
    x, labels, grads, fixed, infl = _synthetic(n=300, t=1)
    xb = (x > 0.5).astype(float)                                          # binary features: many ties
    dense = pick_subsets(xb, labels, grads, fixed, infl, num_subsets=6, **FAST)
    sparse = pick_subsets(sp.csr_matrix(xb), labels, grads, fixed, infl, num_subsets=6, **FAST)
    assert dense[0] == sparse[0]
    assert all(np.array_equal(a, b) for a, b in zip(dense[1], sparse[1]))
    t, g = feature_window_groups(np.random.RandomState(0), sp.csr_matrix(xb), [50])
    assert np.array_equal(g[0], feature_window_groups(np.random.RandomState(0), xb, [50])[1][0])


def test_hierarchical_subsample_and_skip():
    x, labels, grads, fixed, infl = _synthetic(n=500, t=1)
    full = hierarchical_labels(x)
    sub = hierarchical_labels(x, max_n=100, seed=3)
    assert sub.shape == full.shape and np.array_equal(sub, hierarchical_labels(x, max_n=100, seed=3))
    skipped = pick_subsets(x, labels, grads, fixed, infl, num_subsets=5, hierarchical=False, **FAST)
    assert len(skipped[0]) > 0
    with pytest.raises(TypeError, match='hierarchical_max_n'):
        hierarchical_labels(x, max_n=1.5)


_CHILD = """
import sys, numpy as np
from groupinf.groups import pick_subsets, pad_groups
a = np.load(sys.argv[1], allow_pickle=False)
tags, groups = pick_subsets(a['x'], a['labels'], a['grads'], a['fixed'], a['infl'], subset_seed=7, num_subsets=8,
                            hierarchical_max_n=300, kmeans_n_init=2)
np.savez(sys.argv[2], tags=np.array(tags), padded=pad_groups(groups))
"""


def test_same_seed_same_groups_in_fresh_processes(tmp_path):
    x, labels, grads, fixed, infl = _synthetic(n=600, d=8, p=30, t=3, classes=3, seed=1)
    np.savez(tmp_path / 'in.npz', x=x, labels=labels, grads=grads, fixed=fixed, infl=infl)
    here = pick_subsets(x, labels, grads, fixed, infl, subset_seed=7, num_subsets=8, hierarchical_max_n=300,
                        kmeans_n_init=2)
    for hash_seed in ('0', '4242'):
        out = tmp_path / f'out{hash_seed}.npz'
        subprocess.run([sys.executable, '-c', _CHILD, str(tmp_path / 'in.npz'), str(out)], check=True,
                       env=dict(os.environ, PYTHONHASHSEED=hash_seed), capture_output=True)
        res = np.load(out, allow_pickle=False)
        assert list(res['tags']) == here[0]
        assert all(np.array_equal(a, b) for a, b in zip(unpad_groups(res['padded']), here[1]))
        assert len(unpad_groups(res['padded'])) == len(here[1])


def test_storage_round_trip_and_indicator():
    rng = np.random.RandomState(0)
    groups = [rng.choice(50, k, replace=False) for k in (1, 7, 50, 3)]
    padded = pad_groups(groups, n=50)
    assert padded.shape == (4, 50) and padded.dtype == np.int64
    assert all(np.array_equal(a, b) for a, b in zip(unpad_groups(padded), groups))
    v, w = rng.randn(50), rng.rand(50)
    A = group_indicator(groups, 50, weights=w)
    assert np.allclose(A @ v, [sum(w[i] * v[i] for i in g) for g in groups], rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match='group 2 repeats index 4'):
        group_indicator([[0], [1], [4, 4]], 50)
    with pytest.raises(ValueError, match='group 0 has index 50'):
        pad_groups([[50]], n=50)


def test_groups_by_value_matches_scan():
    values = np.random.RandomState(0).randint(-3, 40, size=3000)
    uniq, groups = groups_by_value(values, min_size=60)
    expected = [u for u in np.unique(values) if (values == u).sum() >= 60]
    assert list(uniq) == expected
    assert all(np.array_equal(g, np.flatnonzero(values == u)) for u, g in zip(uniq, groups))


def test_tail_groups_reject_bad_shapes():
    with pytest.raises(ValueError, match='fixed_test_pred_infl'):
        influence_tail_groups(np.random.RandomState(0), [1, 2], np.zeros((3, 10)), 5)


# --- clustering in the top principal coordinates -------------------------------------------------------------------

def _gapped(n=400, d=120, rank=6, seed=0, noise=1e-3):
    "Rank-`rank` data off the origin plus a little noise: a clear spectral gap after `rank` directions."
    rng = np.random.RandomState(seed)
    U, V = np.linalg.qr(rng.randn(n, rank))[0], np.linalg.qr(rng.randn(d, rank))[0]
    return 5.0 + (U * np.linspace(60, 10, rank)) @ V.T + noise * rng.randn(n, d)


class _NoDense(sp.csr_matrix):
    "A CSR matrix that refuses to be densified."
    def toarray(self, *args, **kwargs): raise AssertionError("densified")
    todense = toarray


def test_principal_coordinates_match_svd_up_to_sign():
    X = _gapped()
    Y = principal_coordinates(X, 6, seed=3)
    u, s, _ = np.linalg.svd(X - X.mean(0), full_matrices=False)
    exact = u[:, :6] * s[:6]
    assert Y.shape == (400, 6)
    assert np.allclose(Y, exact * np.sign((Y * exact).sum(0)), rtol=0, atol=1e-8)
    assert np.allclose(Y.mean(0), 0, atol=1e-9)                                  # centred


def test_principal_coordinates_sparse_operator_and_determinism():
    X = sp.random(500, 300, density=0.03, format='csr', random_state=1)
    dense = principal_coordinates(X.toarray(), 12, seed=7)
    assert np.allclose(principal_coordinates(X, 12, seed=7), dense, rtol=0, atol=1e-9)
    assert np.allclose(principal_coordinates(X.tocsc(), 12, seed=7), dense, rtol=0, atol=1e-9)
    assert np.allclose(principal_coordinates(_NoDense(X), 12, seed=7), dense, rtol=0, atol=1e-9)   # never densified
    by_vectors = LinearOperator(X.shape, matvec=lambda v: X @ v, rmatvec=lambda v: X.T @ v, dtype=np.float64)
    assert np.allclose(principal_coordinates(by_vectors, 12, seed=7), dense, rtol=0, atol=1e-9)
    assert np.allclose(principal_coordinates(aslinearoperator(X), 12, seed=7), dense, rtol=0, atol=1e-9)
    assert np.array_equal(principal_coordinates(X, 12, seed=7), principal_coordinates(X, 12, seed=7))
    with pytest.raises(TypeError, match='rmatvec'):
        principal_coordinates(LinearOperator((5, 4), matvec=lambda v: np.zeros(5), dtype=np.float64), 2)
    with pytest.raises(ValueError, match='dim'):
        principal_coordinates(X, 0)


def test_cluster_dim_none_is_the_full_space_and_narrow_data_is_kept():
    X = _gapped(n=300, d=80, noise=0.5)
    pooled = clusterings(X, hierarchical=False, kmeans_clusters=(4,), kmeans_n_init=1, cluster_dim=None)
    raw = KMeans(4, n_init=1, random_state=_derived_seed(0, 4)).fit(X).labels_
    assert [list(c) for c in pooled] == [list(np.flatnonzero(raw == j)) for j in range(4)]
    reduced = kmeans_labels(principal_coordinates(X, 10, seed=0), 4, n_init=1, cluster_dim=None)
    assert np.array_equal(kmeans_labels(X, 4, n_init=1, cluster_dim=10), reduced)
    assert np.array_equal(kmeans_labels(X[:, :10], 4, n_init=1, cluster_dim=10),     # <= cluster_dim columns: as is
                          kmeans_labels(X[:, :10], 4, n_init=1, cluster_dim=None))
    assert CLUSTER_DIM == 50


def test_rng_order_unchanged_by_the_reduction():
    x, labels, grads, fixed, infl = _synthetic(n=402, d=70, p=90, t=2, classes=3)
    seed, kw = 3, dict(num_subsets=6, kmeans_n_init=1, hierarchical_max_n=200)
    tags, groups = pick_subsets(x, labels, grads, fixed, infl, subset_seed=seed, cluster_dim=8, **kw)
    sizes = requested_sizes(402, num_subsets=6)
    rng = np.random.RandomState(seed)
    ckw = dict(seed=seed, kmeans_n_init=1, hierarchical_max_n=200, cluster_dim=8)
    parts = [random_groups(rng, 402, sizes), random_same_class_groups(rng, labels, sizes),
             influence_tail_groups(rng, fixed, infl, 6),
             cluster_groups(rng, clusterings(x, **ckw), sizes, 'same_features'),
             cluster_groups(rng, clusterings(grads, **ckw), sizes, 'same_grad'), feature_window_groups(rng, x, sizes)]
    assert tags == sum((t for t, _ in parts), [])
    assert all(np.array_equal(a, b) for a, b in zip(groups, sum((g for _, g in parts), [])))
    full = pick_subsets(x, labels, grads, fixed, infl, subset_seed=seed, cluster_dim=None, **kw)
    n0 = tags.index('same_features')                                              # before the clusters: identical
    assert all(np.array_equal(a, b) for a, b in zip(groups[:n0], full[1][:n0]))


def test_pick_subsets_csr_features_and_operator_gradients():
    rng = np.random.RandomState(0)
    n, d = 600, 200
    labels = np.repeat(np.arange(3), n // 3)
    p = 0.03 + 0.2 * (np.arange(d)[None, :] // 67 == labels[:, None])              # each class has its own columns
    xd = (rng.rand(n, d) < p).astype(float)
    xs = sp.csr_matrix(xd)
    grads = rng.randn(n, 90) + labels[:, None]
    fixed, infl = np.arange(3), rng.standard_t(3, size=(3, n))
    kw = dict(num_subsets=8, kmeans_n_init=2)
    tags, groups = pick_subsets(_NoDense(xs), labels, grads, fixed, infl, **kw)   # CSR, never densified
    types = [simplified_tag(t) for t in tags]
    assert types.count('same_features') == types.count('same_grad') == types.count('feature_window') == 8
    assert all(g.dtype == np.int64 and np.all(np.diff(g) > 0) and g[0] >= 0 and g[-1] < n for g in groups)
    dense = pick_subsets(xd, labels, grads, fixed, infl, **kw)
    assert dense[0] == tags
    n0 = tags.index('same_features')
    assert all(np.array_equal(a, b) for a, b in zip(dense[1][:n0], groups[:n0]))
    same_f = [g for t, g in zip(tags, groups) if t == 'same_features']
    assert np.mean([np.bincount(labels[g], minlength=3).max() / len(g) for g in same_f]) > 0.6   # coherent: one class
    op = pick_subsets(xs, labels, aslinearoperator(grads), fixed, infl, **kw)
    assert op[0] == tags and all(len(a) == len(b) for a, b in zip(op[1], groups))
    with pytest.raises(ValueError, match='train_grad_loss is a LinearOperator'):
        pick_subsets(xs, labels, aslinearoperator(grads), fixed, infl, cluster_dim=None, **kw)
    with pytest.raises(ValueError, match='train_grad_loss has 599 rows'):
        pick_subsets(xs, labels, aslinearoperator(grads[:-1]), fixed, infl, **kw)
    bad = xs.copy(); bad.data[0] = np.nan
    with pytest.raises(ValueError, match='x contains non-finite'):
        pick_subsets(bad, labels, grads, fixed, infl, **kw)
    with pytest.raises(TypeError, match='x must be a dense array or a scipy sparse'):
        pick_subsets(aslinearoperator(xd), labels, grads, fixed, infl, **kw)


def test_feature_windows_on_sparse_arrays():
    xb = (np.random.RandomState(2).rand(300, 40) < 0.1).astype(float)
    ref = feature_window_groups(np.random.RandomState(5), xb, [10, 50, 300])
    for X in (sp.csr_matrix(xb), sp.csr_array(xb), sp.csc_matrix(xb), sp.coo_matrix(xb)):
        got = feature_window_groups(np.random.RandomState(5), X, [10, 50, 300])
        assert got[0] == ref[0] and all(np.array_equal(a, b) for a, b in zip(got[1], ref[1]))
