"""Import TensorFlow and Keras once, quietly, with wm's CPU settings.

Every module that needs TensorFlow calls `tensorflow()` instead of importing it at module level,
so that `wm --help` never starts TensorFlow. `WM_TF_THREADS` (set in parallel workers) limits its
threads. XLA stays off: on the CPU it was slower in our measurements (and compiling costs seconds
per function).

TensorFlow's start-up log lines (absl's preamble, "oneDNN custom operations are on", "Could not
find cuda drivers", "failed call to cuInit") are held back, so a command prints only wm's own
output; real errors and later warnings still show. `wm --verbose` or WM_TF_LOG=1 shows them all.

TensorFlow's oneDNN kernels are turned on unless TF_ENABLE_ONEDNN_OPTS is set: TensorFlow enables
them by default only on some x86 CPUs, and on an AMD EPYC without AVX-512 they made the VAE update
5.3 times and the MDN-RNN update 2.3 times faster, the batched dream 0.83 times as fast
(`bench/onednn.py`).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from typing import Any, Iterator

_configured = False


# TensorFlow's start-up log lines: absl's preamble, C++ INFO/WARNING lines (`I0000 00:00:1796... port.cc:153] oneDNN
# custom operations are on...`, `cudart_stub.cc`, `cpu_feature_guard.cc`) and the CUDA probe's `failed call to cuInit`.
STARTUP_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\)|[IW]\d{4} [\d:.]+ +\d+ \S+:\d+\]"
    r"|E\d{4} [\d:.]+ +\d+ cuda_\w+\.cc:\d+\] failed call to cuInit|To enable the following instructions:)"
)


def verbose() -> bool:
    """True when TensorFlow's own log lines are wanted (`wm --verbose`, or WM_TF_LOG=1 in the environment)."""
    return os.environ.get("WM_TF_LOG", "") not in ("", "0")


def _import_quietly() -> Any:
    """`import tensorflow` with its start-up lines held back (anything else it prints is passed on).

    TensorFlow's libraries log while they load, before any setting can reach absl (TF_CPP_MIN_LOG_LEVEL
    does not stop those lines, and they are written to file descriptor 2 directly), so the
    descriptor is pointed at a temporary file during the import and the GPU probe, and every line
    that is not start-up noise is written back. Later warnings and errors are not touched.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")  # the CUDA probe logs here (it leaves the thread settings open)
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode(errors="replace").splitlines() if not STARTUP_NOISE.match(line)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
    return tf


def tensorflow() -> Any:
    """The `tensorflow` module, configured for wm (quiet start-up, Keras on TF, XLA auto-clustering off).

    With `wm --verbose` or WM_TF_LOG=1, TensorFlow's own log lines are shown (TF_CPP_MIN_LOG_LEVEL 0).
    """
    global _configured
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose() else "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # read once, when TensorFlow starts
    if "tensorflow" in sys.modules or verbose():
        import tensorflow as tf
    else:
        tf = _import_quietly()

    if not _configured:
        if not verbose():
            import absl.logging

            absl.logging.set_verbosity(absl.logging.ERROR)
            tf.get_logger().setLevel("ERROR")
        tf.config.optimizer.set_jit(False)
        threads = int(os.environ.get("WM_TF_THREADS", "0"))
        if threads:  # set in parallel workers (wm.parallel); must happen before TensorFlow runs anything
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        _configured = True
    return tf


def keras() -> Any:
    """The Keras 3 module, on the TensorFlow backend."""
    tensorflow()
    import keras

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(f"wm needs Keras on the TensorFlow backend; KERAS_BACKEND is {keras.backend.backend()!r}.")
    return keras


# "mixed_bfloat16": layers compute in bfloat16 and keep float32 weights (Keras mixed precision).
PRECISIONS = ("float32", "mixed_bfloat16")


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Keras layers created inside compute in `name` (one of PRECISIONS); the global policy is restored after."""
    k = keras()
    previous = k.config.dtype_policy()
    k.config.set_dtype_policy(name)
    try:
        yield
    finally:
        k.config.set_dtype_policy(previous)
