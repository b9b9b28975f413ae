"""The artifact layer: root attributes, image attributes, chunking, the validating loader, resume cut-off."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.conftest import rollout
from wm.errors import ArtifactError, OutputExistsError, UsageError
from wm.io.integrity import seal
from wm.io.artifact import ROOT_ATTRIBUTES, check_output, compute_fingerprint, open_artifact
from wm.io.rollouts import CHECKSUM, COMMITTED_EPISODES, Episode, RolloutsReader, RolloutsWriter, chunk_rows
from wm.io.schema import SCHEMAS


def test_rollouts_artifact_has_root_attributes_and_viewer_attributes(fake_rollouts):
    with h5py.File(fake_rollouts) as f:
        for name in ROOT_ATTRIBUTES:
            assert name in f.attrs, name
        assert f.attrs["wm_kind"] == "rollouts"
        assert json.loads(f.attrs["config_json"])["env"] == "fake-pixels"
        assert json.loads(f.attrs["inputs_json"]) == []
        assert "h5py" in json.loads(f.attrs["system_json"])
        obs = f["obs"]
        assert obs.attrs["CLASS"] == b"IMAGE" and obs.attrs["IMAGE_SUBCLASS"] == b"IMAGE_TRUECOLOR"
        assert obs.attrs["INTERLACE_MODE"] == b"INTERLACE_PIXEL" and obs.attrs["IMAGE_VERSION"] == b"1.2"
        assert obs.chunks == (4, 64, 64, 3) and obs.compression == "gzip" and obs.compression_opts == 1
        assert COMMITTED_EPISODES not in f.attrs  # a finished file has no resume counters


def test_chunk_rows_targets_about_64_kib():
    assert chunk_rows((64, 64, 3), 1) == 4
    assert chunk_rows((3,), 4) == 4096
    assert chunk_rows((), 1) == 4096


def test_fingerprint_depends_on_everything_that_shapes_the_result():
    base = compute_fingerprint("rollout", 1, {"episodes": 2}, [], 0)
    assert base == compute_fingerprint("rollout", 1, {"episodes": 2}, [], 0)
    assert base != compute_fingerprint("rollout", 2, {"episodes": 2}, [], 0)
    assert base != compute_fingerprint("rollout", 1, {"episodes": 3}, [], 0)
    assert base != compute_fingerprint("rollout", 1, {"episodes": 2}, [], 1)


def test_loader_refuses_each_kind_of_bad_file(tmp_path, fake_rollouts):
    missing = tmp_path / "missing.h5"
    with pytest.raises(ArtifactError, match="does not exist"):
        open_artifact(missing)
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5 at all")
    with pytest.raises(ArtifactError, match="is not an HDF5 file"):
        open_artifact(text)
    truncated = tmp_path / "truncated.h5"
    data = fake_rollouts.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="truncated or corrupted"):
        open_artifact(truncated)
    with pytest.raises(ArtifactError, match="is a 'rollouts' artifact, but a 'vae' artifact is needed"):
        open_artifact(fake_rollouts, "vae")
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["x"] = 1
    with pytest.raises(ArtifactError, match="not a wm artifact"):
        open_artifact(plain)
    newer = tmp_path / "newer.h5"
    shutil.copy(fake_rollouts, newer)
    with h5py.File(newer, "a") as f:
        f.attrs["wm_schema_version"] = SCHEMAS["rollouts"].version + 1
    with pytest.raises(ArtifactError, match="newer than this wm"):
        open_artifact(newer)
    no_index = tmp_path / "no_index.h5"
    shutil.copy(fake_rollouts, no_index)
    with h5py.File(no_index, "a") as f:
        del f["episode/return"]
    with pytest.raises(ArtifactError, match="is damaged: the dataset 'episode/return' is missing"):
        open_artifact(no_index)  # the seal tells
    # A file sealed as it is (a stage that wrote it wrong): the kind's own checks tell.
    with h5py.File(no_index, "a") as f:
        seal(f)
    with pytest.raises(ArtifactError, match="missing the dataset 'episode/return'"):
        open_artifact(no_index)
    inconsistent = tmp_path / "inconsistent.h5"
    shutil.copy(fake_rollouts, inconsistent)
    with h5py.File(inconsistent, "a") as f:
        f["reward"].resize(f["reward"].shape[0] - 1, axis=0)
        seal(f)
    with pytest.raises(ArtifactError, match="inconsistent"):
        open_artifact(inconsistent)


def test_check_output(tmp_path, fake_rollouts):
    with h5py.File(fake_rollouts) as f:
        fingerprint = f.attrs["fingerprint"]
    assert check_output(fake_rollouts, fingerprint, force=False) is True
    with pytest.raises(OutputExistsError, match="pass --force"):
        check_output(fake_rollouts, "other", force=False)
    assert check_output(fake_rollouts, "other", force=True) is False
    with pytest.raises(UsageError, match="not writable"):
        check_output(Path("/proc/wm-test/out.h5"), "x", force=False)


def _episode(index: int, length: int) -> Episode:
    return Episode(
        index=index,
        seed=index,
        obs=np.full((length, 64, 64, 3), index, np.uint8),
        action=np.zeros(length, np.int64),
        reward=np.ones(length, np.float32),
        terminated=np.eye(1, length, length - 1, dtype=bool)[0],
        truncated=np.zeros(length, bool),
    )


def test_writer_cuts_off_an_append_that_was_never_committed(tmp_path):
    path = tmp_path / "p.h5"
    settings = dict(obs_shape=(64, 64, 3), obs_dtype=np.dtype(np.uint8), action_shape=(), action_dtype=np.dtype(np.int64), compression="lzf", image_obs=True)
    with h5py.File(path, "w") as f:
        writer = RolloutsWriter(f, **settings)
        writer.append(_episode(0, 5))
        # A run killed halfway through the next append: data written, counters not yet updated.
        for name in ("obs", "reward"):
            f[name].resize(9, axis=0)
    with h5py.File(path, "a") as f:
        writer = RolloutsWriter(f, **settings)
        assert (writer.episodes, writer.steps) == (1, 5)
        assert f["obs"].shape[0] == 5 and f["reward"].shape[0] == 5
        writer.append(_episode(1, 3))
        assert f["episode/start"][:].tolist() == [0, 5] and f["episode/length"][:].tolist() == [5, 3]


def test_reader_returns_episodes_and_summary(tmp_path):
    out = rollout(tmp_path, env="fake-pixels", episodes=4)
    with open_artifact(out, "rollouts") as artifact:
        reader = RolloutsReader(artifact)
        episodes = list(reader.episodes())
        assert [e.index for e in episodes] == [0, 1, 2, 3]
        assert sum(e.length for e in episodes) == reader.num_steps
        summary = reader.summary()
        returns = np.array([e.total_return for e in episodes])
        assert summary["episodes"] == 4 and summary["return_mean"] == pytest.approx(returns.mean())
        assert summary["return_max"] == pytest.approx(returns.max())


def _damage_chunk(path, dataset: str, row: int, *, in_place_value: int | None = None) -> None:
    """Overwrite the stored bytes of the chunk holding `row`: garbage, or a constant for uncompressed data."""
    with h5py.File(path, "r") as f:
        dset = f[dataset]
        info = dset.id.get_chunk_info_by_coord((row - row % dset.chunks[0],) + (0,) * (dset.ndim - 1))
        offset, size = info.byte_offset, info.size
    with open(path, "r+b") as raw:
        raw.seek(offset)
        if in_place_value is None:
            raw.write(np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes())
        else:
            raw.write(bytes([in_place_value]) * size)


@pytest.mark.parametrize("damage", ["undecodable chunk", "extent past the commit over a damaged edge chunk", "silently changed rows"])
def test_resume_drops_episodes_a_kill_damaged_and_records_them_again(tmp_path, damage):
    path = tmp_path / "p.h5"
    compression = "none" if damage == "silently changed rows" else "lzf"
    settings = dict(obs_shape=(64, 64, 3), obs_dtype=np.dtype(np.uint8), action_shape=(), action_dtype=np.dtype(np.int64), compression=compression, image_obs=True)
    episodes = [_episode(0, 5), _episode(1, 6), _episode(2, 7)]  # rows 0-4, 5-10, 11-17; obs chunks of 4 rows
    with h5py.File(path, "w") as f:
        writer = RolloutsWriter(f, **settings)
        for episode in episodes:
            writer.append(episode)
        assert f["obs"].chunks[0] == 4
        if damage == "extent past the commit over a damaged edge chunk":
            f["obs"].resize(25, axis=0)  # killed while appending episode 3
            f["obs"][18:] = 9
    if damage == "undecodable chunk":
        _damage_chunk(path, "obs", 13)
    elif damage == "extent past the commit over a damaged edge chunk":
        _damage_chunk(path, "obs", 17)
    else:
        _damage_chunk(path, "obs", 13, in_place_value=200)
    with h5py.File(path, "a") as f:
        writer = RolloutsWriter(f, **settings)
        assert writer.verify() == 1  # episode 2 (rows 11-17) is damaged, episodes 0 and 1 are intact
        assert (writer.episodes, writer.steps) == (2, 11)
        writer.append(episodes[2])
        writer.finish()
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["obs"][:], np.concatenate([e.obs for e in episodes]))
        assert f["episode/length"][:].tolist() == [5, 6, 7] and CHECKSUM not in f


def test_verify_keeps_intact_episodes(tmp_path):
    path = tmp_path / "p.h5"
    settings = dict(obs_shape=(64, 64, 3), obs_dtype=np.dtype(np.uint8), action_shape=(), action_dtype=np.dtype(np.int64), compression="lzf", image_obs=True)
    with h5py.File(path, "w") as f:
        writer = RolloutsWriter(f, **settings)
        for index, length in enumerate((5, 6, 7)):
            writer.append(_episode(index, length))
    with h5py.File(path, "a") as f:
        checked = []
        assert RolloutsWriter(f, **settings).verify(on_episode=lambda: checked.append(1)) == 0
        assert len(checked) == 3 and f.attrs[COMMITTED_EPISODES] == 3
