"""Promises about faults, kept by the REAL subset experiment run as a user runs it.

`groupinf run subsets --num-subsets 2` (embedded breast_cancer, 34 groups, 14 phases) is started with the installed
console script and then disturbed from outside, with no hook inside the program: a SIGKILL when its log says it has
reached a phase, when task files appear in its run directory, or when the temporary file of `results.npz` appears;
a Dask worker killed mid-phase; a second run on the same directory. Every promise ends with the same check: the
final `results.npz` equals the one of an uninterrupted run EXACTLY (same keys, dtypes, shapes and bytes).

The uninterrupted reference run is shared by the module (one run, ~40 s). The toy-experiment versions of these
promises, with kill points at every line of the runner, are in test_runner_resume.py and test_runner_dask.py.
"""
import json, os, queue, re, shutil, signal, subprocess, threading, time
from pathlib import Path

import numpy as np
import pytest

from groupinf.store import is_temp_file, load_results, read_results

RUN = ("ss_logreg", "breast_cancer_range-2_seed-0")
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1", "MPLBACKEND": "Agg"}
NUM_PHASES = 14


def _exe():
    return shutil.which("groupinf") or pytest.skip("the groupinf console script is not installed")


class Run:
    "`groupinf run subsets --num-subsets 2` in a subprocess whose stderr (the runner's log) is read line by line."

    def __init__(self, out_dir, *extra):
        self.out_dir, self.run_dir = Path(out_dir), Path(out_dir).joinpath(*RUN)
        self.proc = subprocess.Popen([_exe(), "run", "subsets", "--num-subsets", "2", "--out-dir", str(out_dir), *extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
        self.lines, self.stdout, self._new = [], [], queue.Queue()
        self._threads = [threading.Thread(target=self._read, args=(self.proc.stderr, True), daemon=True),
                         threading.Thread(target=self._read, args=(self.proc.stdout, False), daemon=True)]
        for t in self._threads: t.start()

    def _read(self, stream, is_log):
        buf = b""
        for chunk in iter(lambda: stream.read1(65536), b""):
            buf += chunk
            *done, buf = re.split(rb"[\r\n]", buf)
            for line in done:
                text = line.decode(errors="replace")
                if is_log: self.lines.append(text); self._new.put(text)
                else: self.stdout.append(text)
        if buf: (self.lines if is_log else self.stdout).append(buf.decode(errors="replace"))
        if is_log: self._new.put(None)

    @property
    def log(self): return "\n".join(self.lines)

    def wait_for_log(self, needle, timeout=240):
        "Block until a log line contains `needle`."
        if any(needle in l for l in self.lines): return
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            try: line = self._new.get(timeout=0.5)
            except queue.Empty: continue
            if line is None: raise AssertionError(f"the run ended before logging {needle!r}:\n{self.log[-3000:]}")
            if needle in line: return
        raise AssertionError(f"no {needle!r} in the log after {timeout} s")

    def wait_until(self, condition, what, timeout=240, poll=0.01):
        "Poll `condition()` until it holds (poll=0: as fast as possible)."
        t0 = time.monotonic()
        while not condition():
            if self.proc.poll() is not None:
                raise AssertionError(f"the run ended (status {self.proc.returncode}) before {what}:\n{self.log[-3000:]}")
            if time.monotonic() - t0 > timeout: raise AssertionError(f"not {what} after {timeout} s")
            if poll: time.sleep(poll)

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.finish()
        assert self.proc.returncode == -signal.SIGKILL, f"the run ended by itself:\n{self.log[-3000:]}"

    def finish(self, timeout=300):
        self.proc.wait(timeout=timeout)
        for t in self._threads: t.join(timeout=30)
        return self.proc.returncode


def run_to_end(out_dir, *extra):
    r = Run(out_dir, *extra)
    assert r.finish() == 0, r.log[-5000:]
    return r


def same(a, b):
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, list): return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def assert_identical(run_dir, reference):
    results = load_results(run_dir)
    assert list(results) == list(reference["results"])
    different = [k for k in results if not same(results[k], reference["results"][k])]
    assert not different, f"results differ from the uninterrupted run in {different}"
    assert (Path(run_dir) / "summary.csv").read_text() == reference["summary"]
    assert sorted(p.name for p in (Path(run_dir) / "plots").iterdir()) == reference["plots"]
    assert not [p for p in Path(run_dir).rglob("*") if is_temp_file(p)], "temporary files left behind"
    assert not (Path(run_dir) / "tasks").exists(), "task caches left behind"


def check_no_broken_files(run_dir):
    "After a kill, every file carrying a final name is complete; only temporary files may be partial."
    for p in Path(run_dir).rglob("*"):
        if not p.is_file() or is_temp_file(p) or p.name == ".lock": continue
        if p.suffix == ".npz": read_results(p)                   # raises ResultsFileError on a partial file
        elif p.suffix == ".json": json.loads(p.read_text())
        elif p.suffix == ".csv": assert p.read_text().endswith("\n")
        elif p.suffix == ".png": assert p.read_bytes().endswith(b"IEND\xaeB`\x82"), p
        else: raise AssertionError(f"unexpected file {p}")


def phases_stored(run_dir):
    return sorted(int(p.name.split("-")[1]) for p in Path(run_dir).glob("phase-*.npz"))


def chunks(run_dir, phase):
    d = Path(run_dir) / "tasks" / phase
    return [p for p in d.glob("chunk-*.npz")] if d.exists() else []


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    "One uninterrupted run, shared by every test of the module."
    out = tmp_path_factory.mktemp("reference")
    r = run_to_end(out)
    assert r.log.count("computing") == NUM_PHASES
    run_dir = r.run_dir
    return dict(run_dir=run_dir, results=load_results(run_dir), summary=(run_dir / "summary.csv").read_text(),
                plots=sorted(p.name for p in (run_dir / "plots").iterdir()))


def copy_of_reference(reference, dest):
    shutil.copytree(reference["run_dir"], Path(dest).joinpath(*RUN))
    return Path(dest).joinpath(*RUN)


# ------------------------------------------------------------------------------------------------------------------
def test_subsets_run_killed_at_six_points_resumes_to_identical_results(reference, tmp_path):
    "SIGKILL at six points of one run directory, one after the other; the seventh run finishes it identically."
    run_dir = tmp_path.joinpath(*RUN)
    record = []

    # 1. during the cross-validation tasks (phase 0: one task file per value of λ, its five folds fitted together)
    r = Run(tmp_path)
    r.wait_until(lambda: len(chunks(run_dir, "phase-0-cross_validation")) >= 2, "2 cross-validation tasks were stored",
                 poll=0.002)
    r.kill()
    n_cv = len(chunks(run_dir, "phase-0-cross_validation"))
    assert phases_stored(run_dir) == [] and 2 <= n_cv < 10, (phases_stored(run_dir), n_cv)
    check_no_broken_files(run_dir)
    record.append(f"cross-validation, {n_cv} of 10 tasks stored")

    # 2. between phases: just after phase 4 was saved (the resumed run reuses the stored cross-validation tasks)
    r = Run(tmp_path)
    r.wait_for_log("phase 4 'fixed_test_influence': saved")
    r.kill()
    reused = re.search(r"cross-validation: (\d+) of 10 chunks from the task cache", r.log)
    assert reused and int(reused.group(1)) >= n_cv, r.log[-3000:]
    assert phases_stored(run_dir) == [0, 1, 2, 4], phases_stored(run_dir)
    check_no_broken_files(run_dir)
    record.append("between phases 4 and 5")

    # 3. during the retrain tasks (phase 6: 34 retrainings in 2 task chunks of up to 32 groups)
    r = Run(tmp_path)
    r.wait_until(lambda: len(chunks(run_dir, "phase-6-retrain")) >= 1, "a retrain task chunk was stored", poll=0.002)
    r.kill()
    assert "phase 4 'fixed_test_influence': loaded" in r.log
    n_rt = len(chunks(run_dir, "phase-6-retrain"))
    assert phases_stored(run_dir) == [0, 1, 2, 4, 5] and n_rt == 1, (phases_stored(run_dir), n_rt)
    check_no_broken_files(run_dir)
    record.append(f"retrain, {n_rt} of 2 task chunks stored")

    # 4. during the Newton phase (phase 9)
    r = Run(tmp_path)
    r.wait_for_log("phase 9 'newton': computing")
    r.kill()
    assert re.search(r"retrain: \d of 2 chunks from the task cache", r.log), r.log[-3000:]
    assert 9 not in phases_stored(run_dir) and 8 in phases_stored(run_dir)
    check_no_broken_files(run_dir)
    record.append("Newton phase")

    # 5. while results.npz is being written (its temporary file exists, the final name does not yet)
    r = Run(tmp_path)
    r.wait_for_log("phase 15 'second_order': computing")
    r.wait_until(lambda: any(n.startswith(".results.npz.tmp-") for n in os.listdir(run_dir)) or
                 (run_dir / "results.npz").exists(), "results.npz was being written", poll=0)
    r.kill()
    assert "phase 8 'compute_actl_infl': loaded" in r.log
    assert phases_stored(run_dir) == [0, 1, 2, 4, 5, 6, 7, 8, 9, 11, 12, 13, 14, 15]
    caught = not (run_dir / "results.npz").exists()
    check_no_broken_files(run_dir)
    for attempt in range(3):        # the write lasts a few ms: if the kill came late, try again on the rerun's write
        if caught: break
        (run_dir / "results.npz").unlink()
        r = Run(tmp_path)
        r.wait_for_log("phase 15 'second_order': loaded")
        r.wait_until(lambda: any(n.startswith(".results.npz.tmp-") for n in os.listdir(run_dir)) or
                     (run_dir / "results.npz").exists(), "results.npz was being written", poll=0)
        r.kill()
        caught = not (run_dir / "results.npz").exists()
        check_no_broken_files(run_dir)
    assert caught, "never caught the write of results.npz in four attempts"
    assert any(is_temp_file(p) for p in run_dir.iterdir()), "the kill should have left the temporary file"
    record.append("writing results.npz")

    # 6. while the figures are drawn (results.npz and summary.csv written, plots not all yet)
    r = Run(tmp_path)
    r.wait_until(lambda: (run_dir / "summary.csv").exists(), "summary.csv was written")
    r.kill()
    assert r.log.count("loaded") == NUM_PHASES and "removed 1 temporary files of an interrupted run" in r.log, r.log
    n_plots = len(list((run_dir / "plots").glob("*.png"))) if (run_dir / "plots").exists() else 0
    assert n_plots < len(reference["plots"])
    check_no_broken_files(run_dir)
    record.append(f"drawing figures, {n_plots} of {len(reference['plots'])} written")

    # 7. the last run finishes: everything loaded, same numbers as the uninterrupted run
    r = run_to_end(tmp_path)
    assert r.log.count("loaded") == NUM_PHASES and "computing" not in r.log
    assert_identical(run_dir, reference)
    print("killed at:", "; ".join(record))


def test_a_dask_worker_killed_mid_phase_changes_nothing(reference, tmp_path):
    "`--dask-local 2`: SIGKILL one worker while the retrain tasks run; the run finishes with identical results."
    run_dir = copy_of_reference(reference, tmp_path)
    (run_dir / "results.npz").unlink()
    r = Run(tmp_path, "--dask-local", "2", "--invalidate", "6")   # phases 0-5 are reused, 6-15 run on the cluster
    r.wait_for_log("phase 6 'retrain': computing")
    workers = []
    def find_workers():
        workers[:] = [p for p in children(r.proc.pid) if b"spawn_main" in cmdline(p)]
        return len(workers) == 2
    r.wait_until(find_workers, "two Dask worker processes were found")
    time.sleep(0.5)                                           # both workers now hold a retrain task chunk
    victim = max(workers, key=cpu_ticks)
    os.kill(victim, signal.SIGKILL)
    assert "phase 6 'retrain': saved" not in r.log and len(chunks(run_dir, "phase-6-retrain")) < 3  # killed mid-phase
    assert r.finish() == 0, r.log[-5000:]
    assert "phase 6 'retrain': saved" in r.log and not alive(victim)
    assert_identical(run_dir, reference)


def test_two_runs_on_one_run_directory_one_refuses_and_nothing_is_corrupted(reference, tmp_path):
    "A second run on a held run directory exits at once with a one-line error; the first finishes identically."
    run_dir = copy_of_reference(reference, tmp_path)
    (run_dir / "results.npz").unlink()
    first = Run(tmp_path, "--invalidate", "5")               # recomputes phases 5-15 (about 15 s)
    first.wait_for_log("phase 5 'pick_subsets': computing")
    second = subprocess.run([_exe(), "run", "subsets", "--num-subsets", "2", "--out-dir", str(tmp_path)],
                            capture_output=True, text=True, env=ENV, timeout=300)
    assert first.proc.poll() is None, "the first run ended before the second tried the directory"
    assert second.returncode == 1
    errors = [l for l in second.stderr.splitlines() if l.startswith("groupinf")]
    assert "Traceback" not in second.stderr and errors == [f"groupinf: error: run directory {run_dir} is in use by process {first.proc.pid}; wait for it "
                      "to finish, or allow waiting with a lock timeout"], second.stderr
    assert "computing" not in second.stderr and "loaded" not in second.stderr
    assert first.finish() == 0, first.log[-5000:]
    assert_identical(run_dir, reference)


def test_a_damaged_phase_file_of_a_real_run_is_recomputed_to_identical_results(reference, tmp_path):
    "A flipped byte in a stored phase is detected by its content hash; only that phase is recomputed."
    run_dir = copy_of_reference(reference, tmp_path)
    p = run_dir / "phase-6-retrain.npz"
    raw = bytearray(p.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    p.write_bytes(bytes(raw))
    (run_dir / "results.npz").write_bytes(b"truncated")
    r = run_to_end(tmp_path)
    assert "phase 6 'retrain': computing (stored file is damaged)" in r.log, r.log[-3000:]
    assert r.log.count("computing") == 1 and r.log.count("loaded") == NUM_PHASES - 1
    assert_identical(run_dir, reference)


# ------------------------------------------------------------------------------------------------ processes
def children(pid):
    "Live child processes of `pid`, from /proc."
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try: fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError: continue
        if int(fields[1]) == pid and fields[0] != "Z": out.append(int(stat.parent.name))
    return out


def cmdline(pid):
    try: return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError: return b""


def cpu_ticks(pid):
    try: f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split(); return int(f[11]) + int(f[12])
    except OSError: return -1


def alive(pid):
    try: return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError: return False
