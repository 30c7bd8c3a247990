"""Runs killed with SIGKILL at many points resume to the same results; concurrent runs cannot corrupt a run directory.

A toy experiment runs in a subprocess. It can be told to stop at a labelled point (a phase body, a task item, a log
message of the runner, or the moment just before a finished temporary file is renamed into place) and wait there;
the test then kills it with SIGKILL, checks that every file carrying a result name is complete, reruns it to the end
and compares its `results.npz` with that of an uninterrupted run, exactly.
"""
import json, os, random, signal, subprocess, sys, textwrap, time
from pathlib import Path

import numpy as np
import pytest

from groupinf.store import is_temp_file, load_results, read_results

TOY = textwrap.dedent('''
    import argparse, json, logging, multiprocessing, os, re, sys, time
    from pathlib import Path
    import numpy as np
    import groupinf.runner as runner
    import groupinf.store as store
    from groupinf.runner import Experiment, phase
    from groupinf.tasks import collate

    PAUSE = os.environ.get("TOY_PAUSE")            # regex over checkpoint labels
    PAUSE_COUNT = int(os.environ.get("TOY_PAUSE_COUNT", "1"))
    MARKER, RELEASE = os.environ.get("TOY_MARKER"), os.environ.get("TOY_RELEASE")
    SEEN = [0]

    def checkpoint(label):
        if not PAUSE or not re.search(PAUSE, label): return
        SEEN[0] += 1
        if SEEN[0] != PAUSE_COUNT: return
        info = {"label": label, "pid": os.getpid(), "children": [p.pid for p in multiprocessing.active_children()]}
        Path(MARKER + ".w").write_text(json.dumps(info)); os.replace(MARKER + ".w", MARKER)
        while not (RELEASE and os.path.exists(RELEASE)): time.sleep(0.02)

    class Pauser(logging.Handler):
        def emit(self, record): checkpoint("log: " + record.getMessage())

    _commit = store._commit
    def paused_commit(tmp, path):
        checkpoint("commit: " + Path(path).name)
        _commit(tmp, path)
    store._commit = paused_commit

    def item_task(i, scale, offset):
        checkpoint(f"task: {i}")
        time.sleep(0.03)
        v = np.random.RandomState(i).standard_normal(4) * scale + offset
        return {"value": float(v.sum()), "vec": v, "members": np.arange(i % 5), "tag": f"item-{i}"}

    def batch_task(values, power):
        return [float(np.sign(v) * abs(v) ** power) for v in values]

    class Toy(Experiment):
        experiment_id = "toy"
        run_id_format = "seed-{seed}_n-{n}"

        @phase(0, deps=())
        def generate(self):
            checkpoint("phase: generate")
            rng = np.random.RandomState(self.config["seed"])
            return {"x": rng.standard_normal((self.config["n"], 3)), "names": [f"p{i}" for i in range(self.config["n"])]}

        @phase(1, deps=["generate"])
        def tasks(self):
            out = self.map_tasks(item_task, range(self.config["n"]), chunk_size=2,
                                 shared={"scale": 2.0, "offset": float(self.results["x"].sum())})
            c = collate([{"value": r["value"], "vec": r["vec"]} for r in out])
            return {"task_values": c["value"], "task_vecs": c["vec"], "task_members": [r["members"] for r in out],
                    "task_tags": [r["tag"] for r in out]}

        @phase(2, deps=["tasks"])
        def batched(self):
            return {"powers": np.array(self.map_tasks(batch_task, list(self.results["task_values"]), batched=True,
                                                      chunk_size=3, shared={"power": 1.5}))}

        @phase(3)
        def summary(self):
            checkpoint("phase: summary")
            return {"total": float(self.results["task_values"].sum() + self.results["powers"].sum()),
                    "num_groups": len(self.results["task_members"]), "names": self.results["names"][:3]}

        def summarize(self):
            import pandas as pd
            return pd.DataFrame({"value": self.results["task_values"], "power": self.results["powers"]})

    if __name__ == "__main__":
        p = runner.add_executor_arguments(argparse.ArgumentParser())
        args = p.parse_args()
        runner.configure_logging("INFO")
        runner.logger.addHandler(Pauser())
        with runner.executor_from_args(args) as executor:
            exp = Toy({"seed": 0, "n": 20}, out_dir=runner.out_dir_from_args(args), executor=executor)
            try: exp.run(**runner.run_options_from_args(args))
            except runner.RunLockedError as e:
                print(f"LOCKED: {e}", file=sys.stderr)
                sys.exit(3)
''')

ENV = {k: v for k, v in os.environ.items() if not k.startswith("TOY_")}
ENV.update(TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
RUN = ("toy", "seed-0_n-20")


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    p = tmp_path_factory.mktemp("toy") / "toy.py"
    p.write_text(TOY)
    return p


def start(script, out, *args, pause=None, count=1, marker=None, release=None):
    env = dict(ENV)
    if pause:
        env.update(TOY_PAUSE=pause, TOY_PAUSE_COUNT=str(count), TOY_MARKER=str(marker))
        if release: env["TOY_RELEASE"] = str(release)
    return subprocess.Popen([sys.executable, str(script), "--out-dir", str(out), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def run(script, out, *args):
    code, err = finish(start(script, out, *args))
    assert code == 0, err
    return err


def wait_for(path, proc, timeout=120):
    t0 = time.monotonic()
    while not Path(path).exists():
        if proc.poll() is not None:
            raise AssertionError(f"the toy ended (status {proc.returncode}) before its pause point:\n{proc.stderr.read()}")
        if time.monotonic() - t0 > timeout: raise AssertionError(f"no pause marker after {timeout} s")
        time.sleep(0.02)
    return json.loads(Path(path).read_text())


def kill(proc):
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def same(a, b):
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def assert_same_results(a, b):
    assert list(a) == list(b)
    for k in a: assert same(a[k], b[k]), k


def check_no_broken_results(run_dir):
    "Every file with a result name is complete; only temporary files may be incomplete."
    for p in Path(run_dir).rglob("*"):
        if not p.is_file() or is_temp_file(p) or p.name == ".lock": continue
        if p.suffix == ".npz": read_results(p)
        elif p.name == "config.json": json.loads(p.read_text())
        elif p.name == "summary.csv":
            import pandas as pd
            assert len(pd.read_csv(p)) == 20
        elif p.name == "phases.csv":
            import pandas as pd
            assert {"name", "seconds", "peak_rss_gb"} <= set(pd.read_csv(p).columns)
        else: raise AssertionError(f"unexpected file {p}")


@pytest.fixture(scope="module")
def reference(script, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    err = run(script, out)
    assert err.count("computing") == 4 and "complete" in err
    run_dir = out.joinpath(*RUN)
    return load_results(run_dir), (run_dir / "summary.csv").read_text()


# (pause point, n-th occurrence, what the resumed run must report as reused)
KILL_POINTS = [
    ("commit: config.json", 1, []),                                              # at the very start
    ("phase: generate", 1, []),                                                  # inside phase 0, before it ends
    ("task: 7", 1, ["tasks: item_task: 3 of 10 chunks from the task cache"]),    # mid map_tasks
    ("commit: chunk-", 5, ["4 of 10 chunks from the task cache"]),               # while a chunk file is being written
    ("log: phase 1 'tasks': saved", 1, ["phase 1 'tasks': loaded"]),             # between phases
    ("commit: phase-2-batched.npz", 1, ["phase 1 'tasks': loaded"]),             # while a phase file is being written
    ("phase: summary", 1, ["phase 2 'batched': loaded"]),                        # inside the last phase
    ("commit: results.npz", 1, ["phase 3 'summary': loaded"]),                   # during the final write
    ("commit: summary.csv", 1, ["phase 3 'summary': loaded"]),                   # after results.npz, before summary.csv
]


@pytest.mark.parametrize("pause, count, reused", KILL_POINTS, ids=[p for p, _, _ in KILL_POINTS])
def test_sigkill_then_resume_gives_identical_results(script, reference, tmp_path, pause, count, reused):
    marker = tmp_path / "paused"
    proc = start(script, tmp_path, pause=pause, count=count, marker=marker)
    info = wait_for(marker, proc)
    assert info["pid"] == proc.pid
    kill(proc)
    run_dir = tmp_path.joinpath(*RUN)
    check_no_broken_results(run_dir)
    if pause.startswith("commit: "):
        assert any(is_temp_file(p) for p in run_dir.rglob("*")), "the kill should have left a temporary file"
    err = run(script, tmp_path)
    for r in reused: assert r in err, (r, err)
    assert_same_results(load_results(run_dir), reference[0])
    assert (run_dir / "summary.csv").read_text() == reference[1]
    assert not any(is_temp_file(p) for p in run_dir.rglob("*")), "temporary files left behind"
    assert not (run_dir / "tasks").exists()


def test_sigkill_at_random_moments(script, reference, tmp_path):
    rng = random.Random(0)
    run_dir = tmp_path.joinpath(*RUN)
    for delay in (rng.uniform(0.5, 2.5), rng.uniform(0.5, 2.5)):
        proc = start(script, tmp_path)
        time.sleep(delay)
        if proc.poll() is None: kill(proc)
        else: proc.communicate()
        if run_dir.exists(): check_no_broken_results(run_dir)
    run(script, tmp_path)
    assert_same_results(load_results(run_dir), reference[0])


def children_of(pid):
    "Live (non-zombie) child processes of `pid`, from /proc."
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try: fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError: continue
        if int(fields[1]) == pid and fields[0] != "Z": out.append(int(stat.parent.name))
    return out


def alive(pid):
    try: return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError: return False


def test_sigkill_with_a_process_pool_leaves_no_workers_and_resumes(script, reference, tmp_path):
    marker = tmp_path / "paused"
    proc = start(script, tmp_path, "--workers", "2", pause=r"task: 9$", marker=marker)
    wait_for(marker, proc)                                       # a pool worker is inside item 9
    workers = children_of(proc.pid)
    assert len(workers) >= 2
    kill(proc)
    t0 = time.monotonic()
    while any(alive(w) for w in workers):                        # the workers notice that their driver died
        assert time.monotonic() - t0 < 60, f"pool workers {[w for w in workers if alive(w)]} outlived their driver"
        time.sleep(0.1)
    run_dir = tmp_path.joinpath(*RUN)
    check_no_broken_results(run_dir)
    err = run(script, tmp_path, "--workers", "2")
    assert "phase 0 'generate': loaded" in err and "chunks from the task cache" in err
    assert_same_results(load_results(run_dir), reference[0])


def test_two_runs_on_one_directory_refuse_or_wait(script, reference, tmp_path):
    marker, release = tmp_path / "paused", tmp_path / "release"
    first = start(script, tmp_path, pause="task: 5", marker=marker, release=release)
    wait_for(marker, first)
    code, err = finish(start(script, tmp_path))                  # refuses at once, naming the holder
    assert code == 3 and f"in use by process {first.pid}" in err, err
    waiting = start(script, tmp_path, "--lock-timeout", "120")   # waits for the holder
    time.sleep(1.0)
    assert waiting.poll() is None
    release.write_text("go")
    code, err = finish(first)
    assert code == 0, err
    code, err = finish(waiting)
    assert code == 0, err
    assert err.count("loaded") == 4 and "computing" not in err   # it only started after the first had finished
    assert_same_results(load_results(tmp_path.joinpath(*RUN)), reference[0])
