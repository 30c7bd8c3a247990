"The Diabetes (hospital) loader on small files in the real dataset_diabetes.zip format."
import io, zipfile

import numpy as np
import pandas as pd
import pytest

import groupinf.data as gd
import groupinf.datasets.hospital as H
from datasets_fixtures import (COUNTS, DIABETES_LEVELS, diabetes_frame, no_internet, serve,  # noqa: F401
                               write_diabetes_zip)


@pytest.fixture
def hosp_zip(tmp_path, monkeypatch):
    z = write_diabetes_zip(tmp_path / "dataset_diabetes.zip")
    serve(monkeypatch, H, "HOSPITAL_ZIP", z)
    return z


def expected_split(y, k, seed=2):
    rng = np.random.RandomState(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    rng.shuffle(pos); rng.shuffle(neg)
    tr, te = np.r_[pos[:k], neg[:k]], np.r_[pos[k:], neg[k:]]
    rng.shuffle(tr); rng.shuffle(te)
    return tr, te


def test_end_to_end_shapes_labels_split(hosp_zip, tmp_path):
    d = gd.load_dataset("hospital", data_dir=tmp_path / "data", n_train_per_class=12)
    frame = diabetes_frame()
    y = (frame.readmitted == "<30").to_numpy().astype(int)
    tr, te = expected_split(y, 12)
    assert d.validation is None and d.num_classes == 2
    assert d.train.num_features == 127
    assert (d.train.num_examples, d.test.num_examples) == (24, 90 - 24)
    assert d.train.labels.tolist() == y[tr].tolist() and d.test.labels.tolist() == y[te].tolist()
    assert d.train.x.dtype == np.float64 and d.train.labels.dtype == np.int64
    # counts first, in CSV order of rows
    assert d.train.x[:, :8].tolist() == frame[COUNTS].to_numpy()[tr].astype(float).tolist()
    # every one-hot block: one indicator per sorted level, first level dropped for 2-level columns
    names = d.meta["feature_names"]
    col = 8
    spec_order = ("gender, race, age, discharge_disposition_id, max_glu_serum, A1Cresult, metformin, repaglinide, "
                  "nateglinide, chlorpropamide, glimepiride, acetohexamide, glipizide, glyburide, tolbutamide, "
                  "pioglitazone, rosiglitazone, acarbose, miglitol, troglitazone, tolazamide, examide, citoglipton, "
                  "insulin, glyburide-metformin, glipizide-metformin, glimepiride-pioglitazone, "
                  "metformin-rosiglitazone, metformin-pioglitazone, change, diabetesMed").split(", ")
    for c in spec_order:
        levels = DIABETES_LEVELS[c]
        keep = sorted(levels)[1:] if len(levels) == 2 else sorted(levels)
        assert names[col: col + len(keep)] == [f"{c}_{v}" for v in keep], c
        block = d.test.x[:, col: col + len(keep)]
        assert block.tolist() == (frame[c].to_numpy()[te, None] == np.array(keep, dtype=object)[None]).astype(float).tolist()
        col += len(keep)
    assert col == 127


def test_none_strings_are_a_category(hosp_zip, tmp_path):
    d = H.load_hospital(tmp_path / "data", n_train_per_class=12)
    assert {"max_glu_serum_None", "A1Cresult_None", "race_?"} <= set(d.meta["feature_names"])
    # what pandas >= 2 does by default: 'None' becomes NaN and the width drops to 125
    with zipfile.ZipFile(hosp_zip) as z: naive = pd.read_csv(io.BytesIO(z.read("dataset_diabetes/diabetic_data.csv")))
    assert naive["max_glu_serum"].isna().any() and naive["A1Cresult"].isna().any()
    naive_x, _ = H.hospital_features(naive.assign(**{c: naive[c].astype(str) for c in ["gender"]}))
    assert naive_x.shape[1] == 125


def test_full_size_split_shapes(tmp_path, monkeypatch):
    "With the real number of rows and of '<30' labels, the split has the paper's sizes."
    n, n_pos = 101766, 11357
    rng = np.random.RandomState(1)
    base = diabetes_frame(n=90)
    frame = base.iloc[np.arange(n) % 90].reset_index(drop=True)
    labels = np.array(["NO"] * n, dtype=object)
    labels[rng.choice(n, n_pos, replace=False)] = "<30"
    labels[(labels == "NO") & (rng.rand(n) < 0.39)] = ">30"
    frame["readmitted"] = labels
    serve(monkeypatch, H, "HOSPITAL_ZIP", write_diabetes_zip(tmp_path / "big.zip", frame))
    d = H.load_hospital(tmp_path / "data")
    assert (d.train.num_examples, d.test.num_examples, d.train.num_features) == (20000, 81766, 127)
    assert np.bincount(d.train.labels).tolist() == [10000, 10000]
    assert np.bincount(d.test.labels).tolist() == [80409, 1357]


def test_cache_is_used_and_keyed(hosp_zip, tmp_path, monkeypatch):
    a = H.load_hospital(tmp_path / "data", n_train_per_class=12)
    monkeypatch.setattr(H, "read_diabetic_csv", lambda p: pytest.fail("cache not used"))
    b = H.load_hospital(tmp_path / "data", n_train_per_class=12)
    assert np.array_equal(a.train.x, b.train.x)
    monkeypatch.undo()
    monkeypatch.setattr(gd, "_urlopen", lambda *a: pytest.fail("downloaded again"))
    H.load_hospital(tmp_path / "data", n_train_per_class=10, seed=3)
    assert len(list((tmp_path / "data" / "hospital").glob("hospital-*.npz"))) == 2
    with np.load(next((tmp_path / "data" / "hospital").glob("hospital-*.npz")), allow_pickle=False) as z:
        assert "x_train" in z.files


def test_extracted_csv_is_used_without_download(tmp_path, monkeypatch):
    monkeypatch.setattr(gd, "_urlopen", lambda *a: pytest.fail("must not download"))
    p = tmp_path / "data" / "hospital" / "dataset_diabetes"; p.mkdir(parents=True)
    diabetes_frame().to_csv(p / "diabetic_data.csv", index=False)
    assert H.load_hospital(tmp_path / "data", n_train_per_class=12).train.num_features == 127


def test_offline_error(tmp_path):
    with pytest.raises(gd.DataUnavailableError) as e: gd.load_dataset("hospital", data_dir=tmp_path)
    msg = str(e.value)
    assert H.HOSPITAL_ZIP.url in msg and str(tmp_path / "hospital" / "dataset_diabetes.zip") in msg
    assert str(tmp_path / "hospital" / "dataset_diabetes" / "diabetic_data.csv") in msg and "\n" not in msg


def test_bad_inputs(hosp_zip, tmp_path):
    with pytest.raises(gd.DataError, match="only 30 positives"): H.load_hospital(tmp_path / "d", n_train_per_class=31)
    bad = tmp_path / "bad.csv"; bad.write_text("a,b\n1,2\n")
    with pytest.raises(gd.DataError, match="lacks the columns"): H.read_diabetic_csv(bad)
