"The paper-shaped synthetic datasets: registered shapes, types, value ranges, determinism, and small sizes."
import numpy as np
import pytest
import scipy.sparse

import groupinf.data as gd
import groupinf.datasets.shapes as S
from datasets_fixtures import no_internet  # noqa: F401  (autouse: no network in tests)

SHAPES = {"spam_shaped": (4137, 0, 1035, 8000, 2), "mnist_shaped": (55000, None, 10000, 784, 10),
          "mnist_small_shaped": (5500, None, 10000, 784, 10), "animals_shaped": (9000, None, 3000, 2048, 10)}


def test_registered_with_the_paper_shapes():
    df = gd.list_datasets().set_index("dataset_id")
    for k, shapes in SHAPES.items():
        info = gd.dataset_info(k)
        assert info.family == "shapes" and info.shapes == shapes and info.files == ()
        assert "synthetic stand-in with the shape of the paper's" in info.notes
        assert df.loc[k, "available_offline"]


def test_categorical_draws():
    rng = np.random.default_rng(0)
    p = np.array([[0.2, 0.0, 0.8], [1.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    draws = S._categorical(rng, S._cumulative(p), np.repeat([0, 1, 2], 20_000)).reshape(3, -1)
    assert set(np.unique(draws[1])) == {0} and set(np.unique(draws[2])) == {2}
    assert abs((draws[0] == 0).mean() - 0.2) < 0.01 and not (draws[0] == 1).any()


def test_spam_shaped_full_size():
    d = gd.load_dataset("spam_shaped", seed=0)
    assert (d.train.x.shape, d.validation.x.shape, d.test.x.shape) == ((4137, 8000), (0, 8000), (1035, 8000))
    for s in (d.train, d.validation, d.test):
        assert isinstance(s.x, scipy.sparse.csr_matrix) and s.x.dtype == np.float64 and s.labels.dtype == np.int64
    x = scipy.sparse.vstack([d.train.x, d.test.x]).tocsr()
    assert (x.data >= 1).all() and (x.data == np.round(x.data)).all()          # word counts
    assert 0.008 < x.nnz / np.prod(x.shape) < 0.015                             # about 1 % non-zero
    assert d.train.labels.sum() + d.test.labels.sum() == 1500                   # Enron1: 1,500 spam of 5,172
    assert len(d.meta["feature_names"]) == 8000
    again = gd.load_dataset("spam_shaped")                                       # seed 0 by default
    assert (again.train.x != d.train.x).nnz == 0 and (again.test.labels == d.test.labels).all()


def test_spam_shaped_is_learnable_but_not_separable():
    from sklearn.linear_model import LogisticRegression
    d = S.make_spam_shaped(0)
    m = LogisticRegression(C=1 / (1e-3 * d.train.num_examples), max_iter=1000).fit(d.train.x, d.train.labels)
    assert 0.9 < m.score(d.test.x, d.test.labels) < 0.99


def test_spam_shaped_small_sizes_and_seeds():
    a, b, c = (S.make_spam_shaped(s, 200, 60, 400) for s in (5, 5, 6))
    assert (a.train.x.shape, a.test.x.shape) == ((200, 400), (60, 400))
    assert (a.train.x != b.train.x).nnz == 0 and (a.test.x != b.test.x).nnz == 0
    assert (a.train.labels == b.train.labels).all()
    assert a.train.x.shape != c.train.x.shape or (a.train.x != c.train.x).nnz > 0
    assert a.train.labels.sum() + a.test.labels.sum() == round(260 * 1500 / 5172)


def test_mnist_shaped_small_sizes():
    a, b, c = S.make_mnist_shaped(0, 300, 100), S.make_mnist_shaped(0, 300, 100), S.make_mnist_shaped(1, 300, 100)
    assert (a.train.x.shape, a.test.x.shape, a.validation) == ((300, 784), (100, 784), None)
    for s in (a.train, a.test):
        assert isinstance(s.x, np.ndarray) and s.x.dtype == np.float64 and s.labels.dtype == np.int64
        assert s.x.min() == 0 and s.x.max() <= 1 and np.allclose(s.x * 255, np.round(s.x * 255))
    m5 = gd.load_dataset("mnist_5k")
    assert (a.train.labels == m5.train.labels[a.meta["source_train"]]).all()
    assert (a.test.labels == m5.test.labels[a.meta["source_test"]]).all()
    assert (a.train.x != m5.train.x[a.meta["source_train"]]).any(1).all()       # every row is perturbed
    assert np.array_equal(a.train.x, b.train.x) and np.array_equal(a.test.x, b.test.x)
    assert (a.train.x != c.train.x).any(1).all()
    part = S.make_mnist_shaped(0, 300, 100, train_rows=[299, 5, 150])             # rows generated alone
    assert np.array_equal(part.train.x, a.train.x[[299, 5, 150]])
    with pytest.raises(ValueError, match="rows"): S.make_mnist_shaped(0, 300, 10, train_rows=[300])


def test_mnist_small_shaped_mirrors_mnist_small():
    d = gd.load_dataset("mnist_small_shaped", seed=0)
    assert (d.train.x.shape, d.test.x.shape, d.validation) == ((5500, 784), (10000, 784), None)
    perm = np.arange(55000); np.random.RandomState(0).shuffle(perm)              # as mnist_small chooses its rows
    assert (d.meta["train_rows"] == perm[:5500]).all()
    same = S.make_mnist_shaped(0, train_rows=perm[:40])                             # the same rows of mnist_shaped
    assert np.array_equal(d.train.x[:40], same.train.x) and (d.train.labels[:40] == same.train.labels).all()
    assert np.array_equal(d.test.x, same.test.x) and (d.test.labels == same.test.labels).all()
    assert np.bincount(d.train.labels, minlength=10).min() > 400


def test_animals_shaped():
    d = gd.load_dataset("animals_shaped", seed=0)
    assert (d.train.x.shape, d.test.x.shape, d.validation) == ((9000, 2048), (3000, 2048), None)
    assert np.bincount(d.train.labels).tolist() == [900] * 10 and np.bincount(d.test.labels).tolist() == [300] * 10
    assert d.train.x.dtype == np.float64 and d.train.labels.dtype == np.int64
    assert (d.train.x >= 0).all() and 0.1 < (d.train.x == 0).mean() < 0.7
    small = S.make_animals_shaped(0, 10, 300)
    assert np.array_equal(small.test.x, d.test.x)                                 # test split independent of n_train
    a, b = S.make_animals_shaped(2, 10, 5), S.make_animals_shaped(3, 10, 5)
    assert np.array_equal(a.train.x, S.make_animals_shaped(2, 10, 5).train.x) and not np.allclose(a.train.x, b.train.x)
