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

Nothing here writes files: a caller writes its results after :func:`run` returns, so an
interrupt (which cancels what has not run and stops the workers) leaves nothing half written.
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


def execute(function: str, args: tuple, threads: int):
    """Run one job: ``function`` ("module:function") on ``args`` with ``threads`` threads."""
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
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    results = {}
    others = set(multiprocessing.active_children())
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker, initargs=(threads,))  # fmt: skip
    try:
        # the costliest first: the long jobs do not end up last, alone on one core
        futures = {pool.submit(execute, j.function, j.args, threads): j
                   for j in sorted(jobs, key=lambda j: -j.cost)}  # fmt: skip
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                job = futures[f]
                results[job.key] = f.result()
                bar.set_postfix_str(_label(job))
                bar.update(_units(job))
    except BaseException:
        manager = getattr(pool, "_executor_manager_thread", None)  # shutdown() forgets it
        pool.shutdown(wait=False, cancel_futures=True)
        # an interrupt stops the running jobs too: every process started since the pool was made.
        # The pool's manager thread replaces a worker that exits, so terminate until it has
        # stopped (it does once its workers are gone) and no new process is left.
        for _ in range(100):
            mine = set(multiprocessing.active_children()) - others
            for p in mine:
                p.terminate()
            for p in mine:
                p.join(timeout=30)
            if manager is not None:
                manager.join(timeout=0.1)
            alive = manager is not None and manager.is_alive()
            if not alive and not set(multiprocessing.active_children()) - others:
                break
        raise
    pool.shutdown()
    return results


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


__all__ = ["Job", "cores", "execute", "limited", "probe", "quiet_threads", "run"]
