"Dogfish and animals loaders on small Inception-feature .npz files."
import numpy as np
import pytest

import groupinf.data as gd
import groupinf.datasets.inception as I
from datasets_fixtures import no_internet, serve, write_inception  # noqa: F401


@pytest.fixture
def feats(tmp_path, monkeypatch):
    out = {"dogfish": write_inception(tmp_path / "srv", "dogfish", 10, 4, 2),
           "animals": write_inception(tmp_path / "srv", "animals", 20, 10, 10, seed=1)}
    for k, f in I.INCEPTION_FILES.items():
        serve(monkeypatch, I, "INCEPTION_FILES", tmp_path / "srv" / f.path.split("/")[-1], key=k)
    return out


@pytest.mark.parametrize("name,k", [("dogfish", 2), ("animals", 10)])
def test_end_to_end(feats, tmp_path, name, k):
    d = gd.load_dataset(name, data_dir=tmp_path / "data")
    (xtr, ytr), (xte, _yte) = feats[name]["train"], feats[name]["test"]
    assert d.validation is None and d.num_classes == k and d.train.num_features == 2048
    assert np.array_equal(d.train.x, xtr) and np.array_equal(d.test.x, xte)
    assert d.train.labels.dtype == np.int64 and d.train.labels.tolist() == ytr.astype(int).tolist()
    assert d.meta["class_names"][:2] == (["dog", "fish"] if name == "dogfish" else ["dog", "cat"])
    assert sorted(p.name for p in (tmp_path / "data" / "processed_animals").iterdir() if not p.name.endswith(".digests.json")) == \
        sorted(f"{name}_900_300_inception_features_{s}.npz" for s in ("test", "train"))


def test_present_files_not_downloaded(tmp_path, monkeypatch):
    write_inception(tmp_path / "data" / "processed_animals", "dogfish", 6, 2, 2)
    monkeypatch.setattr(gd, "_urlopen", lambda *a: pytest.fail("must not download"))
    assert I.load_dogfish(tmp_path / "data").train.num_examples == 6


def test_errors(tmp_path):
    with pytest.raises(gd.DataUnavailableError) as e: I.load_animals(tmp_path)
    assert "mitra.stanford.edu/kundaje/pangwei/animals_900_300_inception_features_train.npz" in str(e.value)
    assert str(tmp_path / "processed_animals" / "animals_900_300_inception_features_train.npz") in str(e.value)
    np.savez(tmp_path / "f.npz", inception_features_val=np.zeros((2, 3)), labels=np.array([0.5, 1]))
    with pytest.raises(gd.DataError, match="not class indices"): I.read_inception_npz(tmp_path / "f.npz")
