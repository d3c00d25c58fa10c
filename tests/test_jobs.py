"""The report's jobs (lstm_verify.jobs): the same results serially, in local processes and on a
Dask LocalCluster; one thread a job; idle OpenMP threads that sleep; interrupts."""

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading

import pytest

from lstm_verify import jobs
from lstm_verify import report as rp

pytest.importorskip("torch", reason="the report's jobs train torch cells (the extra 'report')")
pytest.importorskip("threadpoolctl", reason="threads are limited with threadpoolctl (the extra 'report')")


def _small():
    st = rp.Settings.make(["rnn_tanh", "gru", "lstm"], quick=True)
    st.lags, st.spectra_steps, st.batch = 30, 20, 2
    st.learn_T = {"adding": [5], "order": [5]}
    st.max_steps, st.seeds, st.trained_T = 200, 2, 5
    return st


def _without_times(d):
    if isinstance(d, dict):
        return {k: _without_times(v) for k, v in d.items() if k != "seconds"}
    if isinstance(d, list):
        return [_without_times(v) for v in d]
    return d


def _same(a, b):
    return json.dumps(_without_times(a), sort_keys=True) == json.dumps(_without_times(b), sort_keys=True)


def test_serial_processes_and_a_local_cluster_give_the_same_report():
    st = _small()
    serial = rp.build(st, progress=False, workers=1)
    assert serial["learning"] and serial["trained"] and serial["flow"]["gru"]
    assert _same(serial, rp.build(st, progress=False, workers=2))
    distributed = pytest.importorskip("distributed", reason="Dask's distributed is not installed (the extra 'dask')")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl:
        assert _same(serial, rp.build(st, progress=False, scheduler=cl.scheduler_address))
    # and the data changes where a job's input changes: the comparison can fail
    st.seeds = 1
    assert not _same(serial, rp.build(st, progress=False, workers=1))


def test_every_job_runs_on_one_thread_and_workers_sleep_when_idle():
    import torch

    before = torch.get_num_threads()
    probe = [jobs.Job(("probe", k), "lstm_verify.jobs:probe") for k in range(3)]
    local = jobs.run(probe, workers=2, progress=False)
    assert all(p == {"torch": 1, "pools": [1], "wait_policy": "PASSIVE"} for p in local.values())
    here = jobs.run(probe, workers=1, progress=False)
    assert all(p["torch"] == 1 and p["pools"] == [1] for p in here.values())
    assert torch.get_num_threads() == before  # this process's threads are given back


def test_results_are_filed_by_key_whatever_order_they_finish_in():
    work = [jobs.Job(("n", k), "math:factorial", (k,), cost=k + 1) for k in range(8)]
    assert jobs.run(work, workers=2, progress=False) == {("n", k): __import__("math").factorial(k) for k in range(8)}


def test_a_failing_job_raises_and_stops_the_workers():
    work = [jobs.Job(("bad",), "math:sqrt", (-1.0,))] + [jobs.Job(("sleep", k), "time:sleep", (30,)) for k in range(3)]
    with pytest.raises(ValueError, match="math domain error"):
        jobs.run(work, workers=2, progress=False)
    for p in multiprocessing.active_children():
        p.join(timeout=10)
    assert not multiprocessing.active_children()


def test_an_interrupt_stops_the_workers():
    work = [jobs.Job(("sleep", k), "time:sleep", (30,)) for k in range(4)]
    # pytest-xdist's workers ignore SIGINT: this test wants Python's own handler
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(3.0, os.kill, (os.getpid(), signal.SIGINT))  # a signal wakes the waiting parent
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            jobs.run(work, workers=2, progress=False)
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, before)
    for p in multiprocessing.active_children():
        p.join(timeout=10)
    assert not multiprocessing.active_children()


@pytest.mark.skipif(os.name != "posix", reason="SIGINT to a child process")
def test_interrupting_the_report_writes_nothing(tmp_path):
    out = tmp_path / "report"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # SIGINT as a terminal sends it: pytest-xdist's workers ignore it, and so would their children,
    # so the child installs Python's handler before running the command (no preexec_fn: no fork)
    argv = ["report", "--quick", "-j", "2", "-o", str(out)]
    run = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
           f"from lstm_verify.cli import main; sys.exit(main({argv!r}))")  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", run], stderr=subprocess.PIPE, text=True, env=env)
    seen = ""
    for line in iter(lambda: proc.stderr.read(64), ""):  # the progress bar is on: the jobs have started
        seen += line
        if "report:" in seen and "%" in seen:
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, seen + err
    assert "interrupted" in err
    assert not out.exists() or not any(p.name != ".lstm-verify-report" for p in out.iterdir())


def test_the_scheduler_option_names_its_extra(monkeypatch):
    from lstm_verify.errors import MissingExtraError

    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(MissingExtraError, match="dask"):
        jobs.run([jobs.Job(("n",), "math:factorial", (3,))], scheduler="tcp://127.0.0.1:1", progress=False)


def test_a_worker_that_dies_ends_the_run_with_an_error_naming_its_job():
    work = [jobs.Job(("dies",), "os:_exit", (3,), cost=2)] + [jobs.Job(("n", k), "math:factorial", (k,)) for k in range(4)]
    with pytest.raises(RuntimeError, match=r"a worker process died running the job 'dies' \(exit code 3\)"):
        jobs.run(work, workers=2, progress=False)
    assert not multiprocessing.active_children()


def test_a_failing_job_shows_its_traceback_from_the_worker():
    with pytest.raises(ValueError, match="math domain error") as info:
        jobs.run([jobs.Job(("bad",), "math:sqrt", (-1.0,)), jobs.Job(("ok",), "math:sqrt", (4.0,))], workers=2,
                 progress=False)  # fmt: skip
    assert "Traceback" in str(info.value.__cause__) and "execute" in str(info.value.__cause__)


FAULTS = """
import resource, sys
import numpy as np
from lstm_verify import jobs
acted = jobs.steady_malloc() if sys.argv[1] == "steady" else None
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
keep = []
for _ in range(300):  # as in training: a large tensor freed while smaller ones made after it live on
    a = np.ones(1 << 18)  # 2 MiB, written
    keep.append(np.ones(1000))
    del a
print(acted, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_a_job_under_dasks_malloc_setting_reuses_its_memory():
    def faults(mode, **env):
        out = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True,
                             env={k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | env)  # fmt: skip
        acted, n = out.stdout.split()
        return acted, int(n)

    dask = {"MALLOC_TRIM_THRESHOLD_": "65536"}  # as Dask's nanny starts its workers
    pinned, steady = faults("plain", **dask), faults("steady", **dask)
    assert steady[0] == "True" and faults("steady")[0] == "False"  # it acts only where the threshold was pinned
    assert pinned[1] > 300 * 400  # every 2 MiB array mapped afresh: about 512 page faults each
    assert steady[1] < pinned[1] / 4, (pinned, steady)
    assert faults("steady", MALLOC_MMAP_THRESHOLD_="131072", **dask)[0] == "False"  # the user's own choice stays
