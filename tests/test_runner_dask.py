"""The runner on Dask: a LocalCluster of worker processes, a scheduler address, and a worker killed mid-phase."""
import os, signal, sys, threading, time

import cloudpickle
import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from groupinf.runner import Experiment, phase
from groupinf.tasks import DaskExecutor, collate, make_executor, map_tasks

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Dask workers need not import this test module


def slow_item(i, scale):
    time.sleep(0.2)
    rng = np.random.RandomState(i)
    return {"value": float(rng.standard_normal(20).sum() * scale), "members": np.arange(i % 4), "pid": os.getpid()}


class Retrain(Experiment):
    experiment_id = "dask_toy"
    run_id_format = "n-{n}"

    @phase(0, deps=())
    def setup(self):
        return {"scale": 1.5, "names": [f"g{i}" for i in range(self.config["n"])]}

    @phase(1, deps=["setup"])
    def retrain(self):
        out = self.map_tasks(slow_item, range(self.config["n"]), shared={"scale": self.results["scale"]}, chunk_size=1)
        return {"values": collate([{"v": r["value"]} for r in out])["v"], "members": [r["members"] for r in out],
                "worker_pids": np.array([r["pid"] for r in out])}

    @phase(2)
    def total(self):
        return {"total": float(self.results["values"].sum())}


@pytest.fixture(scope="module")
def dask_local():
    with DaskExecutor(local_workers=2) as ex:  # what --dask-local 2 starts
        yield ex


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return Retrain({"n": 20}, out_dir=tmp_path_factory.mktemp("ref"), progress=False).run()


def test_results_on_dask_equal_in_process(dask_local, reference, tmp_path):
    results = Retrain({"n": 20}, out_dir=tmp_path, executor=dask_local, progress=False).run()
    assert np.array_equal(results["values"], reference["values"]) and results["total"] == reference["total"]
    assert [m.tolist() for m in results["members"]] == [m.tolist() for m in reference["members"]]
    assert os.getpid() not in set(results["worker_pids"]) and len(set(results["worker_pids"])) == 2


def test_a_worker_killed_mid_phase_loses_nothing(dask_local, reference, tmp_path):
    exp = Retrain({"n": 20}, out_dir=tmp_path, executor=dask_local, progress=False)
    task_dir = exp.run_dir / "tasks" / "phase-1-retrain"
    victim = list(dask_local.client.run(os.getpid).values())[0]
    seen = {}

    def n_done(): return len(list(task_dir.glob("chunk-*.npz"))) if task_dir.exists() else 0

    def kill_when_some_tasks_are_done():
        while n_done() < 4:
            if watcher_stop.is_set(): return
            time.sleep(0.02)
        seen["done_at_kill"] = n_done()
        os.kill(victim, signal.SIGKILL)

    watcher_stop = threading.Event()
    watcher = threading.Thread(target=kill_when_some_tasks_are_done)
    watcher.start()
    try:
        results = exp.run()
    finally:
        watcher_stop.set()
        watcher.join()
    assert 4 <= seen.get("done_at_kill", 99) < 20, seen       # killed in the middle of the phase
    assert np.array_equal(results["values"], reference["values"]) and results["total"] == reference["total"]
    assert [m.tolist() for m in results["members"]] == [m.tolist() for m in reference["members"]]
    t0 = time.monotonic()                                     # the nanny restarts the worker
    while len(dask_local.client.scheduler_info()["workers"]) < 2 and time.monotonic() - t0 < 60: time.sleep(0.2)
    assert victim not in dask_local.client.run(os.getpid).values()


def test_scheduler_address_runs_on_an_existing_cluster(dask_local, tmp_path):
    address = dask_local.client.scheduler.address
    with make_executor(scheduler=address) as ex:               # what --scheduler ADDRESS does
        assert isinstance(ex, DaskExecutor) and ex.workers >= 1
        out = map_tasks(slow_item, range(4), shared={"scale": 2.0}, executor=ex, cache_dir=tmp_path, progress=False)
    local = map_tasks(slow_item, range(4), shared={"scale": 2.0}, progress=False)
    assert [r["value"] for r in out] == [r["value"] for r in local]
    assert dask_local.client.status == "running"              # closing that executor left the cluster alone


def test_a_failing_task_on_dask_raises_its_error(dask_local, tmp_path):
    def fails(i):
        if i == 2: raise ValueError("bad item 2")
        return i
    with pytest.raises(ValueError, match="bad item 2"):
        map_tasks(fails, range(4), executor=dask_local, cache_dir=tmp_path, chunk_size=1, progress=False)
    assert map_tasks(fails, [0, 1, 3], executor=dask_local, progress=False) == [0, 1, 3]
