"""The executor: ordered results, retries after a worker dies, hang detection, error reporting."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests import workers
from wm.envs.reaper import child_processes
from wm.errors import UsageError, WorkerError
from wm.parallel import make_executor


@pytest.mark.parametrize("backend", ["serial", "process"])
def test_results_come_back_in_task_order(backend):
    with make_executor(backend, 2) as executor:
        assert list(executor.map_ordered(workers.square, range(12), window=3)) == [x * x for x in range(12)]


def test_a_dead_worker_is_replaced_and_its_task_run_again(tmp_path):
    tasks = [(x, str(tmp_path / "marker")) for x in range(6)]
    with make_executor("process", 2) as executor:
        assert list(executor.map_ordered(workers.die_once, tasks)) == list(range(6))
    assert (tmp_path / "marker").exists()


def test_a_task_that_keeps_killing_workers_fails_loudly():
    with make_executor("process", 2, retries=1) as executor:
        with pytest.raises(WorkerError, match="died 2 times"):
            list(executor.map_ordered(workers.always_die, range(2)))


def test_a_hung_worker_is_reported_instead_of_waited_for():
    started = time.monotonic()
    with make_executor("process", 1, task_timeout=2) as executor:
        with pytest.raises(WorkerError, match="No task finished in 2 s"):
            list(executor.map_ordered(workers.hang, range(2)))
    assert time.monotonic() - started < 30


@pytest.mark.timeout(60)
def test_a_worker_killed_while_sending_its_result_does_not_hang_the_run():
    # The pool's own manager thread then waits forever for the rest of the message; stopping the
    # pool must still return (it used to hang in shutdown, after Ctrl-C or an error mid-run).
    started = time.monotonic()
    with make_executor("process", 1, task_timeout=2, retries=0) as executor:
        with pytest.raises(WorkerError, match="No task finished in 2 s"):
            list(executor.map_ordered(workers.die_while_sending_result, range(1)))
    assert time.monotonic() - started < 30


def test_task_errors_are_reported_and_user_errors_pass_through():
    with make_executor("process", 1) as executor:
        with pytest.raises(WorkerError, match="Task 0 failed in a worker: ValueError: bad task 0"):
            list(executor.map_ordered(workers.fail, range(1)))
    with make_executor("process", 1) as executor:
        with pytest.raises(UsageError, match="the user's mistake"):
            list(executor.map_ordered(workers.user_error, range(1)))


def test_unknown_backend():
    with pytest.raises(UsageError, match="Unknown backend 'mpi'"):
        make_executor("mpi", 2)


def _has_reaper(pid: int) -> bool:
    """True once `pid` has started its reaper (wm.envs.reaper), which it does right after an engine starts."""
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                if b"watched = set()" in handle.read():
                    with open(f"/proc/{entry}/stat") as stat:
                        if int(stat.read().rsplit(")", 1)[1].split()[1]) == pid:
                            return True
        except OSError:
            continue
    return False


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended; only its record is left
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the reaper watches Linux processes")
def test_the_serial_backends_engine_dies_with_its_process_even_after_sigkill(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "wm", "rollout", "--env", "doom-takecover", "--episodes", "1000", "--backend", "serial", "--out", "r.h5"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not (engines := child_processes("vizdoom", process.pid)) or not _has_reaper(process.pid):
            assert process.poll() is None and time.monotonic() < deadline, "the rollout never started an engine and its reaper"
            time.sleep(0.2)
    finally:
        process.kill()
        process.wait(timeout=60)
    deadline = time.monotonic() + 30
    while any(_running(pid) for pid in engines) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_running(pid) for pid in engines), f"engines {engines} outlived their process"
