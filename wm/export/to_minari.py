"""`wm export minari`: a rollouts artifact as a Minari dataset, through Minari's own API.

Observations are stored raw (`jpeg_encoding=False`), so `minari.load_dataset(NAME)` gives back
exactly the frames, actions and rewards of the artifact. Episodes are streamed one at a time.

Minari wants one observation more than actions per episode (the one after the last action). wm
does not store that observation (ViZDoom's is all zeros), so the exported episodes end with an
all-zero observation; the dataset description says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np

from wm.envs.spaces import space_from_json
from wm.errors import UsageError, WMError
from wm.io.artifact import open_artifact
from wm.io.rollouts import RolloutsReader

FINAL_OBSERVATION_NOTE = (
    "The observation after each episode's last action was not recorded by wm; it is stored as zeros."
)


def _buffers(reader: RolloutsReader, episode_buffer: Any) -> Iterator[Any]:
    for episode in reader.episodes():
        observations = np.concatenate([episode.obs, np.zeros_like(episode.obs[:1])])
        yield episode_buffer(
            id=episode.index,
            seed=episode.seed,
            observations=observations,
            actions=episode.action,
            rewards=episode.reward,
            terminations=episode.terminated,
            truncations=episode.truncated,
        )


def export_minari(rollouts: str | Path, dataset_id: str, *, force: bool = False) -> Path:
    """Write `rollouts` as the local Minari dataset `dataset_id`; returns its folder."""
    try:
        import minari
    except ImportError:
        raise UsageError("Exporting to Minari needs minari; install it with pip install 'wm-worldmodels[minari]'.") from None
    from minari.data_collector import EpisodeBuffer
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        parse_dataset_id(dataset_id)
    except ValueError:
        raise UsageError(
            f"'{dataset_id}' is not a valid Minari dataset id; use (namespace/)name-v<version>, e.g. wm/doom-random-v0."
        ) from None
    with open_artifact(rollouts, "rollouts") as artifact:
        reader = RolloutsReader(artifact)
        if reader.num_episodes == 0:
            raise UsageError(f"{rollouts} holds no episodes to export.")
        if dataset_id in minari.list_local_datasets():
            if not force:
                raise UsageError(f"A local Minari dataset '{dataset_id}' already exists; pass --force to replace it.")
            minari.delete_dataset(dataset_id)
        env_id = artifact.attr("env_id")
        buffers = _buffers(reader, EpisodeBuffer)
        try:
            dataset = minari.create_dataset_from_buffers(
                dataset_id,
                [next(buffers)],
                env=None,
                observation_space=space_from_json(artifact.attr("observation_space_json")),
                action_space=space_from_json(artifact.attr("action_space_json")),
                algorithm_name=f"wm rollout, policy {artifact.attr('policy')}",
                description=f"wm rollouts of {env_id} ({artifact.fingerprint}). {FINAL_OBSERVATION_NOTE}",
                data_format="hdf5",
                jpeg_encoding=False,
            )
            for buffer in buffers:
                dataset.update_dataset_from_buffer([buffer])
        except (Exception, KeyboardInterrupt) as exc:
            if dataset_id in minari.list_local_datasets():
                minari.delete_dataset(dataset_id)  # never leave a half-written dataset behind
            if isinstance(exc, (WMError, KeyboardInterrupt)):
                raise
            raise WMError(f"Minari export failed: {type(exc).__name__}: {exc}") from exc
        return Path(dataset.storage.data_path).parent
