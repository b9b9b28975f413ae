"""Stage `rollout`: play episodes in an environment and write them as a `rollouts` artifact.

    wm rollout --env doom-takecover --episodes 200 --out artifacts/doom/rollouts.h5 --workers 2 --seed 0

Episodes run in parallel over the executor (local processes by default, Ray for a cluster), each
seeded from `SeedSequence(seed, spawn_key=(episode, ...))`, so the same --seed gives the same file
with any number of workers. Episodes are written in order as they finish to a partial file beside
the output, which is moved into place only when every episode is in: an interrupted run leaves no
file under the final name, and the same command run again resumes from the episodes it kept.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from wm.config import StageConfig, config_to_json, option
from wm.errors import Interrupted, OutputExistsError
from wm.policies import RANDOM_POLICIES
from wm.stage import Stage, StageResult

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
        "1-10 steps for doom-takecover, uniform otherwise).",
        choices=RANDOM_POLICIES,
    )
    env_kwargs: dict = option({}, "Extra keyword arguments for the environment, as JSON.")
    compression: str = option(
        "lzf", "Compression of the step arrays: lzf (fast), gzip (smaller, readable by every HDF5 tool) or none.",
        choices=("lzf", "gzip", "none"),
    )
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
        from wm.envs import check_env_name

        self.require_at_least(1, "episodes", "max_steps", "workers")
        self.require_positive("task_timeout")
        check_env_name(self.env)


def default_out(config: RolloutConfig) -> str:
    """artifacts/<env>/rollouts.h5"""
    return f"artifacts/{config.env}/rollouts.h5"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _open_partial(partial: Path, fingerprint: str, *, force: bool) -> bool:
    """Decide about a leftover partial file; returns True when it should be resumed."""
    from wm.io.artifact import read_fingerprint

    if not partial.exists():
        return False
    found = read_fingerprint(partial)
    if found == fingerprint:
        return True
    if force:
        partial.unlink()
        return False
    if found is None:
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
    from wm.progress import Progress

    check = Progress(writer.episodes, description="checking kept episodes", unit="ep")
    try:
        dropped = writer.verify(on_episode=check.update)
    finally:
        check.close()
    if dropped:
        _log(f"{dropped} kept episode(s) at the end of {partial} were damaged when the run was stopped; they are recorded again.")


def run(
    config: RolloutConfig,
    *,
    out: str | Path,
    seed: int,
    inputs: Mapping[str, str | Path] | None = None,
    force: bool = False,
) -> StageResult:
    """Collect `config.episodes` episodes into the rollouts artifact `out`."""
    from wm.envs import default_max_steps, make_env, random_policy_name
    from wm.envs.spaces import is_image_space, space_to_json, storage_layout
    from wm.episodes import EpisodeTask, run_episode
    from wm.io.artifact import check_output, commit, compute_fingerprint, open_h5, write_root_attributes
    from wm.io.rollouts import RolloutsWriter, partial_path
    from wm.parallel import make_executor
    from wm.policies import PolicySpec
    from wm.progress import Progress

    if config.max_steps is None:
        config = dataclasses.replace(config, max_steps=default_max_steps(config.env))
    out = Path(out)
    fingerprint = compute_fingerprint(STAGE_NAME, STAGE_VERSION, config.fingerprint_dict(), [], seed)
    if check_output(out, fingerprint, force=force):
        _log(f"{out} is up to date (fingerprint {fingerprint}); nothing to do.")
        return StageResult(out, fingerprint, "up-to-date")
    _log(f"wm rollout, seed {seed}, config: {config_to_json(config)}")

    probe = make_env(config.env, config.max_steps, **config.env_kwargs)
    observation_space, action_space = probe.observation_space, probe.action_space
    probe.close()
    policy_name = random_policy_name(config.env) if config.policy == "random" else config.policy

    partial = partial_path(out)
    resume = _open_partial(partial, fingerprint, force=force)
    # The executor starts before any file is touched: a bad backend or an unreachable cluster changes nothing.
    executor = make_executor(config.backend, config.workers, ray_address=config.ray_address, task_timeout=config.task_timeout)
    # A chunk cache larger than an episode: partial edge chunks are not evicted and re-read between appends.
    with executor, open_h5(partial, "a" if resume else "w", chunk_cache_bytes=WRITE_CHUNK_CACHE_BYTES) as f:
        if not resume:
            write_root_attributes(
                f,
                kind="rollouts",
                stage=STAGE_NAME,
                seed=seed,
                config_json=config_to_json(config),
                inputs=[],
                fingerprint=fingerprint,
                extra={
                    "env_id": config.env,
                    "env_kwargs_json": json.dumps(config.env_kwargs, sort_keys=True),
                    "observation_space_json": space_to_json(observation_space),
                    "action_space_json": space_to_json(action_space),
                    "policy": policy_name,
                    "max_steps": int(config.max_steps),
                },
            )
        writer = RolloutsWriter(
            f,
            **storage_layout(observation_space, action_space),
            compression=config.compression,
            image_obs=is_image_space(observation_space),
        )
        if writer.episodes:
            _verify_resumed(writer, partial)
            _log(f"Resuming from {partial}: {writer.episodes} of {config.episodes} episodes already done.")
        tasks = [
            EpisodeTask(config.env, int(config.max_steps), PolicySpec(config.policy), seed, index, dict(config.env_kwargs))
            for index in range(writer.episodes, config.episodes)
        ]
        progress = Progress(
            config.episodes, description=f"rollout {config.env}", unit="ep", initial=writer.episodes, secondary_unit="frames"
        )
        started = time.monotonic()
        try:
            for episode in executor.map_ordered(run_episode, tasks):
                writer.append(episode)
                progress.update(1, secondary=episode.length)
        except KeyboardInterrupt:
            raise Interrupted(
                f"Interrupted: {writer.episodes} of {config.episodes} episodes are kept in {partial}; "
                "run the same command again to resume."
            ) from None
        finally:
            progress.close()
        steps = writer.steps
        writer.finish()
    commit(partial, out)
    elapsed = time.monotonic() - started
    _log(f"Wrote {out}: {config.episodes} episodes, {steps} steps ({progress.secondary / max(elapsed, 1e-9):.0f} frames/s this run).")
    return StageResult(out, fingerprint, "written")


STAGE = Stage(
    name=STAGE_NAME,
    run=run,
    config_class=RolloutConfig,
    output_kind="rollouts",
    version=STAGE_VERSION,
    help="Play episodes in an environment and write them as a rollouts artifact.",
    default_out=default_out,
)
