"""Small files in the real formats of the paper's datasets, written from scratch for the loader tests.

Nothing here imports groupinf: the writers follow the published file formats, so that a loader and its fixture
cannot share a misunderstanding. `serve(monkeypatch, module, attr, path)` points a loader's RemoteFile at a local
`file://` URL, and the autouse fixture `no_internet` makes any non-`file://` download fail like an offline machine.
"""
import gzip, io, json, pickle, sqlite3, struct, tarfile, urllib.error, zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest


@pytest.fixture(autouse=True)
def no_internet(monkeypatch):
    "Only file:// URLs can be opened: the tests never touch the network."
    import groupinf.data as gd
    real = gd._urlopen
    def guarded(url, timeout):
        if not url.startswith("file:"): raise urllib.error.URLError("network disabled in tests")
        return real(url, timeout)
    monkeypatch.setattr(gd, "_urlopen", guarded)


def serve(monkeypatch, module, attr, path, key=None, **changes):
    "Point `module.attr` (or `module.attr[key]`) at the local file `path`, without mirrors."
    target = getattr(module, attr)
    old = target if key is None else target[key]
    new = replace(old, url=Path(path).as_uri(), mirrors=(), **changes)
    if key is None: monkeypatch.setattr(module, attr, new)
    else: monkeypatch.setitem(target, key, new)
    return new


# ---------------------------------------------------------------- Diabetes 130-US hospitals (dataset_diabetes.zip)
DIABETES_COLUMNS = (
    "encounter_id,patient_nbr,race,gender,age,weight,admission_type_id,discharge_disposition_id,admission_source_id,"
    "time_in_hospital,payer_code,medical_specialty,num_lab_procedures,num_procedures,num_medications,"
    "number_outpatient,number_emergency,number_inpatient,diag_1,diag_2,diag_3,number_diagnoses,max_glu_serum,"
    "A1Cresult,metformin,repaglinide,nateglinide,chlorpropamide,glimepiride,acetohexamide,glipizide,glyburide,"
    "tolbutamide,pioglitazone,rosiglitazone,acarbose,miglitol,troglitazone,tolazamide,examide,citoglipton,insulin,"
    "glyburide-metformin,glipizide-metformin,glimepiride-pioglitazone,metformin-rosiglitazone,"
    "metformin-pioglitazone,change,diabetesMed,readmitted").split(",")
COUNTS = ["time_in_hospital", "num_lab_procedures", "num_procedures", "num_medications", "number_outpatient",
          "number_emergency", "number_inpatient", "number_diagnoses"]
_DRUG4 = ["Down", "No", "Steady", "Up"]
DIABETES_LEVELS = {
    "gender": ["Female", "Male", "Unknown/Invalid"],
    "race": ["?", "AfricanAmerican", "Asian", "Caucasian", "Hispanic", "Other"],
    "age": ["[0-10)", "[10-20)", "[20-30)", "[30-40)", "[40-50)", "[50-60)", "[60-70)", "[70-80)", "[80-90)", "[90-100)"],
    "discharge_disposition_id": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 22, 23, 24, 25, 27, 28],
    "max_glu_serum": [">200", ">300", "None", "Norm"], "A1Cresult": [">7", ">8", "None", "Norm"],
    **{d: _DRUG4 for d in ["metformin", "repaglinide", "nateglinide", "chlorpropamide", "glimepiride", "glipizide",
                            "glyburide", "pioglitazone", "rosiglitazone", "acarbose", "miglitol", "insulin",
                            "glyburide-metformin"]},
    "tolazamide": ["No", "Steady", "Up"],
    **{d: ["No", "Steady"] for d in ["acetohexamide", "tolbutamide", "troglitazone", "glipizide-metformin",
                                      "glimepiride-pioglitazone", "metformin-rosiglitazone", "metformin-pioglitazone"]},
    "examide": ["No"], "citoglipton": ["No"], "change": ["Ch", "No"], "diabetesMed": ["No", "Yes"]}


def diabetes_frame(n=90, seed=0):
    "Rows in the layout of diabetic_data.csv covering every category level; readmitted cycles <30, >30, NO."
    rng = np.random.RandomState(seed)
    rows = []
    for i in range(n):
        r = {c: "?" for c in DIABETES_COLUMNS}
        r.update({c: int(rng.randint(0, 30)) for c in COUNTS})
        r.update({c: v[(i * 7 + j) % len(v)] for j, (c, v) in enumerate(DIABETES_LEVELS.items())})
        r.update(encounter_id=2278392 + i, patient_nbr=8222157 + i, admission_type_id=6, admission_source_id=1,
                 diag_1="250.83", readmitted=["<30", ">30", "NO"][i % 3])
        rows.append(r)
    return pd.DataFrame(rows)[DIABETES_COLUMNS]


def write_diabetes_zip(path, frame=None, inner="dataset_diabetes/"):
    frame = diabetes_frame() if frame is None else frame
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(inner + "diabetic_data.csv", frame.to_csv(index=False))
        z.writestr(inner + "IDs_mapping.csv", "admission_type_id,description\n1,Emergency\n2,Urgent\n")
    return Path(path)


# ---------------------------------------------------------------- Enron-Spam enron1.tar.gz
SPAM_TEMPLATES = ["Subject: cheap meds\nbuy cheaper pills now , best prices guaranteed ! click the link {n}",
                  "Subject: you won\ncongratulations winner , claim your prizes and money today {n}",
                  "Subject: investment\nstocks are rising , invest money now for huge returns caf\xe9 {n}"]
HAM_TEMPLATES = ["Subject: meeting\nthe meetings with the gas traders are moved to monday , please confirm {n}",
                 "Subject: nominations\nattached are the gas nominations for the pipeline , volumes changed {n}",
                 "Subject: re : schedule\nplease review the schedules and contracts before the meeting {n}"]


def enron_texts(n_spam=10, n_ham=15):
    return ({"spam": [SPAM_TEMPLATES[i % 3].format(n=100 + i) for i in range(n_spam)],
             "ham": [HAM_TEMPLATES[i % 3].format(n=500 + i) for i in range(n_ham)]})


def enron_name(c, i):
    owner = "GP" if c == "spam" else "kaminski"
    return f"{i + 1:04d}.200{i % 5}-0{1 + i % 9}-{10 + i % 18}.{owner}.{c}.txt"


def write_enron_tar(path, texts=None, shuffle_members=True):
    "enron1/{spam,ham}/*.txt encoded as Latin-1, added to the tar in a scrambled order."
    texts = enron_texts() if texts is None else texts
    members = [(f"enron1/{c}/{enron_name(c, i)}", t.encode("latin-1")) for c in ("spam", "ham") for i, t in enumerate(texts[c])]
    if shuffle_members: members = [members[i] for i in np.random.RandomState(5).permutation(len(members))]
    members.append(("enron1/Summary.txt", b"Enron1 fixture\n"))
    with tarfile.open(path, "w:gz") as t:
        for name, data in members:
            info = tarfile.TarInfo(name); info.size = len(data); t.addfile(info, io.BytesIO(data))
    return Path(path)


# ---------------------------------------------------------------- MNIST IDX
def write_idx(path, arr):
    arr = np.asarray(arr, np.uint8)
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">I", 2051 if arr.ndim == 3 else 2049))
        f.write(struct.pack(">" + "I" * arr.ndim, *arr.shape))
        f.write(arr.tobytes())
    return Path(path)


def write_mnist(folder, n_train=40, n_test=12, seed=0):
    "The four IDX files; image i has pixel (0, 0) = i so rows can be traced."
    rng = np.random.RandomState(seed)
    folder = Path(folder); folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        imgs = rng.randint(0, 256, size=(n, 28, 28)).astype(np.uint8)
        imgs[:, 0, 0] = np.arange(n) % 256
        labels = rng.randint(0, 10, size=n).astype(np.uint8)
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", imgs)
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)
        out[split] = (imgs, labels)
    return out


# ---------------------------------------------------------------- CIFAR-10 python batches
def write_cifar_tar(path, per_batch=6, n_test=5, seed=0):
    "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta} as protocol-2 pickles with bytes keys."
    rng = np.random.RandomState(seed)
    out = {}
    with tarfile.open(path, "w:gz") as t:
        def add(name, obj):
            data = pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}"); info.size = len(data); t.addfile(info, io.BytesIO(data))
        for name, n in [(f"data_batch_{i}", per_batch) for i in range(1, 6)] + [("test_batch", n_test)]:
            data = rng.randint(0, 256, size=(n, 3072)).astype(np.uint8)
            labels = [int(v) for v in rng.randint(0, 10, size=n)]
            add(name, {b"batch_label": name.encode(), b"labels": labels, b"data": data,
                       b"filenames": [f"{name}_{j}.png".encode() for j in range(n)]})
            out[name] = (data, labels)
        add("batches.meta", {b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog",
                                               b"horse", b"ship", b"truck"], b"num_cases_per_batch": per_batch, b"num_vis": 3072})
        readme = b"<meta HTTP-EQUIV=\"REFRESH\" content=\"0; URL=http://www.cs.toronto.edu/~kriz/cifar.html\">"
        info = tarfile.TarInfo("cifar-10-batches-py/readme.html"); info.size = len(readme); t.addfile(info, io.BytesIO(readme))
    return out


# ---------------------------------------------------------------- Inception features
def write_inception(folder, name, n_train, n_test, n_classes, d=2048, seed=0):
    rng = np.random.RandomState(seed)
    folder = Path(folder); folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = np.abs(rng.normal(size=(n, d))).astype(np.float32)
        y = rng.permutation(np.arange(n) % n_classes).astype(np.float64)   # stored as floats
        np.savez(folder / f"{name}_900_300_inception_features_{split}.npz", inception_features_val=x, labels=y)
        out[split] = (x, y)
    return out


# ---------------------------------------------------------------- Babble Labble CDR sqlite
BABBLE_SCHEMA = """
CREATE TABLE candidate (id INTEGER NOT NULL, type VARCHAR NOT NULL, split INTEGER NOT NULL, PRIMARY KEY (id));
CREATE TABLE label_key (id INTEGER NOT NULL, name VARCHAR, "group" INTEGER, PRIMARY KEY (id));
CREATE TABLE label (value INTEGER, candidate_id INTEGER NOT NULL, key_id INTEGER NOT NULL, PRIMARY KEY (candidate_id, key_id));
CREATE TABLE feature_key (id INTEGER NOT NULL, name VARCHAR, "group" INTEGER, PRIMARY KEY (id));
CREATE TABLE feature (value FLOAT, candidate_id INTEGER NOT NULL, key_id INTEGER NOT NULL, PRIMARY KEY (candidate_id, key_id));
CREATE TABLE gold_label_key (id INTEGER NOT NULL, name VARCHAR, "group" INTEGER, PRIMARY KEY (id));
CREATE TABLE gold_label (value INTEGER, candidate_id INTEGER NOT NULL, key_id INTEGER NOT NULL, PRIMARY KEY (candidate_id, key_id));
"""


def write_babble_db(path, n=(36, 14, 12), n_features=25, n_lfs=6, seed=0):
    "Candidates with sparse features, LF votes from informative features, gold labels for all."
    rng = np.random.RandomState(seed)
    con = sqlite3.connect(path)
    con.executescript(BABBLE_SCHEMA)
    con.executemany("INSERT INTO label_key VALUES (?, ?, 0)", [(k, f"LF_{k}") for k in range(1, n_lfs + 1)])
    con.executemany("INSERT INTO feature_key VALUES (?, ?, 0)", [(k, f"F_{k}") for k in range(1, n_features + 1)])
    con.execute("INSERT INTO gold_label_key VALUES (1, 'gold', 0)")
    splits = np.repeat([0, 1, 2], n)
    for i, s in enumerate(splits):
        cid = 10 + 2 * i                                  # ids need not start at 1 nor be consecutive
        g = 1 if rng.rand() < 0.45 else -1
        con.execute("INSERT INTO candidate VALUES (?, 'chemical_disease', ?)", (cid, int(s)))
        on = set(int(k) for k in rng.choice(np.arange(4, n_features + 1), 3, replace=False))
        if g == 1 and rng.rand() < 0.9: on |= {1, 2}
        if g == -1 and rng.rand() < 0.2: on |= {2}
        if i % 11 == 5: on = set()                        # a candidate without features
        con.executemany("INSERT INTO feature VALUES (1.0, ?, ?)", [(cid, k) for k in sorted(on)])
        if i % 6 != 3:                                    # every 6th candidate: no LF fires (a nonfire)
            for lf in range(1, n_lfs + 1):
                if rng.rand() < (0.75 if lf in on else 0.25):
                    con.execute("INSERT INTO label VALUES (?, ?, ?)", (int(g if rng.rand() < 0.8 else -g), cid, lf))
        con.execute("INSERT INTO gold_label VALUES (?, ?, 1)", (g, cid))
    con.commit(); con.close()
    return Path(path)


def read_babble_rows(path):
    "The raw tables as Python lists, for independent expectations."
    con = sqlite3.connect(path)
    out = dict(label=con.execute("SELECT value, candidate_id, key_id FROM label").fetchall(),
               split=dict(con.execute("SELECT id, split FROM candidate").fetchall()),
               gold=con.execute("SELECT value, candidate_id FROM gold_label").fetchall(),
               feature=con.execute("SELECT value, candidate_id, key_id FROM feature").fetchall())
    con.close()
    return out


# ---------------------------------------------------------------- MultiNLI bundle
ANNOTATOR_JSONL = {"train": "multinli_1.0_train_with_annotators.jsonl",
                   "dev_matched": "multinli_1.0_dev_matched_with_annotators.jsonl",
                   "dev_mismatched": "multinli_1.0_dev_mismatched_with_annotators.jsonl"}


def write_mnli_bundle(folder, n=(24, 9, 7), d=1200, seed=0):
    rng = np.random.RandomState(seed)
    folder = Path(folder); folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for (split, m) in zip(ANNOTATOR_JSONL, n):
        out[split] = dict(x=rng.normal(size=(m, d)).astype(np.float32), y=rng.randint(0, 3, m),
                          genres=np.array([["fiction", "slate", "travel", "letters"][j % 4] for j in range(m)]),
                          ids=[f"W{rng.randint(0, 5)}{split[:1]}" for _ in range(m)])
    np.savez(folder / "mnli.npz", x0=out["train"]["x"], lab0=out["train"]["y"], x2=out["dev_matched"]["x"], lab2=out["dev_matched"]["y"])
    np.savez(folder / "mnli_nonfires.npz", x=out["dev_mismatched"]["x"], labels=out["dev_mismatched"]["y"])
    np.savez(folder / "mnli_genres.npz", genres=np.array([out["train"]["genres"], [], out["dev_matched"]["genres"]], dtype=object))
    np.savez(folder / "mnli_nonfires_genres.npz", genres=out["dev_mismatched"]["genres"])
    for split, fname in ANNOTATOR_JSONL.items():
        with open(folder / fname, "w") as f:
            for j, a in enumerate(out[split]["ids"]):
                f.write(json.dumps({"annotator_labels": ["neutral"], "genre": str(out[split]["genres"][j]),
                                    "gold_label": "neutral", "pairID": f"{j}n", "promptID": str(j),
                                    "sentence1": "s1", "sentence2": "s2", "sentence2_author": a}) + "\n")
    return out


def tar_folder(path, folder, arc_prefix=""):
    with tarfile.open(path, "w:gz") as t:
        for p in sorted(Path(folder).iterdir()): t.add(p, arcname=arc_prefix + p.name)
    return Path(path)
