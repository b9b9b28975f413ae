"""Stage `rollout`: play episodes in an environment and write them as a `rollouts` artifact.

    wm rollout --env doom-takecover --episodes 200 --out artifacts/doom/rollouts.h5 --workers 2 --seed 0

    wm rollout --env doom-takecover --policy controller --controller controller.h5 --controller-noise 0.1 \
        --extend artifacts/doom/rollouts.h5 --episodes 200 --out artifacts/doom/rollouts-2.h5

Episodes run in parallel over the executor (local processes by default, Ray for a cluster), each
seeded from `SeedSequence(seed, spawn_key=(episode, ...))`, so the same --seed gives the same file
with any number of workers. `--policy controller` acts with a trained controller through the world
model it carries (the paper's iterative training collects new data this way); `--extend R.h5` starts
the output with all of R's episodes, so that later stages train on old and new data together.

Episodes are written in order as they finish to a partial file beside the output, which is moved
into place only when every episode is in: an interrupted run leaves no file under the final name,
and the same command run again resumes from the episodes it kept.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from wm.config import StageConfig, option
from wm.envs import check_env_name, default_max_steps, make_env, random_policy_name
from wm.envs.policies import RANDOM_POLICIES
from wm.envs.spaces import is_image_space, space_to_json, storage_layout
from wm.errors import ConfigError, Interrupted, OutputExistsError
from wm.io.artifact import file_identity, holds, open_h5
from wm.io.rollouts import RolloutsReader, RolloutsWriter, compression_option, partial_path
from wm.parallel import make_executor
from wm.progress import Progress, log
from wm.runner import Input, Output, Stage

STAGE_NAME = "rollout"
STAGE_VERSION = 1
WRITE_CHUNK_CACHE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class RolloutConfig(StageConfig):
    """Settings of `wm rollout`."""

    env: str = option("doom-takecover", "Environment: carracing, doom-takecover, fake-pixels, or a gymnasium id.")
    episodes: int = option(200, "Number of episodes to collect (the paper used 10,000).")
    max_steps: Optional[int] = option(
        None, "Step limit per episode; default: the environment's (1000 carracing, 2100 doom-takecover)."
    )
    policy: str = option(
        "random",
        "Acting policy. random = the environment's random process (brownian for carracing, an action held "
        "1-10 steps for doom-takecover, uniform otherwise); controller = the trained controller given by --controller.",
        choices=(*RANDOM_POLICIES, "controller"),
    )
    controller_noise: float = option(0.0, "--policy controller: std of Gaussian exploration noise added to the controller's raw output.")
    controller_params: str = option("mean", "--policy controller: a CMA-ES controller's mean or best parameters.", choices=("mean", "best"))
    env_kwargs: dict = option({}, "Extra keyword arguments for the environment, as JSON.")
    compression: str = compression_option("the frames and step arrays")
    workers: int = option(2, "Parallel worker processes (does not change the result).", fingerprint=False)
    backend: str = option(
        "process", "Where episodes run: process (local pool), serial (this process) or ray.",
        choices=("process", "serial", "ray"), fingerprint=False,
    )
    ray_address: Optional[str] = option(
        None, "Address of a running Ray cluster for --backend ray; default: start a local Ray runtime.",
        fingerprint=False,
    )
    task_timeout: float = option(
        1800.0, "Seconds without any episode finishing after which the workers are declared hung.",
        fingerprint=False,
    )

    PRESETS = {
        "tiny": {"episodes": 2, "max_steps": 40},
        "demo": {"episodes": 8},
        "paper": {"episodes": 10000},
    }

    def validate(self) -> None:
        self.require_at_least(1, "episodes", "max_steps", "workers")
        self.require_positive("task_timeout")
        if self.controller_noise < 0:
            raise ConfigError(f"'controller_noise' must be at least 0; got {self.controller_noise}.")
        check_env_name(self.env)


def default_out(config: RolloutConfig) -> str:
    """artifacts/<env>/rollouts.h5"""
    return f"artifacts/{config.env}/rollouts.h5"


def _open_partial(partial: Path, fingerprint: str, *, force: bool) -> bool:
    """Decide about a leftover partial file; returns True when it should be resumed."""
    held = holds(partial, fingerprint)
    if held in ("nothing", "same"):
        return held == "same"
    if force:
        partial.unlink()
        return False
    if held == "unreadable":
        raise OutputExistsError(
            f"{partial} holds an unfinished run that cannot be read (damaged when it was stopped?); "
            "pass --force to discard it."
        )
    raise OutputExistsError(
        f"{partial} holds an unfinished run with other settings; run that command again to resume it, "
        "or pass --force to discard it."
    )


def _verify_resumed(writer: Any, partial: Path) -> None:
    """Read the kept episodes back before appending to them (a kill can damage the last ones)."""
    check = Progress(writer.episodes, description="checking kept episodes", unit="ep")
    try:
        dropped = writer.verify(on_episode=check.update)
    finally:
        check.close()
    if dropped:
        log(f"{dropped} kept episode(s) at the end of {partial} were damaged when the run was stopped; they are recorded again.")


def prepare(config: RolloutConfig, inputs: Mapping[str, Any]) -> RolloutConfig:
    """The environment's step cap by default; --controller exactly with --policy controller, for this environment;
    --extend rollouts of the same environment."""
    from wm.worldmodels.controller_artifact import check_controller_fits

    controller, extend = inputs["controller"], inputs["extend"]
    if config.policy == "controller":
        if controller is None:
            raise ConfigError("--policy controller needs the trained controller: pass --controller CONTROLLER.h5.")
        check_controller_fits(controller, env_id=config.env)
    elif controller is not None:
        raise ConfigError("--controller is used only with --policy controller.")
    if extend is not None and extend.attr("env_id") != config.env:
        raise ConfigError(f"--extend {extend.path} was recorded in {extend.attr('env_id')}, not {config.env}; extend rollouts of the same environment.")
    if config.max_steps is None:
        config = dataclasses.replace(config, max_steps=default_max_steps(config.env))
    return config


def compute(config: RolloutConfig, inputs: Mapping[str, Any], seed: int, output: Output) -> None:
    """Collect `config.episodes` episodes (after those of `inputs['extend']`, if given) into the rollouts artifact."""
    controller, extend = inputs["controller"], inputs["extend"]
    policy_kwargs: dict[str, Any] = {}
    if controller is not None:
        policy_kwargs = {"controller": str(controller.path), "params": config.controller_params, "noise": config.controller_noise}
    policy_name = random_policy_name(config.env) if config.policy == "random" else config.policy
    if extend is not None:
        policy_name = f"{extend.attr('policy')}+{policy_name}"
    _collect(config, output, seed, policy_name, policy_kwargs, extend)


def _collect(config: RolloutConfig, output: Output, seed: int, policy_name: str, policy_kwargs: dict[str, Any], extend: Any) -> None:
    """Play the episodes into the partial file (resuming what it kept), then move it into place."""
    from wm.envs.policies import PolicySpec
    from wm.episodes import EpisodeTask, run_episode

    probe = make_env(config.env, config.max_steps, **config.env_kwargs)
    observation_space, action_space = probe.observation_space, probe.action_space
    probe.close()
    if extend is not None and (
        extend.attr("observation_space_json") != space_to_json(observation_space) or extend.attr("action_space_json") != space_to_json(action_space)
    ):
        raise ConfigError(f"--extend {extend.path} has other observation or action spaces than {config.env} with these settings.")
    kept = RolloutsReader(extend).num_episodes if extend is not None else 0
    total = kept + config.episodes

    out = output.path
    partial = partial_path(out)
    resume = _open_partial(partial, output.fingerprint, force=output.force)
    # The executor starts before any file is touched: a bad backend or an unreachable cluster changes nothing.
    executor = make_executor(config.backend, config.workers, ray_address=config.ray_address, task_timeout=config.task_timeout)
    # A chunk cache larger than an episode: partial edge chunks are not evicted and re-read between appends.
    with executor, open_h5(partial, "a" if resume else "w", chunk_cache_bytes=WRITE_CHUNK_CACHE_BYTES, resumable=True) as f:
        written = file_identity(f)
        if not resume:
            output.write_root_attributes(
                f, env_id=config.env, env_kwargs_json=json.dumps(config.env_kwargs, sort_keys=True),
                observation_space_json=space_to_json(observation_space), action_space_json=space_to_json(action_space),
                policy=policy_name, max_steps=int(config.max_steps), extended_episodes=kept,
            )
        writer = RolloutsWriter(
            f,
            **storage_layout(observation_space, action_space),
            compression=config.compression,
            image_obs=is_image_space(observation_space),
        )
        if writer.episodes:
            _verify_resumed(writer, partial)
            log(f"Resuming from {partial}: {writer.episodes} of {total} episodes already done.")
        progress = Progress(total, description=f"rollout {config.env}", unit="ep", initial=writer.episodes, secondary_unit="frames")
        started = time.monotonic()
        try:
            if writer.episodes < kept:  # the extended file's episodes first, as they are
                reader = RolloutsReader(extend)
                for index in range(writer.episodes, kept):
                    episode = reader.episode(index)
                    writer.append(episode)
                    progress.update(1, secondary=episode.length)
            # Episode indices continue after the kept ones, so a run with the same seed meets new episodes.
            tasks = [
                EpisodeTask(config.env, int(config.max_steps), PolicySpec(config.policy, policy_kwargs), seed, index, dict(config.env_kwargs))
                for index in range(writer.episodes, total)
            ]
            for episode in executor.map_ordered(run_episode, tasks):
                writer.append(episode)
                progress.update(1, secondary=episode.length)
        except KeyboardInterrupt:
            raise Interrupted(
                f"Interrupted: {writer.episodes} of {total} episodes are kept in {partial}; "
                "run the same command again to resume."
            ) from None
        finally:
            progress.close()
        steps = writer.steps
        writer.finish()
    output.commit(partial, written)
    elapsed = time.monotonic() - started
    log(f"Wrote {out}: {total} episodes, {steps} steps ({progress.secondary / max(elapsed, 1e-9):.0f} frames/s this run).")


STAGE = Stage(
    STAGE_NAME, compute, RolloutConfig, output_kind="rollouts", version=STAGE_VERSION,
    help="Play episodes in an environment and write them as a rollouts artifact.",
    inputs={
        "controller": Input("controller", "Trained controller artifact for --policy controller.", optional=True),
        "extend": Input("rollouts", "Rollouts artifact whose episodes the output starts with (same environment).", optional=True),
    },
    default_out=default_out,
    prepare=prepare,
)
