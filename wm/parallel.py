"""One small executor interface for embarrassingly parallel work (docs/architecture.md, "Parallel work").

`map_ordered(fn, tasks)` runs `fn` on every task and yields the results in task order, keeping at
most `window` tasks in flight so that memory stays bounded however many tasks there are. Backends:

- `serial`: in this process (debugging, tests);
- `process` (default): a local pool of spawned processes;
- `ray`: Ray tasks on a local runtime or on a cluster (`ray_address`).

A worker that dies is replaced and its unfinished tasks are run again (up to `retries` times);
when no task finishes for `task_timeout` seconds the run stops with an error naming the tasks in
flight. The run never hangs silently. Errors the user caused (`WMError`) pass through unchanged.
"""

from __future__ import annotations

import concurrent.futures as futures_module
import multiprocessing
import os
import signal
import socket
import sys
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterator, Sequence

from wm.errors import UsageError, WMError, WorkerError

BACKENDS = ("process", "serial", "ray")
PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>


class Executor:
    """Base class: run tasks, yield results in order."""

    workers = 1

    def map_ordered(self, fn: Callable[[Any], Any], tasks: Sequence[Any], *, window: int | None = None) -> Iterator[Any]:
        raise NotImplementedError

    def close(self, *, kill: bool = False) -> None:
        """Release workers; `kill` stops them at once (after Ctrl-C)."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        self.close(kill=exc_type is not None)


class SerialExecutor(Executor):
    """Runs every task in this process, in order."""

    def map_ordered(self, fn, tasks, *, window=None):
        for task in tasks:
            yield fn(task)


_WORKER_CLEANUPS: list[Callable[[], None]] = []
WORKER_STOP_SECONDS = 10.0


def at_worker_exit(cleanup: Callable[[], None]) -> None:
    """Run `cleanup` when this worker process is told to stop (closes environments and their engines)."""
    if cleanup not in _WORKER_CLEANUPS:
        _WORKER_CLEANUPS.append(cleanup)


def _stop_worker(signum: int, frame: Any) -> None:
    for cleanup in _WORKER_CLEANUPS:
        try:
            cleanup()
        except Exception:  # stopping anyway; one failing cleanup must not block the others
            pass
    os._exit(128 + signum)


def _init_worker() -> None:
    # Ctrl-C goes to the whole process group; the parent decides what to do, workers must not die mid-task.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop_worker)
    # Each worker is one of `workers` processes sharing the cores: TensorFlow (agents acting through a
    # world model) gets one thread instead of one per core.
    os.environ.setdefault("WM_TF_THREADS", "1")
    if sys.platform.startswith("linux"):
        # If the parent dies (even by SIGKILL), the kernel sends this worker SIGTERM: no orphans left running.
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() == 1:  # the parent died before prctl took effect
            _stop_worker(signal.SIGTERM, None)


def _describe(indices: Sequence[int]) -> str:
    indices = sorted(indices)
    return ", ".join(str(i) for i in indices[:8]) + (" ..." if len(indices) > 8 else "")


class ProcessExecutor(Executor):
    """A local pool of spawned worker processes."""

    def __init__(self, workers: int, *, task_timeout: float | None = None, retries: int = 2):
        self.workers = int(workers)
        self.task_timeout = task_timeout
        self.retries = int(retries)
        self._pool: futures_module.ProcessPoolExecutor | None = None

    def _new_pool(self) -> futures_module.ProcessPoolExecutor:
        return futures_module.ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
        )

    def map_ordered(self, fn, tasks, *, window=None):
        tasks = list(tasks)
        window = max(1, window or 2 * self.workers)
        if self._pool is None:
            self._pool = self._new_pool()
        in_flight: dict[futures_module.Future, int] = {}
        finished: dict[int, Any] = {}
        next_submit = next_yield = restarts = 0
        while next_yield < len(tasks):
            while next_submit < len(tasks) and len(in_flight) + len(finished) < window:
                in_flight[self._pool.submit(fn, tasks[next_submit])] = next_submit
                next_submit += 1
            if next_yield in finished:
                yield finished.pop(next_yield)
                next_yield += 1
                continue
            done, _ = futures_module.wait(in_flight, timeout=self.task_timeout, return_when=futures_module.FIRST_COMPLETED)
            if not done:
                stuck = list(in_flight.values())
                self.close(kill=True)
                raise WorkerError(
                    f"No task finished in {self.task_timeout:.0f} s; the workers running tasks {_describe(stuck)} "
                    "seem hung, so the run was stopped (raise task_timeout if tasks are this slow)."
                )
            lost: list[int] = []
            for future in done:
                index = in_flight.pop(future)
                try:
                    finished[index] = future.result()
                except BrokenProcessPool:
                    lost.append(index)
                except WMError:
                    raise
                except Exception as exc:
                    raise WorkerError(f"Task {index} failed in a worker: {type(exc).__name__}: {exc}") from exc
            if lost:
                # A dead worker breaks the whole pool: every task still in flight has to run again.
                for future, index in list(in_flight.items()):
                    if future.done() and future.exception() is None:
                        finished[index] = future.result()
                    else:
                        lost.append(index)
                in_flight.clear()
                restarts += 1
                if restarts > self.retries:
                    self.close(kill=True)
                    raise WorkerError(
                        f"A worker process died {restarts} times (last while running tasks {_describe(lost)}); "
                        "giving up. A crash in the environment or running out of memory are likely causes."
                    )
                self.close(kill=True)
                self._pool = self._new_pool()
                for index in sorted(lost):
                    in_flight[self._pool.submit(fn, tasks[index])] = index

    def close(self, *, kill: bool = False) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if kill:
            # SIGTERM first so workers close their environments (ViZDoom runs a child engine process).
            processes = [p for p in list(getattr(pool, "_processes", {}).values()) if p.is_alive()]
            for process in processes:
                process.terminate()
            for process in processes:
                process.join(WORKER_STOP_SECONDS)
                if process.is_alive():
                    process.kill()
                    process.join()
            _unblock_result_reader(pool)
        pool.shutdown(wait=True, cancel_futures=True)


def _unblock_result_reader(pool: futures_module.ProcessPoolExecutor) -> None:
    """Let the pool's manager thread finish after its workers were killed.

    A worker stopped while it was writing a result (a large episode goes out in several writes)
    leaves half a message in the result pipe. The pool's manager thread then waits for the rest
    forever, and `shutdown` waits for that thread: the run would hang instead of exiting. Once
    every worker is dead, this process holds the only write end of that pipe; closing it turns
    the endless wait into end-of-file, which the manager thread treats as a broken pool.
    """
    result_queue = getattr(pool, "_result_queue", None)
    writer = getattr(result_queue, "_writer", None)
    if writer is not None:
        writer.close()


RAY_CONNECT_TIMEOUT_SECONDS = 5.0


def check_ray_address(address: str) -> None:
    """Fail fast when a Ray address does not answer: `ray.init` itself waits minutes on a dead address.

    `auto` (find the local cluster) is left to Ray; `host:port` and `ray://host:port` are probed
    with a plain TCP connection.
    """
    if address == "auto":
        return
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"Ray address '{address}' is not of the form host:port (or ray://host:port, or auto).")
    try:
        with socket.create_connection((host, int(port)), timeout=RAY_CONNECT_TIMEOUT_SECONDS):
            pass
    except OSError as exc:
        raise UsageError(
            f"Could not reach the Ray cluster at {address} ({exc.strerror or exc}); check that it is running "
            "and the address is right."
        ) from None


class RayExecutor(Executor):
    """Ray tasks on a local runtime (started and stopped here) or an existing cluster."""

    def __init__(self, workers: int, *, address: str | None = None, task_timeout: float | None = None, retries: int = 2):
        try:
            import ray
        except ImportError:
            raise UsageError(
                "--backend ray needs Ray, which is not installed; install it with pip install 'wm-worldmodels[ray]'."
            ) from None
        self.ray = ray
        self.workers = int(workers)
        self.task_timeout = task_timeout
        self.retries = int(retries)
        self._started_here = False
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
            try:
                if address:
                    check_ray_address(address)
                    ray.init(address=address, **options)
                else:
                    ray.init(num_cpus=self.workers, **options)
            except UsageError:
                raise
            except Exception as exc:  # Ray raises ConnectionError, RuntimeError or its own types here
                where = f"the Ray cluster at {address}" if address else "a local Ray runtime"
                raise UsageError(f"Could not connect to {where}: {str(exc).strip().splitlines()[0]}") from None
            self._started_here = True

    def map_ordered(self, fn, tasks, *, window=None):
        ray = self.ray
        tasks = list(tasks)
        window = max(1, window or 2 * self.workers)
        # One TensorFlow thread per task, as in the process pool (agents act through a world model in workers).
        remote = ray.remote(num_cpus=1, max_retries=self.retries, runtime_env={"env_vars": {"WM_TF_THREADS": "1"}})(fn)
        in_flight: dict[Any, int] = {}
        finished: dict[int, Any] = {}
        next_submit = next_yield = 0
        while next_yield < len(tasks):
            while next_submit < len(tasks) and len(in_flight) + len(finished) < window:
                in_flight[remote.remote(tasks[next_submit])] = next_submit
                next_submit += 1
            if next_yield in finished:
                yield finished.pop(next_yield)
                next_yield += 1
                continue
            done, _ = ray.wait(list(in_flight), num_returns=1, timeout=self.task_timeout)
            if not done:
                stuck = list(in_flight.values())
                for ref in in_flight:
                    ray.cancel(ref, force=True)
                raise WorkerError(
                    f"No Ray task finished in {self.task_timeout:.0f} s; tasks {_describe(stuck)} seem hung, "
                    "so the run was stopped (raise task_timeout if tasks are this slow)."
                )
            for ref in done:
                index = in_flight.pop(ref)
                try:
                    finished[index] = ray.get(ref)
                except Exception as exc:
                    cause = getattr(exc, "cause", None)
                    if isinstance(cause, WMError):
                        raise cause from None
                    raise WorkerError(f"Ray task {index} failed: {str(exc).strip().splitlines()[0]}") from exc

    def close(self, *, kill: bool = False) -> None:
        if self._started_here and self.ray.is_initialized():
            self.ray.shutdown()
            self._started_here = False


def make_executor(
    backend: str,
    workers: int,
    *,
    ray_address: str | None = None,
    task_timeout: float | None = None,
    retries: int = 2,
) -> Executor:
    """The executor for `backend` (process, serial or ray) with `workers` parallel workers."""
    if backend == "serial":
        return SerialExecutor()
    if backend == "process":
        return ProcessExecutor(workers, task_timeout=task_timeout, retries=retries)
    if backend == "ray":
        return RayExecutor(workers, address=ray_address, task_timeout=task_timeout, retries=retries)
    raise UsageError(f"Unknown backend '{backend}'; choose one of {', '.join(BACKENDS)}.")
