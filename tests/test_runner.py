"""The experiment runner in one process: result files, the task cache, phases, invalidation, locks, executors."""
import argparse, json, logging, os, sys, threading, zipfile
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
import scipy.sparse as sp

import groupinf.runner as runner
import groupinf.store as store
from groupinf.runner import Experiment, ExperimentDefinitionError, RunLockedError, phase, run_lock
from groupinf.store import ResultsFileError, encode_results, load_results, normalize_results, read_results, save_results
from groupinf.tasks import Executor, ProcessExecutor, collate, map_tasks, stable_hash

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # worker processes need not import this test module


def same(a, b):
    "Exact equality of stored values: same types, dtypes, shapes and bits."
    if sp.issparse(a):
        return (type(a) is type(b) and a.dtype == b.dtype and a.shape == b.shape
                and all(same(getattr(a, p), getattr(b, p)) for p in ("data", "indices", "indptr")))
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and (a == b or (a != a and b != b))


# ---------------------------------------------------------------------------------------------------------------
# Result files

def test_every_storable_kind_round_trips_exactly(tmp_path):
    values = {
        "f64": np.linspace(0, 1, 7), "f32": np.arange(6, dtype=np.float32).reshape(2, 3), "i8": np.array([-3, 4], np.int8),
        "u64": np.array([2 ** 63], np.uint64), "bools": np.array([True, False]), "c64": np.array([1 + 2j], np.complex64),
        "fortran": np.asfortranarray(np.arange(12.0).reshape(3, 4)), "zero_d": np.array(3.5), "empty": np.zeros((0, 4)),
        "strings": np.array(["a", "bcd"]), "nan": np.array([np.nan, np.inf, -0.0]),
        "py_int": 7, "big_int": 2 ** 62, "py_float": 0.1, "py_bool": False, "py_complex": 1j, "text": "héllo",
        "none": None, "np_float": np.float32(0.5), "np_int": np.int16(-2), "np_bool": np.bool_(True),
        "str_list": ["x", "", "z"], "empty_list": [], "numbers": [1, 2, 3], "floats": (0.5, 1.5),
        "ragged": [np.array([5, 1]), [], (7,), np.array([0, 2, 9], np.int32)], "equal_rows": [[1, 2], [3, 4]],
        "stacked": [np.ones(2), np.zeros(2)],
    }
    back, digest = save_results(tmp_path / "r.npz", values, note="test")
    loaded, meta = read_results(tmp_path / "r.npz")
    assert same(loaded, back)
    assert meta["note"] == "test" and meta["content_hash"] == digest
    for k in ("f64", "f32", "i8", "u64", "bools", "c64", "fortran", "zero_d", "empty", "strings", "nan"):
        assert same(loaded[k], values[k]), k
    assert type(loaded["np_float"]) is float and loaded["np_float"] == 0.5
    assert type(loaded["np_int"]) is int and loaded["np_int"] == -2 and loaded["np_bool"] is True
    assert loaded["big_int"] == 2 ** 62 and loaded["py_complex"] == 1j and loaded["text"] == "héllo"
    assert loaded["none"] is None and loaded["empty_list"] == [] and loaded["str_list"] == ["x", "", "z"]
    assert same(loaded["numbers"], np.array([1, 2, 3])) and same(loaded["floats"], np.array([0.5, 1.5]))
    assert [r.tolist() for r in loaded["ragged"]] == [[5, 1], [], [7], [0, 2, 9]]
    assert all(r.dtype == np.int64 for r in loaded["ragged"])
    assert [r.tolist() for r in loaded["equal_rows"]] == [[1, 2], [3, 4]]
    assert same(loaded["stacked"], np.array([[1.0, 1.0], [0.0, 0.0]]))
    assert list(loaded) == list(values)  # key order is kept


def test_result_files_are_plain_npz_without_pickle(tmp_path):
    save_results(tmp_path / "r.npz", {"groups": [[1, 2, 3], [4]], "tags": ["a", "b"], "x": np.eye(2), "s": "t"})
    with np.load(tmp_path / "r.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    assert not any(a.dtype.hasobject for a in arrays.values())
    assert arrays["groups"].tolist() == [[1, 2, 3], [4, -1, -1]]
    assert "allow_pickle" not in arrays
    meta = json.loads(str(arrays["__meta__"][()]))
    assert meta["schema"] == {"groups": "ragged_int", "tags": "str_list", "x": "array", "s": "str"}


@pytest.mark.parametrize("value, match", [
    ([object()], "pickle"), ({"a": 1}, "cannot be stored"), ({1, 2}, "cannot be stored"),
    ([np.ones(2), np.ones(3)], "cannot be stored"), ([[0, 1], [-1]], "non-negative"), ("x\0", "NUL"),
    (np.array([{"a": 1}], dtype=object), "pickle")])
def test_unstorable_values_are_refused_naming_the_key(tmp_path, value, match):
    with pytest.raises((TypeError, ValueError), match=match) as e:
        save_results(tmp_path / "r.npz", {"the_key": value})
    assert "the_key" in str(e.value)
    assert not list(tmp_path.iterdir())  # nothing written, not even a temporary file


@pytest.mark.parametrize("key", ["", "__meta__", "a/b", 3])
def test_bad_keys_are_refused(key):
    with pytest.raises(TypeError, match="result keys"):
        encode_results({key: 1})


def _flip_byte_in_member(path, member):
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    raw = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    pos = start + info.file_size - 1  # last data byte of the member
    raw[pos] ^= 0xFF
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage", ["truncate", "empty", "garbage", "flip", "meta"])
def test_damaged_result_files_are_detected(tmp_path, damage):
    p = tmp_path / "r.npz"
    save_results(p, {"x": np.arange(100.0), "tags": ["a"]})
    raw = p.read_bytes()
    if damage == "truncate": p.write_bytes(raw[: len(raw) * 2 // 3])
    elif damage == "empty": p.write_bytes(b"")
    elif damage == "garbage": p.write_bytes(b"not a zip file at all" * 10)
    elif damage == "flip": _flip_byte_in_member(p, "x.npy")
    else:  # a consistent zip whose recorded hash does not match its content
        loaded, meta = read_results(p)
        meta["content_hash"] = "0" * 64
        store._write_npz(p, encode_results(loaded)[0], meta)
    with pytest.raises(ResultsFileError):
        read_results(p)


def test_normalize_results_equals_what_reads_back(tmp_path):
    values = {"a": (1, 2), "b": np.float64(2.5), "c": [np.array([3, 1])], "d": ["q"], "e": np.arange(3)}
    save_results(tmp_path / "r.npz", values)
    assert same(normalize_results(values), read_results(tmp_path / "r.npz")[0])


# ---------------------------------------------------------------------------------------------------------------
# Sparse matrices in result files

SPARSE_CASES = {
    "empty_0x5": np.zeros((0, 5)), "all_zero_3x4": np.zeros((3, 4)), "one_by_one": np.array([[5]]),
    "random_6x9": np.where(np.random.default_rng(0).random((6, 9)) < 0.3,
                           np.random.default_rng(1).integers(-3, 4, (6, 9)), 0),
}


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64, np.int32])
@pytest.mark.parametrize("case", list(SPARSE_CASES))
def test_sparse_matrices_round_trip_as_canonical_csr(tmp_path, fmt, dtype, case):
    dense = SPARSE_CASES[case].astype(dtype)
    m = sp.coo_matrix(dense).asformat(fmt)
    back, digest = save_results(tmp_path / "r.npz", {"m": m})
    loaded, meta = read_results(tmp_path / "r.npz")
    r = loaded["m"]
    assert type(r) is sp.csr_matrix and r.dtype == np.dtype(dtype) and r.shape == dense.shape
    assert r.has_canonical_format and np.array_equal(r.toarray(), dense)
    assert same(r, back["m"]) and same(r, normalize_results({"m": m})["m"])
    assert meta["format"] == "groupinf-results-2" and meta["schema"] == {"m": "sparse_csr"}
    assert store.content_hash(*encode_results(loaded)) == digest


def test_sparse_matrices_are_stored_as_plain_csr_components(tmp_path):
    x = sp.random(4137, 8000, density=0.01, format="csr", random_state=0)  # a text dataset's features
    save_results(tmp_path / "r.npz", {"x": x, "y": np.arange(3)})
    with np.load(tmp_path / "r.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    assert sorted(arrays) == ["__meta__", "x/data", "x/indices", "x/indptr", "x/shape", "y"]
    assert arrays["x/indices"].dtype == np.int32 and arrays["x/shape"].tolist() == [4137, 8000]
    assert arrays["x/data"].size == x.nnz
    assert (tmp_path / "r.npz").stat().st_size < 5 * 2 ** 20  # not densified (265 MB dense)


def test_sparse_values_are_canonicalised_without_touching_the_input():
    unsorted = sp.csr_matrix(([1.0, 2.0], [2, 0], [0, 2]), shape=(1, 3))
    dups = sp.coo_matrix(([1.0, 2.0, 3.0], ([0, 0, 1], [2, 2, 0])), shape=(2, 3))
    explicit_zero = sp.csr_matrix(([0.0, 1.0], [0, 1], [0, 2]), shape=(1, 2))
    out = normalize_results({"u": unsorted, "d": dups, "z": explicit_zero, "a": sp.csr_array(np.eye(2, dtype=bool))})
    assert out["u"].indices.tolist() == [0, 2] and unsorted.indices.tolist() == [2, 0]
    assert out["d"].toarray().tolist() == [[0, 0, 3], [3, 0, 0]] and out["d"].nnz == 2 and dups.nnz == 3
    assert out["z"].nnz == 2  # explicit zeros are part of the structure and kept
    assert type(out["a"]) is sp.csr_matrix and out["a"].dtype == bool


def test_sparse_matrices_that_need_int64_indices_keep_them():
    wide = sp.csr_matrix((np.ones(1), np.array([2 ** 31], np.int64), np.array([0, 1], np.int64)), shape=(1, 2 ** 31 + 1))
    arrays, schema = encode_results({"w": wide})
    assert arrays["w/indices"].dtype == np.int64
    back = store.decode_results(arrays, schema)["w"]
    assert back.shape == (1, 2 ** 31 + 1) and back.indices.tolist() == [2 ** 31]


def test_files_without_sparse_values_keep_the_first_format_and_hash(tmp_path):
    values = {"x": np.arange(3.0), "tags": ["a", "b"], "n": 3, "groups": [[1, 2], [0]], "skipped": None}
    _, digest = save_results(tmp_path / "r.npz", values)
    # the digest the first format gave these values, before sparse values existed: old run directories stay valid
    assert digest == "04151eb5a09000dbddd6a34bca209b3a315bdd788c5acdca1ec7fb159f161e01"
    assert read_results(tmp_path / "r.npz")[1]["format"] == "groupinf-results-1"


def test_the_content_hash_covers_every_sparse_component():
    arrays, schema = encode_results({"x": sp.random(30, 20, density=0.2, format="csr", random_state=0)})
    h0 = store.content_hash(arrays, schema)
    for name in arrays:
        altered = {**arrays, name: arrays[name].copy()}
        altered[name].view(np.uint8)[0] ^= 1
        assert store.content_hash(altered, schema) != h0, name
    moved = arrays["x/indices"].copy()
    moved[0] += 1  # one stored index changed
    assert store.content_hash({**arrays, "x/indices": moved}, schema) != h0
    swapped = {**arrays, "x/indices": arrays["x/indptr"], "x/indptr": arrays["x/indices"]}
    assert store.content_hash(swapped, schema) != h0


@pytest.mark.parametrize("member", ["x/data", "x/indices", "x/indptr", "x/shape"])
def test_a_damaged_sparse_component_is_detected(tmp_path, member):
    p = tmp_path / "r.npz"
    save_results(p, {"x": sp.random(50, 40, density=0.1, format="csr", random_state=0)})
    _flip_byte_in_member(p, member + ".npy")
    with pytest.raises(ResultsFileError):
        read_results(p)


@pytest.mark.parametrize("damage", ["inconsistent", "missing", "unsorted", "wrong_format", "extra"])
def test_inconsistent_sparse_files_are_refused_even_with_a_matching_hash(tmp_path, damage):
    p = tmp_path / "r.npz"
    arrays, schema = encode_results({"x": sp.csr_matrix(np.array([[0.0, 1.0, 2.0], [3.0, 0.0, 0.0]]))})
    fmt = "groupinf-results-2"
    if damage == "inconsistent": arrays["x/indptr"] = arrays["x/indptr"][:-1]
    elif damage == "missing": del arrays["x/shape"]
    elif damage == "unsorted": arrays["x/indices"] = arrays["x/indices"][[1, 0, 2]]
    elif damage == "wrong_format": fmt = "groupinf-results-1"
    else: arrays["x/extra"] = np.zeros(1)
    store._write_npz(p, arrays, {"format": fmt, "schema": schema, "content_hash": store.content_hash(arrays, schema)})
    with pytest.raises(ResultsFileError, match="r.npz"):
        read_results(p)


def _cube():
    try: return sp.coo_array(np.ones((2, 2, 2)))
    except (TypeError, ValueError): pytest.skip("this SciPy has no n-d sparse arrays")


@pytest.mark.parametrize("make, error, match", [
    (_cube, TypeError, "3-d sparse coo_array"),
    (lambda: sp.csr_matrix((np.array([object()], dtype=object), [0], [0, 1]), shape=(1, 1)), TypeError, "dtype object"),
    (lambda: [sp.eye(2, format="csr"), sp.eye(2, format="csr")], TypeError, "list of sparse"),
    (lambda: sp.csr_matrix((np.ones(1), [7], [0, 1]), shape=(1, 3)), ValueError, "not a valid sparse matrix")])
def test_unstorable_sparse_values_are_refused_naming_the_key(tmp_path, make, error, match):
    value = make()
    with pytest.raises(error, match=match) as e:
        save_results(tmp_path / "r.npz", {"the_key": value})
    assert "'the_key'" in str(e.value)
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------------------------------------------------------
# Cache keys and map_tasks

CALLS = []


def square(i, offset=0.0):
    CALLS.append(i)
    return {"i": i, "sq": np.float64(i * i + offset), "vec": np.full(3, i, dtype=np.float32), "idx": np.arange(i % 3),
            "name": f"item-{i}"}


def square_edited(i, offset=0.0):
    CALLS.append(i)
    return {"i": i, "sq": np.float64(i * i + offset + 0.0), "vec": np.full(3, i, dtype=np.float32),
            "idx": np.arange(i % 3), "name": f"item-{i}"}


def test_map_tasks_results_are_in_item_order_and_normalised():
    out = map_tasks(square, [3, 1, 2], chunk_size=2, progress=False)
    assert [r["i"] for r in out] == [3, 1, 2]
    assert type(out[0]["sq"]) is float and out[0]["sq"] == 9.0
    assert [r["idx"].tolist() for r in out] == [[], [0], [0, 1]]
    assert map_tasks(lambda x: x * 2, range(5), progress=False) == [0, 2, 4, 6, 8]


def test_map_tasks_cache_is_reused_only_for_identical_inputs(tmp_path):
    CALLS.clear()
    kw = dict(cache_dir=tmp_path, chunk_size=3, progress=False)
    first = map_tasks(square, range(10), shared={"offset": 1.0}, **kw)
    assert sorted(CALLS) == list(range(10)) and len(list(tmp_path.glob("chunk-*.npz"))) == 4
    CALLS.clear()
    again = map_tasks(square, range(10), shared={"offset": 1.0}, **kw)
    assert CALLS == [] and same(first, again)
    # a different shared value, item list, function body, version or batching: recomputed, never reused
    for change in (dict(shared={"offset": 2.0}), dict(items=range(11)), dict(fn=square_edited), dict(version="2")):
        CALLS.clear()
        args = dict(fn=square, items=range(10), shared={"offset": 1.0}, **kw)
        args.update(change)
        map_tasks(args.pop("fn"), args.pop("items"), **args)
        assert CALLS, change
    # the same items in other chunks: other keys too
    CALLS.clear()
    map_tasks(square, range(10), shared={"offset": 1.0}, cache_dir=tmp_path, chunk_size=5, progress=False)
    assert sorted(CALLS) == list(range(10))


def test_a_damaged_chunk_is_recomputed_with_a_warning(tmp_path, caplog):
    CALLS.clear()
    first = map_tasks(square, range(6), cache_dir=tmp_path, chunk_size=2, progress=False)
    victim = sorted(tmp_path.glob("chunk-*.npz"))[0]
    victim.write_bytes(victim.read_bytes()[:50])
    CALLS.clear()
    with caplog.at_level(logging.WARNING, logger="groupinf"):
        again = map_tasks(square, range(6), cache_dir=tmp_path, chunk_size=2, progress=False)
    assert len(CALLS) == 2 and same(first, again)
    assert "damaged task cache file" in caplog.text
    read_results(victim)  # rewritten intact


def test_a_failing_task_keeps_the_finished_chunks(tmp_path):
    def fragile(i, fail_at):
        if i == fail_at: raise ValueError(f"item {i} failed")
        return i * 10
    with pytest.raises(ValueError, match="item 5 failed"):
        map_tasks(fragile, range(8), shared={"fail_at": 5}, cache_dir=tmp_path / "a", chunk_size=2, progress=False)
    assert len(list((tmp_path / "a").glob("chunk-*.npz"))) == 2  # chunks [0, 1] and [2, 3]


def test_closures_enter_the_key_and_unhashable_ones_are_refused(tmp_path):
    def make(k):
        def f(x): return x * k
        return f
    assert map_tasks(make(2), [1, 2], cache_dir=tmp_path, progress=False) == [2, 4]
    assert map_tasks(make(3), [1, 2], cache_dir=tmp_path, progress=False) == [3, 6]
    with pytest.raises(TypeError, match="shared="):
        map_tasks(make(threading.Lock()), [1], progress=False)
    with pytest.raises(TypeError, match="cannot hash"):
        map_tasks(square, [object()], progress=False)
    with pytest.raises(ValueError, match="chunk_size"):
        map_tasks(square, [1], chunk_size=0, progress=False)


def test_stable_hash_is_independent_of_dict_and_set_order():
    assert stable_hash({"a": 1, "b": [2, 3]}) == stable_hash(dict(b=[2, 3], a=1))
    assert stable_hash(frozenset(["x", "y", "z"])) == stable_hash({"z", "y", "x"})
    assert stable_hash(np.arange(4).reshape(2, 2).T) == stable_hash(np.array([[0, 2], [1, 3]]))
    assert stable_hash([1]) != stable_hash([1.0]) != stable_hash(["1"])


def test_collate_stacks_along_a_new_axis_whatever_the_dimension():
    out = collate([{"a": 1.0, "v": np.ones(2), "m": np.eye(2)}, {"a": 2.0, "v": np.zeros(2), "m": np.zeros((2, 2))}])
    assert out["a"].shape == (2,) and out["v"].shape == (2, 2) and out["m"].shape == (2, 2, 2)
    with pytest.raises(ValueError, match="'v'"):
        collate([{"v": np.ones(2)}, {"v": np.ones(3)}])


DOCS = sp.random(40, 500, density=0.02, format="csr", random_state=1)
INTERRUPT = {"at": None}


def gradient_row(i, x):
    "A stand-in for a per-example sparse gradient."
    if i == INTERRUPT["at"]: raise RuntimeError(f"stopped at item {i}")
    CALLS.append(i)
    return {"grad": x[[i]] * (i + 1.0), "label": i % 2}


def test_sparse_task_results_resume_from_the_cache(tmp_path):
    CALLS.clear()
    INTERRUPT["at"] = 25
    kw = dict(shared={"x": DOCS}, cache_dir=tmp_path, chunk_size=8, progress=False)
    try:
        with pytest.raises(RuntimeError, match="stopped at item 25"):
            map_tasks(gradient_row, range(40), **kw)
    finally: INTERRUPT["at"] = None
    assert len(list(tmp_path.glob("chunk-*.npz"))) == 3
    CALLS.clear()
    resumed = map_tasks(gradient_row, range(40), **kw)
    assert CALLS == list(range(24, 40))  # only the chunks that were not stored
    uninterrupted = map_tasks(gradient_row, range(40), shared={"x": DOCS}, chunk_size=8, progress=False)
    assert same(resumed, uninterrupted)
    assert all(type(r["grad"]) is sp.csr_matrix and r["grad"].shape == (1, 500) for r in resumed)
    CALLS.clear()
    assert same(map_tasks(gradient_row, range(40), **kw), resumed) and CALLS == []
    # a bare sparse value per item, cached and read back
    rows = map_tasks(lambda i, x: x[[i]], range(6), shared={"x": DOCS}, cache_dir=tmp_path, chunk_size=4,
                     progress=False)
    assert same(map_tasks(lambda i, x: x[[i]], range(6), shared={"x": DOCS}, cache_dir=tmp_path, chunk_size=4,
                          progress=False), rows)
    assert same(sp.csr_matrix(sp.vstack(rows)), DOCS[:6])


def test_collate_stacks_sparse_rows_into_one_csr_matrix():
    out = collate(map_tasks(gradient_row, range(40), shared={"x": DOCS}, progress=False))
    g = out["grad"]
    assert type(g) is sp.csr_matrix and g.shape == (40, 500) and g.has_canonical_format
    assert np.array_equal(g.toarray(), DOCS.toarray() * np.arange(1.0, 41)[:, None])
    assert out["label"].tolist() == [i % 2 for i in range(40)]
    mixed = collate([{"g": sp.csr_array(np.ones((1, 2)))}, {"g": sp.csr_matrix(np.zeros((1, 2), np.float32))}])["g"]
    assert type(mixed) is sp.csr_matrix and mixed.dtype == np.float64
    with pytest.raises(TypeError, match="'g'"):
        collate([{"g": sp.csr_matrix(np.ones((1, 2)))}, {"g": np.ones((1, 2))}])
    with pytest.raises(ValueError, match="'g'.*shape \\(2, 2\\)"):
        collate([{"g": sp.csr_matrix(np.ones((2, 2)))}])
    with pytest.raises(ValueError, match="'g'"):
        collate([{"g": sp.csr_matrix(np.ones((1, 2)))}, {"g": sp.csr_matrix(np.ones((1, 3)))}])


# ---------------------------------------------------------------------------------------------------------------
# Process pool

def noisy_sum(i, scale):
    rng = np.random.RandomState(i)
    return {"total": float(rng.standard_normal(50).sum() * scale), "pid": os.getpid()}


def dies_once(i, flag_dir):
    flag = Path(flag_dir) / f"died-{i}"
    if i == 3 and not flag.exists():
        flag.write_text("x")
        os._exit(9)  # the worker process dies abruptly
    return i + 100


def test_process_pool_gives_the_in_process_results_and_survives_a_dead_worker(tmp_path):
    local = map_tasks(noisy_sum, range(12), shared={"scale": 3.0}, chunk_size=2, progress=False)
    with ProcessExecutor(2) as pool:
        pooled = map_tasks(noisy_sum, range(12), shared={"scale": 3.0}, executor=pool, chunk_size=2, progress=False)
        assert len({r["pid"] for r in pooled} - {os.getpid()}) >= 1  # ran elsewhere
        survived = map_tasks(dies_once, range(6), shared={"flag_dir": str(tmp_path)}, executor=pool, chunk_size=1,
                             progress=False)
    assert [r["total"] for r in pooled] == [r["total"] for r in local]
    assert survived == list(range(100, 106))
    assert (tmp_path / "died-3").exists()


# ---------------------------------------------------------------------------------------------------------------
# Experiments

LOG = []


def task_value(i, base):
    LOG.append(f"task-{i}")
    return {"v": base + i, "members": list(range(i % 4))}


class Toy(Experiment):
    experiment_id = "toy"
    run_id_format = "seed-{seed}_n-{n}"
    volatile_config_keys = ("data_dir",)

    @phase(0, deps=())
    def base(self):
        LOG.append("base")
        return {"base": float(self.config["seed"]) + NONDETERMINISM[0], "names": ["a", "b"]}

    @phase(1, deps=["base"])
    def tasks(self):
        LOG.append("tasks")
        out = self.map_tasks(task_value, range(self.config["n"]), shared={"base": self.results["base"]}, chunk_size=2)
        return {"values": collate([{"v": r["v"]} for r in out])["v"], "members": [r["members"] for r in out]}

    @phase(2, deps=())
    def other(self):
        LOG.append("other")
        return {"other": np.arange(3)}

    @phase(4, deps=["tasks", "other"])
    def total(self):
        LOG.append("total")
        return {"total": float(self.results["values"].sum() + self.results["other"].sum()), "names": ["overwritten"]}


NONDETERMINISM = [0.0]


def run_toy(tmp_path, config=None, **kw):
    LOG.clear()
    exp = Toy(config or {"seed": 1, "n": 6}, out_dir=tmp_path, progress=False)
    results = exp.run(**kw)
    return exp, results, [e for e in LOG if not e.startswith("task-")], sum(e.startswith("task-") for e in LOG)


def test_first_run_computes_and_writes_the_run_directory(tmp_path):
    exp, results, ran, ntasks = run_toy(tmp_path)
    assert ran == ["base", "tasks", "other", "total"] and ntasks == 6
    assert exp.run_dir == tmp_path / "toy" / "seed-1_n-6"
    names = sorted(p.name for p in exp.run_dir.iterdir())
    assert names == [".lock", "config.json", "phase-0-base.npz", "phase-1-tasks.npz", "phase-2-other.npz",
                     "phase-4-total.npz", "phases.csv", "results.npz", "summary.csv"]
    assert json.loads((exp.run_dir / "config.json").read_text()) == {"seed": 1, "n": 6}
    stored = load_results(exp.run_dir)
    assert same(stored, results)
    assert results["total"] == sum(1.0 + i for i in range(6)) + 3 and results["names"] == ["overwritten"]
    assert [m.tolist() for m in results["members"]] == [list(range(i % 4)) for i in range(6)]
    meta = read_results(exp.run_dir / "results.npz")[1]
    assert meta["origin"]["names"] == "total" and meta["origin"]["base"] == "base"
    import pandas as pd
    summary = pd.read_csv(exp.run_dir / "summary.csv")
    assert summary["status"].tolist() == ["computed"] * 4 and summary["index"].tolist() == [0, 1, 2, 4]


def test_rerun_loads_everything_and_gives_identical_results(tmp_path):
    _, results1, _, _ = run_toy(tmp_path)
    exp, results2, ran, ntasks = run_toy(tmp_path)
    assert ran == [] and ntasks == 0 and same(results1, results2)
    assert [r["status"] for r in exp.phase_log] == ["loaded"] * 4


class SparseToy(Experiment):
    experiment_id = "sparse_toy"
    run_id_format = "n-{n}"

    @phase(0, deps=())
    def features(self):
        LOG.append("features")
        return {"x": sp.random(self.config["n"], 300, density=0.05, format="csc", random_state=0)}

    @phase(1, deps=["features"])
    def gradients(self):
        LOG.append("gradients")
        out = self.map_tasks(gradient_row, range(self.config["n"]), shared={"x": self.results["x"].tocsr()}, chunk_size=4)
        return collate(out)

    @phase(2, deps=["gradients"])
    def norms(self):
        LOG.append("norms")
        return {"norms": np.sqrt(np.asarray(self.results["grad"].multiply(self.results["grad"]).sum(axis=1)).ravel())}


def test_sparse_phase_results_are_stored_and_reused(tmp_path):
    LOG.clear()
    exp = SparseToy({"n": 10}, out_dir=tmp_path, progress=False)
    results1 = exp.run()
    assert LOG == ["features", "gradients", "norms"]
    assert type(results1["x"]) is sp.csr_matrix and type(results1["grad"]) is sp.csr_matrix and results1["grad"].shape == (10, 300)
    assert read_results(exp.phase_path("features"))[1]["format"] == "groupinf-results-2"
    assert read_results(exp.phase_path("norms"))[1]["format"] == "groupinf-results-1"
    LOG.clear()
    exp2 = SparseToy({"n": 10}, out_dir=tmp_path, progress=False)
    results2 = exp2.run()
    assert LOG == [] and same(results1, results2) and same(load_results(exp2.run_dir), results1)
    # a damaged sparse phase is recomputed; it comes out the same, so later phases are reused
    _flip_byte_in_member(exp.phase_path("features"), "x/indices.npy")
    LOG.clear()
    results3 = SparseToy({"n": 10}, out_dir=tmp_path, progress=False).run()
    assert LOG == ["features"] and same(results3, results1)


def test_invalidate_recomputes_later_phases_and_their_tasks(tmp_path):
    run_toy(tmp_path)
    _, _, ran, ntasks = run_toy(tmp_path, invalidate=1)
    assert ran == ["tasks", "other", "total"] and ntasks == 6   # the task cache was not reused
    _, _, ran, ntasks = run_toy(tmp_path, invalidate=3)          # indices need not exist: phases >= 3
    assert ran == ["total"] and ntasks == 0
    _, _, ran, _ = run_toy(tmp_path, invalidate="other")
    assert ran == ["other", "total"]
    _, _, ran, ntasks = run_toy(tmp_path, force_refresh=True)
    assert ran == ["base", "tasks", "other", "total"] and ntasks == 6
    with pytest.raises(ValueError, match="no phase with index >= 5"):
        run_toy(tmp_path, invalidate=5)


def test_dependencies_decide_what_a_changed_phase_invalidates(tmp_path):
    exp, _, _, _ = run_toy(tmp_path)
    # phase 0 recomputed with a different result: its dependants (1, and 4 through 1) follow, phase 2 does not
    exp.phase_path(0).unlink()
    NONDETERMINISM[0] = 0.5
    try:
        _, results, ran, ntasks = run_toy(tmp_path)
    finally:
        NONDETERMINISM[0] = 0.0
    assert ran == ["base", "tasks", "total"] and ntasks == 6 and results["base"] == 1.5
    # phase 0 recomputed with the same result: nothing downstream is recomputed
    exp.phase_path(0).unlink()
    _, _, ran, _ = run_toy(tmp_path)
    assert ran == ["base", "tasks", "total"]  # back to base = 1.0, so 1 and 4 change again
    exp.phase_path(0).unlink()
    _, _, ran, _ = run_toy(tmp_path)
    assert ran == ["base"]


def test_configuration_changes_are_detected_but_volatile_keys_ignored(tmp_path):
    run_toy(tmp_path, {"seed": 1, "n": 6})
    _, _, ran, _ = run_toy(tmp_path, {"seed": 1, "n": 6, "data_dir": "/elsewhere"})
    assert ran == []
    _, _, ran, ntasks = run_toy(tmp_path, {"seed": 1, "n": 6, "extra": True})  # same run id, other config
    assert ran == ["base", "tasks", "other", "total"] and ntasks == 6
    exp = Toy({"seed": 1, "n": 6, "tag": "rel-reg-1e-07"}, out_dir=tmp_path)
    assert exp.run_id == "seed-1_n-6_rel-reg-1e-07"


@pytest.mark.parametrize("damage", ["truncate", "other_phase", "garbage"])
def test_damaged_or_foreign_phase_files_are_recomputed(tmp_path, damage):
    exp, results1, _, _ = run_toy(tmp_path)
    p = exp.phase_path(1)
    if damage == "truncate": p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    elif damage == "other_phase": p.write_bytes(exp.phase_path(2).read_bytes())
    else: p.write_bytes(os.urandom(300))
    _, results2, ran, ntasks = run_toy(tmp_path)
    assert ran == ["tasks"] and ntasks == 6 and same(results1, results2)  # same content: phase 4 is reused


def test_leftover_temporary_files_are_removed_and_never_read(tmp_path):
    exp, results1, _, _ = run_toy(tmp_path)
    exp.phase_path(4).unlink()
    junk = [exp.run_dir / ".phase-4-total.npz.tmp-99999-0123abcd", exp.run_dir / ".results.npz.tmp-1-deadbeef",
            exp.run_dir / "tasks" / "phase-1-tasks" / ".chunk-x.npz.tmp-5-00000000"]
    for j in junk:
        j.parent.mkdir(parents=True, exist_ok=True)
        j.write_bytes(b"half a file")
    _, results2, ran, _ = run_toy(tmp_path)
    assert ran == ["total"] and same(results1, results2)
    assert not any(j.exists() for j in junk)
    assert not any(store.is_temp_file(p) for p in exp.run_dir.rglob("*"))


def test_phase_errors_are_clear(tmp_path):
    class NotADict(Experiment):
        experiment_id = "bad"
        @phase(0)
        def a(self): return [1, 2]
    with pytest.raises(TypeError, match="phase 0 'a' must return a dict, got list"):
        NotADict({}, out_dir=tmp_path).run()

    class Undeclared(Experiment):
        experiment_id = "undeclared"
        @phase(0)
        def a(self): return {"a": 1}
        @phase(1, deps=())
        def b(self): return {"b": self.results["a"]}
    with pytest.raises(KeyError, match="comes from phase 'a', which phase 'b' does not declare"):
        Undeclared({}, out_dir=tmp_path).run()

    with pytest.raises(ExperimentDefinitionError, match="only depend on earlier phases"):
        class Forward(Experiment):
            experiment_id = "forward"
            @phase(0, deps=["b"])
            def a(self): return {}
            @phase(1)
            def b(self): return {}
    with pytest.raises(ExperimentDefinitionError, match="must set experiment_id"):
        class NoId(Experiment):
            @phase(0)
            def a(self): return {}
        NoId({})
    with pytest.raises(ValueError, match="run_id"):
        Toy({"seed": "../x", "n": 1}, out_dir=tmp_path)
    with pytest.raises(ValueError, match="needs config key 'n'"):
        Toy({"seed": 1}, out_dir=tmp_path)
    with pytest.raises(TypeError, match="JSON"):
        Toy({"seed": 1, "n": 2, "model": object()}, out_dir=tmp_path)
    with pytest.raises(ValueError, match="finite"):
        Toy({"seed": 1, "n": 2, "lam": float("nan")}, out_dir=tmp_path)


def test_default_run_id_is_a_config_hash(tmp_path):
    class Plain(Experiment):
        experiment_id = "plain"
        @phase(0)
        def a(self): return {"a": self.config["x"]}
    a, b = Plain({"x": 1}, out_dir=tmp_path), Plain({"x": 2}, out_dir=tmp_path)
    assert a.run_id.startswith("cfg-") and len(a.run_id) == 16 and a.run_id != b.run_id
    assert Plain({"x": 1}, out_dir=tmp_path).run_id == a.run_id


def test_a_held_run_directory_refuses_or_waits(tmp_path):
    exp = Toy({"seed": 1, "n": 4}, out_dir=tmp_path, progress=False)
    with run_lock(exp.run_dir):
        with pytest.raises(RunLockedError, match=f"in use by process {os.getpid()}") as e:
            exp.run()
        assert e.value.pid == os.getpid()
        assert not (exp.run_dir / "config.json").exists()  # refused before writing anything
    # waiting: another holder releases the directory after a moment
    held, release = threading.Event(), threading.Event()
    def holder():
        with run_lock(exp.run_dir):
            held.set()
            release.wait(30)
    t = threading.Thread(target=holder)
    t.start()
    held.wait(30)
    threading.Timer(0.5, release.set).start()
    results = exp.run(lock_timeout=60)
    t.join()
    assert results["total"] == sum(1.0 + i for i in range(4)) + 3


def test_figures_are_written_atomically_into_plots(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    class Figured(Toy):
        experiment_id = "figured"
        def make_figures(self):
            fig, ax = plt.subplots()
            ax.plot(self.results["values"])
            self.save_figure(fig, "values.png")
            plt.close(fig)
        def summarize(self):
            return None
    exp = Figured({"seed": 0, "n": 3}, out_dir=tmp_path, progress=False)
    exp.run()
    assert (exp.run_dir / "plots" / "values.png").read_bytes()[:4] == b"\x89PNG"
    assert not (exp.run_dir / "summary.csv").exists()
    with pytest.raises(ValueError, match="plain file name"):
        exp.save_figure(None, "../x.png")


def test_experiment_on_a_process_pool_matches_in_process(tmp_path):
    _, local_results, _, _ = run_toy(tmp_path / "local")
    with ProcessExecutor(2) as pool:
        pool_results = Toy({"seed": 1, "n": 6}, out_dir=tmp_path / "pool", executor=pool, progress=False).run()
    assert same(local_results, pool_results)


# ---------------------------------------------------------------------------------------------------------------
# Command-line options

def test_executor_arguments():
    p = runner.add_executor_arguments(argparse.ArgumentParser())
    a = p.parse_args([])
    assert (a.workers, a.scheduler, a.dask_local, a.out_dir, a.force_refresh, a.invalidate, a.lock_timeout) == \
        (0, None, None, None, False, None, 0.0)
    assert type(runner.executor_from_args(a)) is Executor
    a = p.parse_args(["--workers", "3", "--force-refresh", "--invalidate", "2", "--out-dir", "o", "--lock-timeout", "5"])
    assert runner.run_options_from_args(a) == dict(force_refresh=True, invalidate=2, lock_timeout=5.0)
    assert runner.out_dir_from_args(a) == Path("o")
    with runner.executor_from_args(a) as ex:
        assert isinstance(ex, ProcessExecutor) and ex.workers == 3
    assert p.parse_args(["--dask-local", "2"]).dask_local == 2
    assert p.parse_args(["--scheduler", "tcp://h:8786"]).scheduler == "tcp://h:8786"
    for bad in (["--workers", "-1"], ["--dask-local", "0"], ["--invalidate", "x"], ["--workers", "2", "--scheduler", "s"]):
        with pytest.raises(SystemExit):
            p.parse_args(bad)


def test_default_out_dir(monkeypatch):
    monkeypatch.delenv("GROUPINF_OUT_DIR", raising=False)
    assert runner.default_out_dir() == Path("output")
    monkeypatch.setenv("GROUPINF_OUT_DIR", "/tmp/runs")
    assert runner.default_out_dir() == Path("/tmp/runs")
