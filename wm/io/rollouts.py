"""The rollouts layout: flat, step-aligned arrays plus an episode index (docs/architecture.md, "Artifacts").

    obs[i]                  the observation on which action[i] was chosen
    action[i]               the action taken
    reward[i]               reward returned after action[i]
    terminated[i], truncated[i]   returned after action[i]
    episode/start, length, seed, return   one row per episode

The observation after an episode's last action is not stored (ViZDoom returns an all-zero frame
there). Episodes are appended as they finish to a partial file next to the output; each append is
flushed and then committed by two root attributes, so a run killed at any moment resumes from the
last committed episode, and anything written past it is cut off on reopening.

HDF5 does not journal: a kill in the middle of an append can also damage the compressed chunk that
the append shared with committed episodes. So each committed episode carries a CRC-32 of its
rows (`partial_checksum`, dropped when the file is complete), and a resumed run reads every
committed episode back and keeps only those before the first one that fails to read or to match.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np

from wm.config import option
from wm.errors import ArtifactError
from wm.io.artifact import SEAL_BYTES, Artifact, create_dataset, ensure_space, mark_as_image_stack
from wm.progress import plural

COMMITTED_EPISODES = "partial_committed_episodes"
COMMITTED_STEPS = "partial_committed_steps"
CHECKSUM = "partial_checksum"
STEP_DATASETS = ("obs", "action", "reward", "terminated", "truncated")

# Chunks of about 64 KiB: a random frame costs one small chunk read, a 50-step window a handful.
TARGET_CHUNK_BYTES = 64 * 1024


@dataclass
class Episode:
    """One finished episode, step-aligned as in the module docstring."""

    index: int
    seed: int
    obs: np.ndarray  # [T, *obs_shape]
    action: np.ndarray  # [T, A] float32 or [T] int64
    reward: np.ndarray  # [T] float32
    terminated: np.ndarray  # [T] bool
    truncated: np.ndarray  # [T] bool
    frames: np.ndarray | None = None  # [T, H, W, 3] uint8 env.render() beside obs[i], only when asked for (videos); never stored

    @property
    def length(self) -> int:
        return int(self.reward.shape[0])

    @property
    def total_return(self) -> float:
        return float(self.reward.astype(np.float64).sum())


def chunk_rows(row_shape: tuple[int, ...], itemsize: int) -> int:
    """Rows per chunk: a power of two giving chunks of about TARGET_CHUNK_BYTES."""
    row_bytes = max(1, int(np.prod(row_shape, dtype=np.int64)) * itemsize)
    rows = max(1, TARGET_CHUNK_BYTES // row_bytes)
    return int(min(4096, 2 ** int(math.log2(rows))))


COMPRESSIONS = ("gzip", "lzf", "none")


def compression_option(what: str) -> Any:
    """The `compression` config field of a stage that writes `what` (the same choices and help everywhere).

    gzip level 1 is the default: Debian's h5dump and HDFView read it (lzf is an h5py-only filter), and
    among gzip's levels it costs least (`bench/compression.py`: on doom-takecover frames 0.67x lzf's
    write rate and 0.83x its read rate, 42 % smaller; levels 2-6 write 4-35 % slower for 3-9 % less).
    It does not change the arrays, only how they are stored, so it is not part of the fingerprint.
    """
    return option("gzip", f"Compression of {what}: gzip (level 1, read by every HDF5 tool: h5dump, HDFView, h5web), lzf (writes "
                  "1.5x faster, 1.7x larger, h5py only) or none.", choices=COMPRESSIONS, fingerprint=False)


def compression_options(compression: str) -> dict[str, Any]:
    """h5py dataset keywords for a compression name (none, lzf or gzip; gzip at level 1)."""
    if compression == "none":
        return {}
    if compression == "lzf":
        return {"compression": "lzf", "shuffle": True}
    if compression == "gzip":
        return {"compression": "gzip", "compression_opts": 1, "shuffle": True}
    raise ValueError(f"unknown compression {compression!r}")


class RolloutsWriter:
    """Appends episodes to an open (partial) rollouts file; creates or resumes its datasets."""

    def __init__(
        self,
        f: h5py.File,
        *,
        obs_shape: tuple[int, ...],
        obs_dtype: np.dtype,
        action_shape: tuple[int, ...],
        action_dtype: np.dtype,
        compression: str,
        image_obs: bool,
    ):
        self.f = f
        if "obs" not in f:
            options = compression_options(compression)
            self._create("obs", obs_shape, obs_dtype, options)
            if image_obs:
                mark_as_image_stack(f["obs"])
            self._create("action", action_shape, action_dtype, options)
            for name, dtype in (("reward", np.float32), ("terminated", np.bool_), ("truncated", np.bool_)):
                self._create(name, (), np.dtype(dtype), options)
            for name, dtype in (("start", np.int64), ("length", np.int64), ("seed", np.int64), ("return", np.float64)):
                self._create(f"episode/{name}", (), np.dtype(dtype), {})
            self._create(CHECKSUM, (), np.dtype(np.uint32), {})
            f.attrs[COMMITTED_EPISODES] = 0
            f.attrs[COMMITTED_STEPS] = 0
            f.flush()
        self._truncate_to_commit()

    def _create(self, name: str, row_shape: tuple[int, ...], dtype: np.dtype, options: dict[str, Any]) -> None:
        dtype = np.dtype(dtype)
        create_dataset(
            self.f,
            name,
            shape=(0, *row_shape),
            maxshape=(None, *row_shape),
            dtype=dtype,
            chunks=(chunk_rows(row_shape, dtype.itemsize), *row_shape),
            **options,
        )

    @property
    def episodes(self) -> int:
        """Episodes committed so far."""
        return int(self.f.attrs[COMMITTED_EPISODES])

    @property
    def steps(self) -> int:
        """Steps committed so far."""
        return int(self.f.attrs[COMMITTED_STEPS])

    def _truncate_to_commit(self) -> None:
        """Cut off anything written after the last commit (a run killed mid-append)."""
        steps, episodes = self.steps, self.episodes
        for name in STEP_DATASETS:
            dataset = self.f[name]
            try:
                dataset.resize(steps, axis=0)
            except (OSError, RuntimeError):  # h5py raises either for a chunk that fails to decompress
                # Shrinking rewrites the chunk that now ends the dataset, so it fails when that chunk
                # was damaged. Cutting at the chunk's first row drops it without reading it; the
                # episodes it held then fail `verify` and are recorded again.
                dataset.resize(steps - steps % dataset.chunks[0], axis=0)
        for name in ("start", "length", "seed", "return"):
            self.f[f"episode/{name}"].resize(episodes, axis=0)
        if CHECKSUM in self.f:
            self.f[CHECKSUM].resize(episodes, axis=0)

    def verify(self, on_episode: Any = None) -> int:
        """Read every committed episode back; uncommit those from the first damaged one on.

        Returns how many episodes were uncommitted (they are recorded again). `on_episode` is
        called after each episode read (for a progress bar). Files without checksums (written
        before they existed) are only checked for readability.
        """
        committed = self.episodes
        checksums = self.f[CHECKSUM][:] if CHECKSUM in self.f else None
        good = 0
        try:
            starts, lengths = self.f["episode/start"][:committed], self.f["episode/length"][:committed]
            readable_rows = min(self.f[name].shape[0] for name in STEP_DATASETS)
            for index in range(committed):
                rows = slice(int(starts[index]), int(starts[index] + lengths[index]))
                if rows.stop > readable_rows:
                    break
                arrays = [self.f[name][rows] for name in STEP_DATASETS]
                if checksums is not None and episode_checksum(arrays) != int(checksums[index]):
                    break
                good = index + 1
                if on_episode is not None:
                    on_episode()
        except (OSError, RuntimeError, ValueError):  # a chunk that no longer decompresses
            pass
        if good < committed:
            steps = int(self.f["episode/start"][good]) if good else 0
            self.f.attrs[COMMITTED_STEPS] = steps
            self.f.attrs[COMMITTED_EPISODES] = good
            self._truncate_to_commit()
            self.f.flush()
        return committed - good

    def append(self, episode: Episode) -> None:
        """Write one episode, flush, then commit it."""
        if episode.index != self.episodes:
            raise RuntimeError(f"episode {episode.index} arrived while episode {self.episodes} was expected")
        start, length = self.steps, episode.length
        raw = sum(np.asarray(getattr(episode, name)).nbytes for name in STEP_DATASETS)  # compression only shrinks it
        ensure_space(Path(self.f.filename).parent, raw + SEAL_BYTES, f"episode {episode.index} of {self.f.filename}",
                     kept=f"the {plural(self.episodes, 'episode')} written so far are kept")
        stored = []
        for name in STEP_DATASETS:
            dataset = self.f[name]
            values = np.ascontiguousarray(getattr(episode, name), dtype=dataset.dtype)
            dataset.resize(start + length, axis=0)
            dataset[start:] = values
            stored.append(values)
        row = {"start": start, "length": length, "seed": episode.seed, "return": episode.total_return}
        row_datasets: dict[str, Any] = {f"episode/{key}": value for key, value in row.items()}
        if CHECKSUM in self.f:
            row_datasets[CHECKSUM] = episode_checksum(stored)
        for name, value in row_datasets.items():
            dataset = self.f[name]
            dataset.resize(episode.index + 1, axis=0)
            dataset[episode.index] = value
        self.f.flush()
        self.f.attrs[COMMITTED_STEPS] = start + length
        self.f.attrs[COMMITTED_EPISODES] = episode.index + 1
        self.f.flush()

    def finish(self) -> None:
        """Drop the commit counters: the file is complete."""
        del self.f.attrs[COMMITTED_EPISODES]
        del self.f.attrs[COMMITTED_STEPS]
        if CHECKSUM in self.f:
            del self.f[CHECKSUM]


def episode_checksum(arrays: list[np.ndarray]) -> int:
    """CRC-32 of an episode's step arrays (in STEP_DATASETS order, as stored)."""
    crc = 0
    for array in arrays:
        crc = zlib.crc32(np.ascontiguousarray(array).data, crc)
    return crc


class RolloutsReader:
    """Episode-wise access to a validated rollouts (or replay) artifact, without loading it whole."""

    def __init__(self, artifact: Artifact):
        self.artifact = artifact
        self.f = artifact.file
        self.starts = self.f["episode/start"][:]
        self.lengths = self.f["episode/length"][:]

    @property
    def num_episodes(self) -> int:
        return int(self.starts.shape[0])

    @property
    def num_steps(self) -> int:
        return int(self.f["reward"].shape[0])

    def episode(self, index: int) -> Episode:
        """Read episode `index` (its frames only)."""
        start, length = int(self.starts[index]), int(self.lengths[index])
        window = slice(start, start + length)
        return Episode(
            index=index,
            seed=int(self.f["episode/seed"][index]),
            obs=self.f["obs"][window],
            action=self.f["action"][window],
            reward=self.f["reward"][window],
            terminated=self.f["terminated"][window],
            truncated=self.f["truncated"][window],
        )

    def episodes(self) -> Iterator[Episode]:
        """Every episode in order, one at a time."""
        for index in range(self.num_episodes):
            yield self.episode(index)

    def summary(self) -> dict[str, Any]:
        """Episodes, steps, and return mean/std/min/max."""
        returns = self.f["episode/return"][:]
        summary: dict[str, Any] = {"episodes": self.num_episodes, "steps": self.num_steps}
        if returns.size:
            summary.update(
                return_mean=float(returns.mean()),
                return_std=float(returns.std()),
                return_min=float(returns.min()),
                return_max=float(returns.max()),
                length_mean=float(self.lengths.mean()),
                terminated_episodes=int(self.f["terminated"][:].sum()),
            )
        return summary


VAE_FRAME_SHAPE = (64, 64, 3)


def check_frames(artifact: Artifact, model: str) -> None:
    """Raise ArtifactError unless the rollouts hold 64x64 RGB uint8 frames, as the VAE (`model`) needs."""
    obs = artifact.file["obs"]
    if tuple(obs.shape[1:]) != VAE_FRAME_SHAPE or obs.dtype != np.uint8:
        raise ArtifactError(
            f"{artifact.path} holds observations of shape {tuple(obs.shape[1:])} ({obs.dtype}), which do not fit "
            f"{model}: it needs 64x64 RGB uint8 frames (record a pixel environment such as doom-takecover or carracing)."
        )


def partial_path(out: Path) -> Path:
    """Where an unfinished run of `out` keeps its episodes (same folder, so os.replace is atomic)."""
    return out.parent / f".{out.name}.partial"
