"""Import TensorFlow and Keras once, quietly, with wm's CPU settings.

Every module that needs TensorFlow calls `tensorflow()` instead of importing it at module level,
so that `wm --help` never starts TensorFlow. `WM_TF_THREADS` (set in parallel workers) limits its threads. XLA stays off: on the CPU it was slower in our
measurements (and compiling costs seconds per function).

TensorFlow's oneDNN kernels are turned on unless TF_ENABLE_ONEDNN_OPTS is set: TensorFlow enables
them by default only on some x86 CPUs, and on an AMD EPYC without AVX-512 they made the VAE update
5.3 times and the MDN-RNN update 2.3 times faster, the batched dream 0.83 times as fast
(`bench/onednn.py`).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

_configured = False


def tensorflow() -> Any:
    """The `tensorflow` module, configured for wm (quiet logs, Keras on TF, XLA auto-clustering off)."""
    global _configured
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # read once, when TensorFlow starts
    import tensorflow as tf

    if not _configured:
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
