"CDR (Babble Labble) loaders, supplements and the L1 'babble reduce' on a small SQLite database."
import sqlite3, warnings

import numpy as np
import pytest

import groupinf.data as gd
import groupinf.datasets.cdr as CD
from datasets_fixtures import no_internet, read_babble_rows, serve, write_babble_db  # noqa: F401


@pytest.fixture
def db(tmp_path, monkeypatch):
    path = write_babble_db(tmp_path / "cdr.db")
    serve(monkeypatch, CD, "CDR_DB", path)
    return read_babble_rows(path)


def dense(feature_rows, cid, F):
    r = np.zeros(F)
    for v, c, k in feature_rows:
        if c == cid: r[k - 1] = v
    return r


def test_cdr_rows_labels_weights_lfs(db, tmp_path):
    d = gd.load_dataset("cdr", data_dir=tmp_path / "data")
    F = max(k for _, _, k in db["feature"])
    fired = {}
    for _, c, _ in db["label"]: fired[c] = fired.get(c, 0) + 1
    w = gd.load_supplement("cdr_weights", data_dir=tmp_path / "data")
    lfs = gd.load_supplement("cdr_LFs", data_dir=tmp_path / "data")
    for s, split in enumerate((d.train, d.validation)):
        rows = [r for r in db["label"] if db["split"][r[1]] == s]
        assert split.x.format == "csr" and split.x.shape == (len(rows), F)
        assert split.x.toarray().tolist() == [dense(db["feature"], c, F).tolist() for _, c, _ in rows]
        assert split.labels.tolist() == [(v + 1) // 2 for v, _, _ in rows]
        assert w[s].tolist() == [1 / fired[c] for _, c, _ in rows]
        assert lfs[s].tolist() == [k for _, _, k in rows]
    assert lfs[2].tolist() == [k for _, c, k in db["label"] if db["split"][c] == 2]
    test_ids = sorted(c for c, s in db["split"].items() if s == 2)
    gold = {c: v for v, c in db["gold"]}
    assert d.test.x.format == "csr" and d.test.x.toarray().tolist() == [dense(db["feature"], c, F).tolist() for c in test_ids]
    assert d.test.labels.tolist() == [(gold[c] + 1) // 2 for c in test_ids] and w[2].tolist() == [1.0] * len(test_ids)
    assert d.meta["test_candidate_ids"].tolist() == test_ids
    assert d.train.labels.dtype == np.int64 and d.num_classes == 2


def test_nonfires_and_labeling_info(db, tmp_path):
    nf = gd.load_supplement("cdr_nonfires", data_dir=tmp_path / "data")
    fired = {c for _, c, _ in db["label"]}
    F = max(k for _, _, k in db["feature"])
    expect = [(v, c) for v, c in db["gold"] if c not in fired]
    assert len(expect) > 0 and nf.labels.tolist() == [(v + 1) // 2 for v, _ in expect]
    assert nf.x.format == "csr" and nf.x.toarray().tolist() == [dense(db["feature"], c, F).tolist() for _, c in expect]
    labels, gold = gd.load_supplement("reduced_cdr_labeling_info", data_dir=tmp_path / "data")
    assert labels.tolist() == [list(r) for r in db["label"]]
    assert gold.tolist() == sorted([list(r) for r in db["gold"]], key=lambda r: r[1])
    assert len(list((tmp_path / "data" / "babble").glob("cdr-*.npz"))) == 1


def test_babble_reduce_matches_liblinear(db, tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score
    full = CD.load_cdr(tmp_path / "data")
    w = CD.load_cdr_weights(tmp_path / "data")
    red = gd.load_dataset("reduced_cdr", data_dir=tmp_path / "data")
    res = gd.load_supplement("babble_reduce", data_dir=tmp_path / "data")
    n = full.train.num_examples
    assert np.allclose(res["regs"], np.logspace(np.log10(1e-4 * n), np.log10(1e-1 * n), 10))
    rs = np.random.RandomState(1)
    f1 = []
    for i, reg in enumerate(res["regs"]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            l1 = dict(l1_ratio=1.0) if LogisticRegression().get_params()["penalty"] == "deprecated" else dict(penalty="l1")
            m = LogisticRegression(solver="liblinear", C=1 / reg, random_state=rs, **l1)
            m.fit(full.train.x, full.train.labels, sample_weight=w[0])
        assert np.allclose(m.coef_[0], res["coefs"][i], atol=1e-12)
        assert res["nonzeros"][i] == (m.coef_ != 0).sum() + (m.intercept_[0] != 0)
        assert np.isclose(res["accs"][2, i], m.score(full.test.x, full.test.labels))
        f1.append(f1_score(full.validation.labels, m.predict(full.validation.x), sample_weight=w[1], zero_division=0))
    best = int(np.argmax(f1))
    assert int(res["best_i"]) == best
    keep = np.flatnonzero(res["coefs"][best])
    assert res["feature_inds"].tolist() == keep.tolist() and 0 < len(keep) < full.train.num_features
    assert red.train.x.tolist() == full.train.x[:, keep].toarray().tolist()
    assert red.validation.x.shape == (full.validation.num_examples, len(keep))
    assert red.test.labels.tolist() == full.test.labels.tolist()
    rnf = gd.load_supplement("reduced_cdr_nonfires", data_dir=tmp_path / "data")
    assert rnf.x.tolist() == CD.load_cdr_nonfires(tmp_path / "data").x[:, keep].toarray().tolist()
    assert isinstance(red.train.x, np.ndarray) and red.train.x.dtype == np.float64
    assert [len(a) for a in gd.load_supplement("reduced_cdr_weights", data_dir=tmp_path / "data")] == \
        [red.train.num_examples, red.validation.num_examples, red.test.num_examples]


def test_present_db_not_downloaded(tmp_path, monkeypatch):
    (tmp_path / "data" / "babble").mkdir(parents=True)
    write_babble_db(tmp_path / "data" / "babble" / "cdr.db")
    monkeypatch.setattr(gd, "_urlopen", lambda *a: pytest.fail("must not download"))
    assert CD.load_cdr(tmp_path / "data").test.num_examples == 12


def test_offline_and_bad_databases(tmp_path):
    with pytest.raises(gd.DataUnavailableError) as e: CD.load_cdr(tmp_path)
    assert "0x38e021ee339a4f6aa21d9c4a16c1b7ee" in str(e.value) and str(tmp_path / "babble" / "cdr.db") in str(e.value)
    path = write_babble_db(tmp_path / "a.db")
    con = sqlite3.connect(path); con.execute("UPDATE label SET value = 0 WHERE rowid = 1"); con.commit(); con.close()
    with pytest.raises(gd.DataError, match="values must be -1 or \\+1"): CD.cdr_arrays(CD.read_babble_tables(path))
    path = write_babble_db(tmp_path / "b.db")
    con = sqlite3.connect(path); con.execute("DELETE FROM gold_label WHERE candidate_id = (SELECT max(id) FROM candidate)"); con.commit(); con.close()
    with pytest.raises(gd.DataError, match="has no gold label"): CD.cdr_arrays(CD.read_babble_tables(path))
    path = write_babble_db(tmp_path / "c.db")
    con = sqlite3.connect(path); con.execute("INSERT INTO label VALUES (1, 99999, 1)"); con.commit(); con.close()
    with pytest.raises(gd.DataError, match="candidate 99999"): CD.cdr_arrays(CD.read_babble_tables(path))
    con = sqlite3.connect(tmp_path / "d.db"); con.execute("CREATE TABLE candidate (id INTEGER, split INTEGER)"); con.commit(); con.close()
    with pytest.raises(gd.DataError, match="no such table: label"): CD.read_babble_tables(tmp_path / "d.db")
