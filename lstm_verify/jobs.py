"""Independent jobs run serially, in local processes or on a Dask cluster, with the same results.

A :class:`Job` names a module-level function and its arguments (so any process can run it), the
key its result is filed under, and an estimate of its cost (the progress bar advances by cost,
not by count: the report's jobs differ a thousandfold). :func:`run` runs a list of them:

- ``workers=1``: in this process, one after another;
- ``workers=k``: in ``k`` local processes (spawned: nothing inherited but the environment; a
  script that calls this needs ``if __name__ == "__main__":``, as for any spawned process);
- ``scheduler="tcp://host:8786"``: on the Dask cluster there (``distributed``, an extra).

**Threads.** Every job runs with ``threads`` threads (default 1) for torch, the BLAS and OpenMP,
wherever it runs. Results then do not depend on where a job ran: torch's parallel reductions
round differently with another number of threads, so a job must see the same number
everywhere. The local default is one process a core, so processes x threads = cores.

**No spinning.** Worker processes start with ``OMP_WAIT_POLICY=PASSIVE`` (and the thread counts)
in their environment, read when OpenMP starts: an idle OpenMP thread sleeps instead of spinning
for its next parallel region, which on a shared machine burns the cores other work needs.
:func:`quiet_threads` does the same for this process while OpenMP has not started yet.

**Steady memory.** Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_`` set, which pins
glibc's mmap threshold; a job gives the threshold back its dynamic range (:func:`steady_malloc`).

Nothing here writes files: a caller writes its results after :func:`run` returns, so an
interrupt (which stops the workers and drops what has not run) leaves nothing half written.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from dataclasses import dataclass

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True)
class Job:
    key: tuple  # where the result is filed
    function: str  # "module:function", resolved where the job runs
    args: tuple = ()
    cost: float = 1.0  # estimated, for the progress bar


def quiet_threads() -> None:
    """Ask OpenMP (torch's and the BLAS's threads) to sleep while idle, if it has not started in
    this process yet and nobody chose otherwise (``OMP_WAIT_POLICY``)."""
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@contextlib.contextmanager
def limited(threads: int):
    """torch, the BLAS and OpenMP use ``threads`` threads within the block."""
    from threadpoolctl import threadpool_limits

    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    with threadpool_limits(limits=threads):
        if torch is not None:
            torch.set_num_threads(threads)
        try:
            yield
        finally:
            if torch is not None:
                torch.set_num_threads(before)


def steady_malloc() -> bool:
    """Give glibc's malloc back its dynamic mmap threshold (up to 32 MiB) where the environment
    fixed it: setting ``MALLOC_TRIM_THRESHOLD_``, as Dask's nanny does for its workers (65536,
    its ``distributed.nanny.pre-spawn-environ``), also pins the mmap threshold at 128 KiB, so
    every tensor above that is mapped and unmapped again at each use, and a training job spends
    much of its time in page faults. Only where that variable is set and the user has not set
    ``MALLOC_MMAP_THRESHOLD_``; trimming the heap stays as asked. Whether it acted."""
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt  # glibc's; not on musl, macOS or Windows
    except (AttributeError, OSError):
        return False
    return bool(mallopt(-3, 32 * 1024 * 1024))  # M_MMAP_THRESHOLD


def execute(function: str, args: tuple, threads: int):
    """Run one job: ``function`` ("module:function") on ``args`` with ``threads`` threads."""
    steady_malloc()
    module, name = function.split(":")
    fn = getattr(importlib.import_module(module), name)
    importlib.import_module("torch")  # before limited(), so that its threads are limited too
    with limited(threads):
        return fn(*args)


def probe() -> dict:
    """What a job sees of its threads: torch's, the BLAS and OpenMP pools' (threadpoolctl), and
    OpenMP's wait policy."""
    import torch
    from threadpoolctl import threadpool_info

    return {"torch": torch.get_num_threads(), "pools": sorted({p["num_threads"] for p in threadpool_info()}),
            "wait_policy": os.environ.get("OMP_WAIT_POLICY")}  # fmt: skip


def _start_worker(threads: int) -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # an interrupt is the parent's: it stops the workers
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"


def cores() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def run(jobs: list[Job], workers: int | None = None, scheduler: str | None = None, threads: int = 1,
        progress: bool = True, desc: str = "jobs") -> dict:  # fmt: skip
    """The results of ``jobs``, by key. ``workers``: local processes (default: cores // threads;
    1 runs here); ``scheduler``: a Dask scheduler's address, instead of local processes."""
    from tqdm import tqdm

    if workers is None:
        workers = max(1, cores() // threads)
    bar = tqdm(total=sum(_units(j) for j in jobs), desc=desc, unit="cost", disable=not progress,
               file=sys.stderr, bar_format="{l_bar}{bar}| {percentage:3.0f}% [{elapsed}<{remaining}]")  # fmt: skip
    results = {}
    try:
        if scheduler is not None:
            results = _on_dask(jobs, scheduler, threads, bar)
        elif workers == 1:
            for job in jobs:
                bar.set_postfix_str(_label(job))
                results[job.key] = execute(job.function, job.args, threads)
                bar.update(_units(job))
        else:
            results = _in_processes(jobs, workers, threads, bar)
    finally:
        bar.close()
    return results


def _units(job: Job) -> int:
    """A job's cost in whole thousandths: the bar's steps add up to its total exactly (float costs
    summed in another order overshoot it, and tqdm warns)."""
    return max(1, round(job.cost * 1000))


def _label(job: Job) -> str:
    return " ".join(str(k) for k in job.key)


def _in_processes(jobs, workers, threads, bar) -> dict:
    """The jobs in ``workers`` spawned processes, each sent one job at a time over its own pipe.

    No executor: the parent is the only dispatcher, so an interrupt or a failure needs only to
    terminate the processes and join them. (concurrent.futures' manager thread can hang at exit
    when its workers are killed, on Python versions before the fixes of gh-94777, and it starts
    replacements for workers that exit.) A worker that dies (killed, ``os._exit``) ends the run
    with an error naming its job."""
    import multiprocessing
    from multiprocessing.connection import wait

    ctx = multiprocessing.get_context("spawn")
    todo = sorted(jobs, key=lambda j: -j.cost)[::-1]  # popped from the end: the costliest first
    workers = max(1, min(workers, len(jobs)))
    procs, results, busy = [], {}, {}  # busy: connection -> (its process, its job)
    try:
        for _ in range(workers):
            here, there = ctx.Pipe()
            proc = ctx.Process(target=_worker, args=(there, threads), daemon=True)
            proc.start()
            there.close()  # the worker's end is the worker's alone: its death is an end of file here
            procs.append((proc, here))
        for proc, conn in procs:
            if todo:
                busy[conn] = (proc, _send(conn, todo.pop()))
        while busy:
            for conn in wait(list(busy)):
                proc, job = busy.pop(conn)
                try:
                    ok, value, trace = conn.recv()
                except (EOFError, OSError):
                    proc.join(timeout=5)
                    raise RuntimeError(f"a worker process died running the job {_label(job)!r} "
                                       f"(exit code {proc.exitcode})") from None  # fmt: skip
                if not ok:
                    raise value from _Remote(trace)
                results[job.key] = value
                bar.set_postfix_str(_label(job))
                bar.update(_units(job))
                if todo:
                    busy[conn] = (proc, _send(conn, todo.pop()))
        for proc, conn in procs:
            conn.send(None)  # done: the worker returns
        for proc, _ in procs:
            proc.join(timeout=30)
    finally:
        for proc, conn in procs:
            if proc.is_alive():
                proc.terminate()
        for proc, conn in procs:
            proc.join()
            conn.close()
    return results


class _Remote(Exception):
    """A job's traceback in its worker process."""

    def __str__(self):
        return "\n" + self.args[0]


def _send(conn, job: Job) -> Job:
    conn.send((job.function, job.args))
    return job


def _worker(conn, threads: int) -> None:
    """A worker process: jobs from ``conn`` until None, each answered with (ok, result or
    exception, traceback text)."""
    import traceback

    _start_worker(threads)
    while True:
        message = conn.recv()
        if message is None:
            return
        try:
            answer = (True, execute(*message, threads), "")
        except Exception as exc:  # the parent raises it again
            answer = (False, exc, traceback.format_exc())
        try:
            conn.send(answer)
        except Exception as exc:  # a result or an exception that does not pickle
            conn.send((False, RuntimeError(f"the job's answer could not be sent back: {exc!r}"),
                       traceback.format_exc()))  # fmt: skip


def _on_dask(jobs, scheduler, threads, bar) -> dict:
    from .extras import require

    require("distributed", "running the report's jobs on a Dask cluster (--scheduler)", extra="dask")
    from distributed import Client, as_completed

    results = {}
    with Client(scheduler) as client:
        futures = {client.submit(execute, j.function, j.args, threads, pure=False): j
                   for j in sorted(jobs, key=lambda j: -j.cost)}  # fmt: skip
        try:
            for f in as_completed(futures):
                job = futures[f]
                results[job.key] = f.result()
                bar.set_postfix_str(_label(job))
                bar.update(_units(job))
        except BaseException:
            client.cancel(list(futures))
            raise
    return results


__all__ = ["Job", "cores", "execute", "limited", "probe", "quiet_threads", "run", "steady_malloc"]
