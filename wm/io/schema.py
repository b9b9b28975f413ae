"""The on-disk schema of each artifact kind: its version and the checks its loader applies.

A kind's `version` is bumped whenever its layout changes incompatibly; the loader refuses files
newer than it knows. Version 2 added the contents record (`wm.io.integrity`) to every kind. Kinds whose stages have not landed yet are listed so that the names are
reserved and recognised, with no dataset checks until their stage defines them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import h5py
import numpy as np

from wm.errors import ArtifactError


@dataclass(frozen=True)
class KindSchema:
    """What one artifact kind must contain."""

    version: int
    required_datasets: tuple[str, ...] = ()
    required_attributes: tuple[str, ...] = ()
    check: Callable[[h5py.File, Path], None] | None = field(default=None, compare=False)


def _check_rollouts(f: h5py.File, path: Path) -> None:
    """Step-aligned arrays share one length; the episode index tiles them exactly."""
    _check_step_aligned(f, path, ("obs", "action", "terminated", "truncated"), "wm rollout")


def _check_step_aligned(f: h5py.File, path: Path, names: tuple[str, ...], writer: str) -> None:
    steps = f["reward"].shape[0]
    for name in names:
        if f[name].shape[0] != steps:
            raise ArtifactError(
                f"{path} is inconsistent: '{name}' has {f[name].shape[0]} rows but 'reward' has {steps}; "
                f"write it again with `{writer}`."
            )
    episodes = f["episode/start"].shape[0]
    for name in ("episode/length", "episode/seed", "episode/return"):
        if f[name].shape[0] != episodes:
            raise ArtifactError(f"{path} is inconsistent: '{name}' does not have one row per episode.")
    lengths = f["episode/length"][:]
    starts = f["episode/start"][:]
    if int(lengths.sum()) != steps or (episodes and (starts[0] != 0 or (starts[1:] != (starts + lengths)[:-1]).any())):
        raise ArtifactError(f"{path} is inconsistent: the episode index does not tile the {steps} steps.")


def _check_latents(f: h5py.File, path: Path) -> None:
    """Latents are step-aligned like rollouts, with mu and logvar in place of obs."""
    if f["mu"].shape != f["logvar"].shape:
        raise ArtifactError(f"{path} is inconsistent: 'mu' and 'logvar' differ in shape; write it again with `wm encode`.")
    _check_step_aligned(f, path, ("mu", "logvar", "action", "terminated", "truncated"), "wm encode")


def _check_controller(f: h5py.File, path: Path) -> None:
    """A CMA-ES controller holds its parameter vectors, a PPO controller its policy network, and both V and M."""
    algo = f.attrs["algo"]
    algo = algo.decode() if isinstance(algo, bytes) else str(algo)
    needed = {"cmaes": ("params/mean", "params/best"), "ppo": ("policy/00000",)}.get(algo)
    if needed is None:
        raise ArtifactError(f"{path} has an unknown controller algorithm '{algo}'.")
    for name in (*needed, "vae/00000", "mdnrnn/00000"):
        if name not in f:
            raise ArtifactError(f"{path} is missing the dataset '{name}' that a {algo} controller needs; train it again.")


ROLLOUT_DATASETS = (
    "obs",
    "action",
    "reward",
    "terminated",
    "truncated",
    "episode/start",
    "episode/length",
    "episode/seed",
    "episode/return",
)

SCHEMAS: dict[str, KindSchema] = {
    "rollouts": KindSchema(
        version=2,
        required_datasets=ROLLOUT_DATASETS,
        required_attributes=("env_id", "observation_space_json", "action_space_json", "policy"),
        check=_check_rollouts,
    ),
    # Same step-aligned layout as rollouts; written by the Dreamer stage.
    "replay": KindSchema(version=2, required_datasets=ROLLOUT_DATASETS, check=_check_rollouts),
    "vae": KindSchema(
        version=2,
        required_datasets=("model/00000", "samples/original", "samples/reconstruction"),
        required_attributes=("latent_dim", "env_id", "rollouts_fingerprint"),
    ),
    "latents": KindSchema(
        version=2,
        required_datasets=(
            "mu", "logvar", "action", "reward", "terminated", "truncated",
            "episode/start", "episode/length", "episode/seed", "episode/return",
        ),
        required_attributes=("latent_dim", "env_id", "action_space_json", "vae_fingerprint", "rollouts_fingerprint"),
        check=_check_latents,
    ),
    "mdnrnn": KindSchema(
        version=2,
        required_datasets=("model/00000", "initial/mu", "initial/logvar"),
        required_attributes=("latent_dim", "env_id", "action_space_json", "vae_fingerprint", "latents_fingerprint"),
    ),
    "controller": KindSchema(
        version=2,
        required_datasets=("initial/mu", "initial/logvar", "training_env_seeds"),
        required_attributes=("env_id", "action_space_json", "layout_json", "algo", "vae_fingerprint", "mdnrnn_fingerprint"),
        check=_check_controller,
    ),
    "evaluation": KindSchema(
        version=2,
        required_datasets=("episode/return", "episode/length", "episode/seed", "dream/return"),
        required_attributes=("env_id", "mean_return", "std_return"),
    ),
    "fidelity": KindSchema(
        version=2,
        required_datasets=("open_loop/horizon", "open_loop/nll", "open_loop/done_auc"),
        required_attributes=("env_id", "rules_json", "policies_json", "summary_json", "open_loop_json", "episodes"),
    ),
    "dreamer": KindSchema(
        version=2,
        required_datasets=("agent/00000", "history/eval_return_mean", "history/episode_return", "training_env_seeds"),
        required_attributes=("env_id", "observation_space_json", "action_space_json", "agent_shape_json", "learning_json"),
    ),
}


# Root attributes every artifact carries, with the Python types h5py reads them as.
ROOT_ATTRIBUTE_TYPES: dict[str, tuple[type, ...]] = {
    "wm_kind": (str,), "wm_version": (str,), "created_utc": (str,), "stage": (str,), "fingerprint": (str,),
    "seed": (int, np.integer), "config_json": (str,), "inputs_json": (str,), "system_json": (str,),
}


def _check_attribute_types(kind: str, f: h5py.File, path: Path) -> None:
    """Root attributes have their types, and every `*_json` attribute parses (so readers can trust both)."""
    for name, types in ROOT_ATTRIBUTE_TYPES.items():
        value = f.attrs.get(name)
        if value is not None and (not isinstance(value, types) or isinstance(value, (bool, np.bool_))):
            raise ArtifactError(f"{path} has a root attribute '{name}' of type {type(value).__name__}, not {types[0].__name__}; write it again.")
    for name in f.attrs:
        if name.endswith("_json"):
            try:
                json.loads(f.attrs[name])
            except (TypeError, ValueError):
                raise ArtifactError(f"{path} has a root attribute '{name}' that is not JSON; write it again.") from None


def validate_artifact(kind: str, f: h5py.File, path: Path) -> None:
    """Raise ArtifactError if `f` lacks what its kind requires or is internally inconsistent."""
    schema = SCHEMAS[kind]
    for name in schema.required_attributes:
        if name not in f.attrs:
            raise ArtifactError(f"{path} is missing the root attribute '{name}' that a {kind} artifact needs.")
    _check_attribute_types(kind, f, path)
    for name in schema.required_datasets:
        if name not in f or not isinstance(f[name], h5py.Dataset):
            raise ArtifactError(
                f"{path} is missing the dataset '{name}' that a {kind} artifact needs; write it again."
            )
    if schema.check is not None:
        schema.check(f, path)
