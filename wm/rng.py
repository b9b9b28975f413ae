"""Seeds of every random stream, and counter-based random numbers for batched dreams.

Every stream of a run (an episode's environment seed, a policy's generator, a dream's key, a
training loop's draws) is `SeedSequence(seed, spawn_key=key)` with a key naming its purpose
(`seed_sequence`, `generator`, `int_seed`, `tf_seed`), so streams never overlap and a resumed or
re-run computation draws the same numbers.

A draw is a pure function of (key, counter, stream, element): the key belongs to one dream, the
counter is its step, the stream names what the draw is for (the start frame, the mixture component,
the noise, ...), and the element is the position inside that draw's shape. Nothing depends on which
other dreams share the batch or in which order they run, so a dream stepped alone gives the same
trajectory as the same dream stepped among thousands (`tests/test_dream.py` checks this), and
finished dreams can be dropped from a batch without changing the others.

The mixer is Chris Wellons' `lowbias32` integer hash, applied in rounds (uint32 arithmetic wraps
the same way in TensorFlow and NumPy; `numpy_uniform` is the NumPy twin the tests compare with).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from wm.tfsetup import tensorflow

GOLDEN = 0x9E3779B9  # spreads stream numbers over the 32-bit range
MASK32 = 0xFFFFFFFF


# --- Seeds: every random stream of a run derives from its --seed and a key naming the stream's purpose ----------


def seed_sequence(seed: int, *key: int) -> np.random.SeedSequence:
    """The SeedSequence of stream `key` of a run with `seed` (the one convention every stream follows)."""
    return np.random.SeedSequence(entropy=seed, spawn_key=tuple(int(k) for k in key))


def generator(seed: int, *key: int) -> np.random.Generator:
    """A NumPy generator for stream `key` of a run with `seed`."""
    return np.random.default_rng(seed_sequence(seed, *key))


def int_seed(seed: int, *key: int) -> int:
    """A 32-bit integer seed for stream `key` (an environment's reset seed, a derived run seed)."""
    return int(seed_sequence(seed, *key).generate_state(1, np.uint32)[0])


def tf_seed(seed: int, *key: int) -> np.ndarray:
    """A stateless TensorFlow seed [2] int32 for stream `key`."""
    return (seed_sequence(seed, *key).generate_state(2, np.uint32) >> 1).astype(np.int32)


def data_generator(seed: int, *words: int) -> np.random.Generator:
    """The generator of a training-data shuffle, from the words (seed, tag, epoch).

    The shuffles of V's frames and M's windows were seeded from entropy words before the keys above
    existed; they keep that form so that a run gives the same weights as before.
    """
    return np.random.default_rng(np.random.SeedSequence([seed, *words]))


def key_from_seed(seed_sequence: np.random.SeedSequence) -> np.ndarray:
    """A [2] uint32 key drawn from a SeedSequence."""
    return seed_sequence.generate_state(2, np.uint32)


def keys_from_seeds(entropy: int, spawn_keys: Sequence[Sequence[int]]) -> np.ndarray:
    """[n, 2] uint32 dream keys, one per stream key of the run seed `entropy`."""
    return np.stack([key_from_seed(seed_sequence(entropy, *k)) for k in spawn_keys]).astype(np.uint32)


# --- NumPy twin (tests, and small draws outside TensorFlow) ------------------------------------------


def _np_hash(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.uint32)
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint32(16))
        x = x * np.uint32(0x7FEB352D)
        x = x ^ (x >> np.uint32(15))
        x = x * np.uint32(0x846CA68B)
        x = x ^ (x >> np.uint32(16))
    return x


def _element_hashes(stream: int, size: int) -> np.ndarray:
    """The per-element part of a draw of `size` numbers from `stream` (a constant of the draw's shape)."""
    with np.errstate(over="ignore"):
        return _np_hash(np.uint32((stream * GOLDEN) & MASK32) + np.arange(size, dtype=np.uint32))


def _np_bits(keys: np.ndarray, counter: Any, stream: int, shape: tuple[int, ...]) -> np.ndarray:
    keys = np.asarray(keys, np.uint32)
    counter = np.broadcast_to(np.asarray(counter, np.uint32), keys.shape[:1])
    size = math.prod(shape)
    element = _element_hashes(stream, size)  # [E]
    with np.errstate(over="ignore"):
        row = _np_hash(keys[:, 0] ^ _np_hash(keys[:, 1] ^ _np_hash(counter)))  # [n]
        bits = _np_hash(_np_hash(row[:, None] ^ element[None, :]) + row[:, None])
    return bits.reshape(len(keys), *shape)


def numpy_uniform(keys: np.ndarray, counter: Any, stream: int, shape: tuple[int, ...] = ()) -> np.ndarray:
    """Uniform draws in (0, 1), [n, *shape] float32 (the NumPy twin of `uniform`)."""
    bits = _np_bits(keys, counter, stream, shape)
    return (((bits >> np.uint32(8)).astype(np.float32) + np.float32(0.5)) * np.float32(2.0**-24)).astype(np.float32)


def numpy_normal(keys: np.ndarray, counter: Any, stream: int, shape: tuple[int, ...] = ()) -> np.ndarray:
    """Standard normal draws, [n, *shape] float32 (Box-Muller on streams 2*stream and 2*stream + 1)."""
    u1 = numpy_uniform(keys, counter, 2 * stream + 0x100, shape)
    u2 = numpy_uniform(keys, counter, 2 * stream + 0x101, shape)
    return (np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)).astype(np.float32)


# --- TensorFlow (inside compiled dream loops) ---------------------------------------------------------


def _tf():
    return tensorflow()


def _tf_hash(x: Any) -> Any:
    tf = _tf()
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, tf.uint32)))
    x = x * tf.constant(0x7FEB352D, tf.uint32)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(15, tf.uint32)))
    x = x * tf.constant(0x846CA68B, tf.uint32)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, tf.uint32)))


def uniform(keys: Any, counter: Any, stream: int, shape: tuple[int, ...] = ()) -> Any:
    """Uniform draws in (0, 1), [n, *shape] float32, for keys [n, 2] uint32 and a step counter (scalar or [n])."""
    tf = _tf()
    size = math.prod(shape)
    counter = tf.broadcast_to(tf.cast(counter, tf.uint32), tf.shape(keys)[:1])
    element = tf.constant(_element_hashes(stream, size))  # [E]
    row = _tf_hash(tf.bitwise.bitwise_xor(keys[:, 0], _tf_hash(tf.bitwise.bitwise_xor(keys[:, 1], _tf_hash(counter)))))  # [n]
    bits = _tf_hash(_tf_hash(tf.bitwise.bitwise_xor(row[:, None], element[None, :])) + row[:, None])  # [n, E]
    values = (tf.cast(tf.bitwise.right_shift(bits, tf.constant(8, tf.uint32)), tf.float32) + 0.5) * (2.0**-24)
    return tf.reshape(values, tf.concat([tf.shape(keys)[:1], tf.constant(shape, tf.int32)], axis=0)) if shape else values[:, 0]


def normal(keys: Any, counter: Any, stream: int, shape: tuple[int, ...] = ()) -> Any:
    """Standard normal draws, [n, *shape] float32 (Box-Muller, as `numpy_normal`)."""
    tf = _tf()
    u1 = uniform(keys, counter, 2 * stream + 0x100, shape)
    u2 = uniform(keys, counter, 2 * stream + 0x101, shape)
    return tf.sqrt(-2.0 * tf.math.log(u1)) * tf.cos(2.0 * math.pi * u2)


def numpy_fold_in(keys: np.ndarray, data: Any) -> np.ndarray:
    """New keys [n, 2] that depend on `keys` and an integer per row (an episode number, say)."""
    keys = np.asarray(keys, np.uint32)
    data = np.broadcast_to(np.asarray(data, np.uint32), keys.shape[:1])
    with np.errstate(over="ignore"):
        first = _np_hash(keys[:, 0] ^ _np_hash(data + np.uint32(GOLDEN)))
        second = _np_hash(keys[:, 1] + first)
    return np.stack([first, second], axis=1)


def fold_in(keys: Any, data: Any) -> Any:
    """TensorFlow twin of `numpy_fold_in`."""
    tf = _tf()
    data = tf.broadcast_to(tf.cast(data, tf.uint32), tf.shape(keys)[:1])
    first = _tf_hash(tf.bitwise.bitwise_xor(keys[:, 0], _tf_hash(data + tf.constant(GOLDEN, tf.uint32))))
    second = _tf_hash(keys[:, 1] + first)
    return tf.stack([first, second], axis=1)
