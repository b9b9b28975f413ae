"""Stage `evaluate`: a trained controller (or Dreamer agent) scored the paper's way, in the real environment, with fresh seeds.

    wm evaluate --controller controller.h5 --episodes 100 --out eval.h5 --video best.gif
    wm evaluate --dreamer dreamer.h5 --episodes 100 --out eval.h5                  # the actor's most likely actions
    wm evaluate --dreamer dreamer.h5 --planner cem --episodes 10 --out planet.h5   # PlaNet's planner on its world model

Runs `episodes` real episodes in parallel over the executor, with environment seeds drawn for
evaluation only and checked against every seed the controller met in training (`training_env_seeds`),
and reports the mean +- standard deviation of the returns (the paper: 100 episodes). Beside it, the
same controller's score in the dream it was trained in (`dream_episodes` dreams). `--video` replays
the best and the worst episode and writes them side by side (the frames the agent saw, or env.render()
where it observes numbers).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from wm.config import StageConfig, option
from wm.envs import ENVIRONMENTS, default_max_steps, frames_per_step
from wm.errors import ConfigError, Interrupted, UsageError
from wm.io.artifact import create_dataset, open_artifact
from wm.io.inspect import evaluation_sentence
from wm.media import labelled_columns, write_video
from wm.parallel import make_executor
from wm.progress import Progress, log, plural
from wm.rng import keys_from_seeds
from wm.runner import Input, Output, Stage

STAGE_NAME = "evaluate"
STAGE_VERSION = 1
REAL_EVALUATION, DREAM_EVALUATION = 11, 12  # seed purposes, distinct from training's


@dataclass(frozen=True)
class EvaluateConfig(StageConfig):
    """Settings of `wm evaluate`."""

    episodes: int = option(100, "Real episodes (the paper: 100).")
    params: str = option("mean", "CMA-ES controllers: the distribution's mean (the paper) or the best candidate seen.", choices=("mean", "best"))
    max_steps: Optional[int] = option(None, "Step cap of an episode; default: the environment's (2100 doom-takecover, 1000 carracing).")
    dream_episodes: int = option(100, "Dreams to score the controller in beside the real score (0: none).")
    temperature: Optional[float] = option(None, "Temperature of those dreams; default: the one the controller was trained with.")
    z_mode: str = option("sample", "z is sampled from q(z | x) (the paper) or its mean.", choices=("sample", "mean"))
    env_kwargs: dict = option({}, "Extra keyword arguments for the environment, as JSON.")
    video: Optional[str] = option(None, "Also write the best and the worst episode side by side to this .gif or .mp4.", fingerprint=False)
    video_every: int = option(2, "Keep every n-th frame in the video.", fingerprint=False)
    workers: int = option(2, "Parallel worker processes (does not change the result).", fingerprint=False)
    backend: str = option("process", "Where episodes run: process, serial or ray.", choices=("process", "serial", "ray"), fingerprint=False)
    ray_address: Optional[str] = option(None, "Address of a running Ray cluster for --backend ray.", fingerprint=False)
    task_timeout: float = option(1800.0, "Seconds without any episode finishing after which the workers are declared hung.", fingerprint=False)
    planner: str = option("actor", "Dreamer agents: act with the actor's most likely action, or plan with the cross-entropy method over the world model (PlaNet).", choices=("actor", "cem"))
    actor_action: str = option("mode", "Dreamer agents with --planner actor: the actor's most likely action (DreamerV2's evaluation, and train-dreamer's by default: --eval-action) or a sample of it (DreamerV3's: its policy samples in evaluation too).", choices=("mode", "sample"), fingerprint="unless-default")
    cem_horizon: int = option(12, "CEM planning horizon (PlaNet: 12).")
    cem_iterations: int = option(10, "CEM refits per step (PlaNet: 10).")
    cem_candidates: int = option(1000, "CEM action sequences per refit (PlaNet: 1000).")
    cem_top: int = option(100, "CEM elites the distribution is refit to (PlaNet: 100).")

    PRESETS = {"tiny": {"episodes": 3, "dream_episodes": 4, "max_steps": 40}, "demo": {"episodes": 24}, "paper": {"episodes": 100}}

    def validate(self) -> None:
        self.require_at_least(1, "episodes", "max_steps", "workers", "video_every", "cem_horizon", "cem_iterations", "cem_top")
        if self.cem_candidates < self.cem_top:
            raise ConfigError(f"'cem_candidates' ({self.cem_candidates}) must be at least 'cem_top' ({self.cem_top}).")
        self.require_at_least(0, "dream_episodes")
        self.require_positive("task_timeout")
        if self.planner == "cem" and self.actor_action != "mode":
            raise ConfigError("--actor-action applies to --planner actor; with --planner cem the planner chooses the actions.")
        from wm.worldmodels.dream.rules import check_temperature

        check_temperature(self.temperature)
        if self.video is not None:
            from wm.media import check_media_path

            check_media_path(Path(self.video))


def default_out(config: EvaluateConfig) -> str:
    return "artifacts/evaluation.h5"


def evaluation_seeds(seed: int, episodes: int, avoid: set[int], purpose: int = REAL_EVALUATION) -> tuple[int, list[int]]:
    """The run seed and the `episodes` episode indices of an evaluation, skipping any whose env seed is in `avoid`."""
    from wm.episodes import episode_env_seed, purpose_seed

    run_seed = purpose_seed(seed, purpose)
    indices, index = [], 0
    while len(indices) < episodes:
        if episode_env_seed(run_seed, index) not in avoid:
            indices.append(index)
        index += 1
    return run_seed, indices


def prepare(config: EvaluateConfig, inputs: Mapping[str, Any]) -> EvaluateConfig:
    """Exactly one agent (a controller or a Dreamer agent); the step cap of its environment by default."""
    given = [name for name in ("controller", "dreamer") if inputs[name] is not None]
    if len(given) != 1:
        raise UsageError("Give exactly one of --controller C.h5 and --dreamer D.h5.")
    if config.max_steps is None:
        config = dataclasses.replace(config, max_steps=default_max_steps(inputs[given[0]].attr("env_id")))
    return config


def compute(config: EvaluateConfig, inputs: Mapping[str, Any], seed: int, output: Output) -> None:
    """Score the agent over real episodes with fresh seeds (and in its dream); write the `evaluation` artifact."""
    from wm.worldmodels.controller_artifact import dream_rules_of, layout_of

    kind = "controller" if inputs["controller"] is not None else "dreamer"
    agent = inputs[kind]
    env_id = agent.attr("env_id")
    if kind == "dreamer":
        log(f"Scoring {dreamer_agent_description(agent)}{', sampling its actor' if config.actor_action == 'sample' else ''}.")
    avoid = {int(s) for s in agent.file["training_env_seeds"][:]}
    run_seed, indices = evaluation_seeds(seed, config.episodes, avoid)
    returns, lengths, env_seeds, action_counts = _real_episodes(config, kind, str(agent.path), env_id, run_seed, indices)
    overlap = set(env_seeds) & avoid
    assert not overlap, f"evaluation seeds {sorted(overlap)} were used in training"  # evaluation_seeds excludes them

    rules = dream_rules_of(agent) if kind == "controller" else None
    dream_returns = dream_lengths = np.zeros(0)
    temperature = config.temperature if config.temperature is not None else (rules.temperature if rules else None)
    if config.dream_episodes and rules is not None:
        dream_returns, dream_lengths = _dream_scores(agent, layout_of(agent), rules, temperature, config, seed)
    algo = agent.attr("algo") if kind == "controller" else "dreamer" if config.planner == "actor" else "planet-cem"
    nan = float("nan")
    with output.artifact(
        env_id=env_id, algo=algo, controller_fingerprint=agent.fingerprint, run_seed=run_seed,
        mean_return=float(returns.mean()), std_return=float(returns.std()),
        dream_mean_return=float(dream_returns.mean()) if len(dream_returns) else nan,
        dream_std_return=float(dream_returns.std()) if len(dream_returns) else nan,
        dream_temperature=float(temperature) if temperature is not None else nan,
        **({"dreamer_agent": str(agent.file.attrs.get("kept", "last")), "actor_action": config.actor_action} if kind == "dreamer" else {}),
    ) as f:
        create_dataset(f, "episode/return", data=returns)
        create_dataset(f, "episode/length", data=lengths)
        create_dataset(f, "episode/seed", data=np.asarray(env_seeds, np.uint32))
        create_dataset(f, "episode/index", data=np.asarray(indices, np.int64))
        if all(counts is not None for counts in action_counts):
            width = max(len(counts) for counts in action_counts)
            create_dataset(f, "episode/action_counts", data=np.asarray([np.pad(c, (0, width - len(c))) for c in action_counts], np.int64))
        create_dataset(f, "dream/return", data=np.asarray(dream_returns, np.float64))
        create_dataset(f, "dream/length", data=np.asarray(dream_lengths, np.int64))

    print(evaluation_sentence(output.path), flush=True)
    log(f"Wrote {output.path}.")


def dreamer_agent_description(artifact: Any) -> str:
    """Which of a `dreamer` artifact's agents its readers load: the last one, or the one of its best evaluation."""
    kept = artifact.file.attrs.get("kept", "last")  # artifacts from before --keep hold the last agent only
    repeat = frames_per_step(artifact)
    acting = f"; it acts every {repeat} frames and holds its action in between" if repeat > 1 else ""
    if kept == "best":
        beside = "the last agent is stored beside it" if "other_agent" in artifact.file else "it is also the last agent"
        return (f"the best evaluated agent of {artifact.path} (evaluation at {int(artifact.attr('kept_env_steps'))} environment steps: "
                f"{artifact.attr('kept_return_mean'):.1f} +- {artifact.attr('kept_return_std'):.1f}; {beside}{acting})")
    return (f"the last agent of {artifact.path} (final evaluation {artifact.attr('final_return_mean'):.1f} +- "
            f"{artifact.attr('final_return_std'):.1f} after {int(artifact.attr('env_steps'))} environment steps{acting})")


def _real_episodes(config: EvaluateConfig, kind: str, path: str, env_id: str, run_seed: int, indices: list[int]) -> tuple:
    """(returns, lengths, env seeds, action counts) of the real episodes `indices`, played in parallel."""
    from wm.episodes import EpisodeTask, run_episode

    spec = _policy_spec(config, kind, path)
    tasks = [EpisodeTask(env_id, int(config.max_steps), spec, run_seed, index, dict(config.env_kwargs), record_frames=False) for index in indices]
    returns, lengths, env_seeds, action_counts = [], [], [], []
    progress = Progress(len(tasks), description=f"evaluate {env_id}", unit="ep", secondary_unit="frames")
    executor = make_executor(config.backend, config.workers, ray_address=config.ray_address, task_timeout=config.task_timeout)
    try:
        with executor:
            for episode in executor.map_ordered(run_episode, tasks):
                returns.append(episode.total_return)
                lengths.append(episode.length)
                env_seeds.append(episode.seed)
                action_counts.append(_action_counts(episode.action))
                progress.update(1, secondary=episode.length, postfix=f"mean return {np.mean(returns):.1f}")
    except KeyboardInterrupt:
        raise Interrupted(f"Interrupted after {plural(len(returns), 'episode')}; nothing was written.") from None
    finally:
        progress.close()
    return np.asarray(returns, np.float64), np.asarray(lengths, np.int64), env_seeds, action_counts


def side_outputs(config: EvaluateConfig, inputs: Mapping[str, Any], seed: int, output: Output) -> None:
    """--video: the best and the worst episode of the evaluation, replayed from their seeds."""
    if not config.video:
        return

    kind = "controller" if inputs["controller"] is not None else "dreamer"
    with open_artifact(output.path, "evaluation") as evaluation:
        run_seed, indices, returns = evaluation.attr("run_seed"), evaluation.file["episode/index"][:], evaluation.file["episode/return"][:]
    _write_video(config, kind, str(inputs[kind].path), inputs[kind].attr("env_id"), run_seed, indices, returns)


def _action_counts(actions: np.ndarray) -> np.ndarray | None:
    """How often the episode took each discrete action (None for continuous actions)."""
    actions = np.asarray(actions)
    if actions.ndim != 1 or not np.issubdtype(actions.dtype, np.integer):
        return None
    return np.bincount(actions.astype(np.int64), minlength=1)


def _policy_spec(config: EvaluateConfig, kind: str, path: str) -> Any:
    """How a worker acts with the evaluated artifact: a controller through its V and M, or a Dreamer agent."""
    from wm.envs.policies import PolicySpec

    if kind == "dreamer":
        return PolicySpec("dreamer", {"dreamer": path, "planner": config.planner, "actor_action": config.actor_action,
                                      "cem_horizon": config.cem_horizon, "cem_iterations": config.cem_iterations,
                                      "cem_candidates": config.cem_candidates, "cem_top": config.cem_top})
    return PolicySpec("controller", {"controller": path, "params": config.params, "z_mode": config.z_mode})


def _dream_scores(controller: Any, layout: Any, rules: Any, temperature: float, config: EvaluateConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The controller's returns in the dream of the world model it carries."""
    from wm.worldmodels.controller_artifact import actor_of, dream_with_actor
    from wm.worldmodels.dream.batched import Dream
    from wm.worldmodels.dream.world import world_model_of

    world = world_model_of(controller, with_vae=False)
    actor = actor_of(controller, config.params)
    rules = dataclasses.replace(rules, temperature=float(temperature), max_steps=int(config.max_steps))
    run_dreams = dream_with_actor(Dream(world.mdnrnn, world.initial_mu, world.initial_logvar, rules), layout, actor)
    return run_dreams(keys_from_seeds(seed, [(DREAM_EVALUATION, i) for i in range(config.dream_episodes)]))


def _write_video(config: EvaluateConfig, kind: str, controller_path: str, env_id: str, run_seed: int, indices: np.ndarray, returns: np.ndarray) -> None:
    """Replay the best and the worst episode (same seeds) and write them side by side."""
    from wm.episodes import EpisodeTask, run_episode

    best, worst = int(np.argmax(returns)), int(np.argmin(returns))
    spec = _policy_spec(config, kind, controller_path)
    # wm's own environments observe 64x64 frames; a gymnasium id (CartPole, Pendulum) observes numbers, so its video is
    # what env.render() draws, same episodes (rendering draws no random numbers).
    rendered = env_id not in ENVIRONMENTS
    env_kwargs = {**config.env_kwargs, "render_mode": "rgb_array"} if rendered else dict(config.env_kwargs)
    tasks = [EpisodeTask(env_id, int(config.max_steps), spec, int(run_seed), int(indices[i]), env_kwargs, render=rendered) for i in (best, worst)]
    with make_executor(config.backend, config.workers, ray_address=config.ray_address, task_timeout=config.task_timeout) as executor:
        replays = list(executor.map_ordered(run_episode, tasks))
    length = max(episode.length for episode in replays)
    columns = [_padded_frames(e.frames if rendered else e.obs, length)[:: config.video_every] for e in replays]
    labels = [f"best {replays[0].total_return:.0f}", f"worst {replays[1].total_return:.0f}"]
    write_video(labelled_columns(columns, labels, 1 if rendered else 3), Path(config.video), fps=35.0 / config.video_every)
    log(f"Wrote {config.video}: the best (return {replays[0].total_return:.0f}) and the worst episode "
        f"(return {replays[1].total_return:.0f}), replayed from their seeds.")


def _padded_frames(frames: np.ndarray, length: int, largest_side: int = 300) -> np.ndarray:
    """[length, H, W, 3] frames: the last one held to `length`, big renderings shrunk (every k-th pixel) to about `largest_side`."""
    step = max(1, -(-max(frames.shape[1:3]) // largest_side))
    frames = frames[:, ::step, ::step]
    return np.concatenate([frames, np.repeat(frames[-1:], length - len(frames), axis=0)])


STAGE = Stage(
    STAGE_NAME, compute, EvaluateConfig, output_kind="evaluation", version=STAGE_VERSION,
    help="Score a trained controller or Dreamer agent in the real environment with fresh seeds (and in its dream), the paper's way.",
    inputs={
        "controller": Input("controller", "A controller artifact (wm train-controller).", optional=True),
        "dreamer": Input("dreamer", "A Dreamer agent (wm train-dreamer), instead of --controller.", optional=True),
    },
    default_out=default_out,
    prepare=prepare,
    side_outputs=side_outputs,
)
