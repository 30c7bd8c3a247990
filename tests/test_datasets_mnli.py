"MultiNLI loader and supplements on a small bundle in the layout of the authors' CodaLab upload."
import numpy as np
import pytest

import groupinf.data as gd
import groupinf.datasets.mnli as MN
from datasets_fixtures import ANNOTATOR_JSONL, no_internet, serve, tar_folder, write_mnli_bundle  # noqa: F401


@pytest.fixture
def bundle(tmp_path, monkeypatch):
    out = write_mnli_bundle(tmp_path / "b")
    serve(monkeypatch, MN, "MNLI_BUNDLE", tar_folder(tmp_path / "bundle.tar.gz", tmp_path / "b"))
    return out


def test_mnli_and_supplements(bundle, tmp_path):
    dd = tmp_path / "data"
    d = gd.load_dataset("mnli", data_dir=dd)
    tr, te, nfb = bundle["train"], bundle["dev_matched"], bundle["dev_mismatched"]
    assert (d.train.num_examples, d.validation.num_examples, d.test.num_examples) == (24, 0, 9)
    assert d.train.num_features == d.validation.num_features == d.test.num_features == 600
    assert np.array_equal(d.train.x, tr["x"][:, :600]) and d.test.labels.tolist() == te["y"].tolist()
    assert d.train.x.dtype == np.float64 and d.train.labels.dtype == np.int64
    nf = gd.load_supplement("mnli_nonfires", data_dir=dd)
    assert np.array_equal(nf.x, nfb["x"][:, :600]) and nf.labels.tolist() == nfb["y"].tolist()
    g = gd.load_supplement("mnli_genres", data_dir=dd)
    assert [list(a) for a in g] == [list(tr["genres"]), [], list(te["genres"])]
    assert list(gd.load_supplement("mnli_nonfires_genres", data_dir=dd)) == list(nfb["genres"])
    ids = gd.load_supplement("mnli_ids", data_dir=dd)
    assert [list(a) for a in ids] == [tr["ids"], [], te["ids"]]
    assert list(gd.load_supplement("mnli_nonfires_ids", data_dir=dd)) == nfb["ids"]
    assert len(ids[0]) == d.train.num_examples and len(g[2]) == d.test.num_examples
    assert np.unique(ids[0], return_inverse=True)[1].shape == (24,)   # how credit assignment groups crowdworkers
    for p in (dd / "multinli_1.0").glob("mnli_annotators_*.npz"):
        with np.load(p, allow_pickle=False) as z: assert z["ids"].dtype.kind == "U"


def test_bundle_with_wrong_layout_and_missing_files(tmp_path, monkeypatch):
    write_mnli_bundle(tmp_path / "b")
    serve(monkeypatch, MN, "MNLI_BUNDLE", tar_folder(tmp_path / "nested.tar.gz", tmp_path / "b", arc_prefix="multinli_1.0/"))
    with pytest.raises(gd.DataError, match="expected layout"): MN.load_mnli(tmp_path / "data")
    own = tmp_path / "own" / "multinli_1.0"; own.mkdir(parents=True)
    (tmp_path / "b" / "mnli.npz").rename(own / "mnli.npz")
    monkeypatch.setattr(gd, "_urlopen", lambda *a: pytest.fail("must not download"))
    assert MN.load_mnli(tmp_path / "own").train.num_examples == 24        # a hand-placed file is used as it is
    with pytest.raises(gd.DataUnavailableError, match="mnli_genres.npz is missing"): MN.load_mnli_genres(tmp_path / "own")


def test_offline_and_bad_annotator_file(tmp_path):
    with pytest.raises(gd.DataUnavailableError) as e: MN.load_mnli(tmp_path)
    assert "0x5258e3771b974983abfb10bfa75e207d" in str(e.value)
    (tmp_path / "a.jsonl").write_text('{"sentence2_author": "A1"}\n{"genre": "x"}\n')
    with pytest.raises(gd.DataError, match="line 2: no sentence2_author"): MN.read_annotators(tmp_path / "a.jsonl")
