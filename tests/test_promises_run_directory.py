"""Promises about the run directory and its store, tried as an attacker and a careless user would: links inside a run
directory are refused before anything is written through them, and every malformed results file gives one
`ResultsFileError` naming the file and the problem; a malformed phase file is recomputed, never a crash."""
import io, json, logging, sys, zipfile
from pathlib import Path

import cloudpickle
import numpy as np
import pytest

from groupinf.runner import Experiment, RunDirectoryError, phase
from groupinf.store import ResultsFileError, content_hash, encode_results, load_results, read_results, save_results
from groupinf.tasks import collate

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def square(i, offset): return {"v": float(i) ** 2 + offset}


class Small(Experiment):
    experiment_id = "small"
    run_id_format = "n-{n}"

    @phase(0, deps=())
    def base(self): return {"offset": 0.5, "names": ["a", "b"]}

    @phase(1, deps=["base"])
    def squares(self):
        out = self.map_tasks(square, range(self.config["n"]), shared={"offset": self.results["offset"]}, chunk_size=2)
        return {"squares": collate(out)["v"]}

    @phase(2, deps=["squares"])
    def total(self): return {"total": float(self.results["squares"].sum())}


def files_under(root):
    return sorted(p.relative_to(root).as_posix() for p in Path(root).rglob("*") if p.is_file() or p.is_symlink())


# ------------------------------------------------------------------------------------------------ links
def test_a_lock_file_linked_to_an_outside_file_is_refused_and_the_file_is_untouched(tmp_path):
    victim = tmp_path / "victim.txt"; victim.write_text("precious")
    exp = Small({"n": 4}, out_dir=tmp_path / "out", progress=False)
    exp.run_dir.mkdir(parents=True)
    (exp.run_dir / ".lock").symlink_to(victim)
    with pytest.raises(RunDirectoryError, match=r"\.lock is a symbolic link; a run's lock file must be a plain file"):
        exp.run()
    assert victim.read_text() == "precious"
    assert files_under(exp.run_dir) == [".lock"]          # nothing written beside it


@pytest.mark.parametrize("link", ["tasks", "tasks/phase-1-squares", "phase-0-base.npz"])
def test_a_link_inside_a_run_directory_is_refused_before_anything_is_written_through_it(tmp_path, link):
    outside = tmp_path / "outside"; outside.mkdir()
    exp = Small({"n": 4}, out_dir=tmp_path / "out", progress=False)
    (exp.run_dir / link).parent.mkdir(parents=True, exist_ok=True)
    (exp.run_dir / link).symlink_to(outside, target_is_directory=True)
    with pytest.raises(RunDirectoryError, match=f"{link} is a symbolic link; a run directory must not contain links"):
        exp.run()
    assert list(outside.iterdir()) == []                  # no task cache or result landed outside
    assert not (exp.run_dir / "config.json").exists()


# ------------------------------------------------------------------------------------------------ crafted files
def write_crafted(path, arrays, meta):
    "A results file with these arrays and this metadata, written the way numpy would (no pickle)."
    with zipfile.ZipFile(path, "w") as z:
        for k, a in {**arrays, "__meta__": np.asarray(json.dumps(meta))}.items():
            buf = io.BytesIO(); np.lib.format.write_array(buf, np.asanyarray(a), allow_pickle=False)
            z.writestr(k + ".npy", buf.getvalue())


def crafted(kind):
    "(arrays, metadata) of one malformed file: each tells a different lie about its content."
    arrays, schema = encode_results({"x": np.arange(3.0), "groups": [np.array([1, 2]), np.array([0])]})
    if kind == "schema-names-an-absent-array": schema = {**schema, "absent": "array"}
    if kind == "schema-is-a-list": schema = list(schema)
    if kind == "schema-is-not-strings": schema = {"x": 3}
    if kind == "meta-is-a-list": return arrays, ["not", "a", "mapping"]
    if kind == "plain-array-declared-ragged": schema = {**schema, "x": "ragged_int"}
    if kind == "ragged-declared-sparse": schema = {**schema, "groups": "sparse"}
    if kind == "unknown-kind": schema = {**schema, "x": "tensor"}
    fmt = "groupinf-results-2" if isinstance(schema, dict) and "sparse" in schema.values() else "groupinf-results-1"
    digest = content_hash(arrays, schema) if isinstance(schema, dict) and all(isinstance(v, str) for v in schema.values()) else "0"
    return arrays, {"format": fmt, "schema": schema, "content_hash": digest}


KINDS = ["schema-names-an-absent-array", "schema-is-a-list", "schema-is-not-strings", "meta-is-a-list",
         "plain-array-declared-ragged", "ragged-declared-sparse", "unknown-kind"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_malformed_results_file_is_a_results_file_error_naming_the_file(tmp_path, kind):
    path = tmp_path / f"{kind}.npz"
    write_crafted(path, *crafted(kind))
    for reader in (read_results, load_results):
        with pytest.raises(ResultsFileError) as e:
            reader(path)
        assert str(e.value).startswith(f"{path}: "), str(e.value)


@pytest.mark.parametrize("kind", KINDS)
def test_a_malformed_phase_file_is_recomputed_to_the_same_results(tmp_path, kind, caplog):
    first = Small({"n": 5}, out_dir=tmp_path, progress=False).run()
    exp = Small({"n": 5}, out_dir=tmp_path, progress=False)
    write_crafted(exp.phase_path("squares"), *crafted(kind))
    with caplog.at_level(logging.WARNING, logger="groupinf"):
        again = exp.run()
    assert any(str(exp.phase_path("squares")) in r.getMessage() for r in caplog.records), caplog.text
    np.testing.assert_array_equal(again["squares"], first["squares"]); assert again["total"] == first["total"]
    assert read_results(exp.phase_path("squares"))[0]["squares"].tolist() == first["squares"].tolist()


def test_the_store_detects_accidents_and_says_so(tmp_path):
    "The content hash finds corruption and truncation; it is unkeyed, so the docs promise nothing about deliberate edits."
    docs = " ".join("".join(c["source"]) for c in json.loads(
        (Path(__file__).parents[1] / "nbs" / "06a_store.ipynb").read_text())["cells"] if c["cell_type"] == "markdown")
    assert "does not stop a deliberate change" in docs and "integrity against accidents, not authenticity" in docs
    path = tmp_path / "r.npz"
    save_results(path, {"x": np.arange(1000.0)})
    raw = bytearray(path.read_bytes()); raw[len(raw) // 2] ^= 0xFF; path.write_bytes(bytes(raw))
    with pytest.raises(ResultsFileError, match=str(path)):
        read_results(path)


# ------------------------------------------------------------------------------------------------ memory
def test_a_subsets_run_that_cannot_fit_in_memory_is_refused_before_any_phase(tmp_path, monkeypatch):
    import groupinf.experiments.subsets as S
    monkeypatch.setattr(S, "available_memory", lambda: 1e4)   # a machine with 10 kB free
    exp = S.SubsetInfluence(S.subsets_config(dataset_id="breast_cancer", num_subsets=2), out_dir=tmp_path, progress=False)
    need = S.estimated_run_bytes(exp.config, len(exp.data.labels), 31)
    assert need > 1e4
    with pytest.raises(ValueError, match=r"2 sizes per group type make about 34 groups of up to 0.25 of 455 points, which need at least 64\.7 kB, more than the 10\.0 kB of "
                                         r"memory available here: use fewer \(--num-subsets\)"):
        exp.run()
    assert not any(p.suffix == ".npz" for p in tmp_path.rglob("*"))
