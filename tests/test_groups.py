"""Tests of the group samplers beyond the notebook: paper-scale counts, edge cases, fresh-process determinism."""
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from groupinf.groups import (GROUP_TYPES, cluster_groups, clusterings, feature_window_groups, group_indicator,
                             groups_by_value, hierarchical_labels, influence_tail_groups, pad_groups, pick_subsets,
                             requested_sizes, simplified_tag, tail_phase_sizes, tail_window, unpad_groups)


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
