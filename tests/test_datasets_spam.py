"The Enron spam loader on a small enron1.tar.gz in the real layout."
import numpy as np
import pytest
import scipy.sparse
from sklearn.feature_extraction.text import CountVectorizer

import groupinf.data as gd
import groupinf.datasets.spam as S
from datasets_fixtures import enron_texts, no_internet, serve, write_enron_tar  # noqa: F401


@pytest.fixture
def enron(tmp_path, monkeypatch):
    texts = enron_texts()
    serve(monkeypatch, S, "ENRON1_TAR", write_enron_tar(tmp_path / "enron1.tar.gz", texts))
    return texts


def test_end_to_end(enron, tmp_path):
    d = gd.load_dataset("spam", data_dir=tmp_path / "data", min_df=2)
    n = 25
    assert (d.train.num_examples, d.validation.num_examples, d.test.num_examples) == (int(0.8 * n), 0, n - int(0.8 * n))
    assert d.validation.x.shape == (0, d.train.num_features) and d.num_classes == 2
    # files read in sorted name order (the tar lists them scrambled), spam first; RandomState(0) shuffle of pairs
    raw = enron["spam"] + enron["ham"]
    y = np.array([1] * 10 + [0] * 15)
    perm = np.arange(n); np.random.RandomState(0).shuffle(perm)
    assert np.r_[d.train.labels, d.test.labels].tolist() == y[perm].tolist()
    docs = S.normalise_documents([raw[i] for i in perm])
    cv = CountVectorizer(min_df=2).fit(docs[:20])
    assert d.meta["feature_names"] == list(cv.get_feature_names_out())
    for s in (d.train, d.validation, d.test):                 # sparse CSR of float64 counts, never densified
        assert isinstance(s.x, scipy.sparse.csr_matrix) and s.x.dtype == np.float64
    # the same values as the dense matrices the loader used to return
    assert d.train.x.toarray().tolist() == cv.transform(docs[:20]).toarray().tolist()
    assert d.test.x.toarray().tolist() == cv.transform(docs[20:]).toarray().tolist()
    assert d.train.subset([3, 0]).x.toarray().tolist() == cv.transform([docs[3], docs[0]]).toarray().tolist()
    vocab = set(d.meta["feature_names"])
    assert {"meeting", "price", "nomination", "schedule", "prize", "stock", "café"} <= vocab
    assert not vocab & {"the", "and", "are", "meetings", "prices", "100", "re"}


def test_normalisation_quirks():
    docs = S.normalise_documents(["The MEETINGS were cancelled, 2001 prices: $5!", "caf\xe9 don't"])
    assert docs[0] == "meeting cancel price"
    assert docs[1] == "café"


def test_truncate_and_cache(enron, tmp_path, monkeypatch):
    a = S.load_spam(tmp_path / "data", min_df=2)
    monkeypatch.setattr(S, "normalise_documents", lambda *a, **k: pytest.fail("cache not used"))
    b = S.load_spam(tmp_path / "data", min_df=2)
    assert isinstance(b.train.x, scipy.sparse.csr_matrix) and (a.train.x != b.train.x).nnz == 0
    cache = next((tmp_path / "data" / "spam").glob("spam-*.npz"))
    with np.load(cache, allow_pickle=False) as z:                # CSR arrays in the npz, no pickle
        assert {"x_train_data", "x_train_indices", "x_train_indptr", "x_train_shape"} <= set(z.files)
        assert z["x_train_data"].dtype == np.float64 and (z["x_train_data"] > 0).all()
        dense = scipy.sparse.csr_matrix((z["x_train_data"], z["x_train_indices"], z["x_train_indptr"]),
                                        shape=tuple(z["x_train_shape"])).toarray()
    assert np.array_equal(b.train.x.toarray(), dense)
    monkeypatch.undo()
    t = S.load_spam(tmp_path / "data", truncate=4, min_df=2)
    assert t.train.num_examples + t.test.num_examples == 8
    monkeypatch.setattr(S, "_versions", lambda m: {"spacy": "0.0-other"})
    S.load_spam(tmp_path / "data", min_df=2)          # another spaCy version: another cache
    assert len(list((tmp_path / "data" / "spam").glob("spam-*.npz"))) == 3


def test_split_sizes_of_the_real_corpus():
    docs = [f"word{i % 7} common other" for i in range(5172)]
    out = S.bag_of_words(docs, np.zeros(5172, np.int64))
    assert (out["x_train_shape"][0], out["x_valid_shape"][0], out["x_test_shape"][0]) == (4137, 0, 1035)


def test_extracted_folders_are_used_without_download(enron, tmp_path, monkeypatch):
    root = tmp_path / "data" / "spam" / "enron1"
    for c in ("spam", "ham"):
        (root / c).mkdir(parents=True)
        for i, t in enumerate(enron[c]): (root / c / f"{i:04d}.{c}.txt").write_bytes(t.encode("latin-1"))
    monkeypatch.setattr(gd, "_urlopen", lambda *a: pytest.fail("must not download"))
    assert S.load_spam(tmp_path / "data", min_df=2).train.num_examples == 20


def test_offline_error(tmp_path):
    with pytest.raises(gd.DataUnavailableError) as e: S.load_spam(tmp_path)
    assert S.ENRON1_TAR.url in str(e.value) and str(tmp_path / "spam" / "enron1.tar.gz") in str(e.value)


def test_loaded_pipeline_drops_unknown_tokens(tmp_path):
    import spacy
    nlp = spacy.blank("en"); nlp.add_pipe("lemmatizer", config={"mode": "lookup"}); nlp.initialize()
    nlp.vocab.strings.add("pipeline"); nlp.to_disk(tmp_path / "pl")
    assert S.normalise_documents(["gas pipeline"], spacy_model=str(tmp_path / "pl")) == ["pipeline"]


def test_streamed_and_multiprocess_normalisation_give_the_same_documents(enron):
    raw = enron["spam"] + enron["ham"]
    listed = S.normalise_documents(raw)
    assert S.normalise_documents(iter(raw), total=len(raw)) == listed          # a one-pass stream
    assert S.normalise_documents(raw, n_process=2, batch_size=4) == listed     # spaCy's worker processes, same order


def test_the_texts_are_read_lazily(tmp_path):
    (tmp_path / "b.txt").write_bytes(b"second"); (tmp_path / "a.txt").write_bytes(b"caf\xe9")
    texts = S.EnronTexts(S.enron_files(tmp_path))
    assert len(texts) == 2 and list(texts) == ["café", "second"] and list(texts) == ["café", "second"]
    (tmp_path / "a.txt").write_bytes(b"changed")                  # read when iterated, not when listed
    assert next(iter(texts)) == "changed"


def test_the_cache_follows_the_content_of_the_e_mails(enron, tmp_path, monkeypatch):
    S.load_spam(tmp_path / "data", min_df=2)
    f = S.enron_files(tmp_path / "data" / "spam" / "enron1" / "ham")[0]
    f.write_bytes(f.read_bytes().replace(b"meeting", b"meatier"))   # same size, other words
    calls = []
    real = S.bag_of_words
    monkeypatch.setattr(S, "bag_of_words", lambda *a, **k: calls.append(1) or real(*a, **k))
    S.load_spam(tmp_path / "data", min_df=2)
    assert calls == [1] and len(list((tmp_path / "data" / "spam").glob("spam-*.npz"))) == 2   # rebuilt, not reused
