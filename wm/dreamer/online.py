"""The online loop of `wm train-dreamer`: act, store finished episodes, update, evaluate, checkpoint.

Folders beside the output `X/name.h5` (as for every training stage, `wm.training`):
    X/name.ckpt/checkpoint.h5   networks, optimizers, counters, history (HDF5, no pickle)
    X/name.ckpt/replay.h5       the replay: a rollouts-layout file that grows by committed episodes
    X/name.logs/metrics.jsonl   losses and returns, keys `split/name`; TensorBoard beside it
    X/name.logs/learning.png    evaluation and training returns over environment steps

The checkpoint is taken at an episode end, so it and the replay agree; on resume the replay is cut
back to the episodes the checkpoint counted. An episode in progress at a kill is played again.
Every random draw is a function of (seed, stream, counter), so a resumed run is the killed one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from wm import rng
from wm.actions import dreamer_env_action
from wm.dreamer.replay import WindowSampler
from wm.envs.spaces import storage_layout
from wm.errors import OutputExistsError
from wm.io.artifact import commit, create_dataset, file_identity, open_h5
from wm.io.models import save_variables
from wm.io.rollouts import COMMITTED_EPISODES, COMMITTED_STEPS, Episode, RolloutsReader, RolloutsWriter
from wm.progress import Progress, log
from wm.training import MetricsLog, check_finite

METRICS_EVERY_UPDATES = 100
# Streams of the stateless seeds: (seed, stream, counter).
TRAIN_STREAM, ACT_STREAM, EVAL_STREAM, SAMPLE_STREAM, PREFILL_STREAM = 1, 2, 3, 4, 7


def stream_seed(seed: int, stream: int, counter: int) -> np.ndarray:
    """A stateless TensorFlow seed [2] int32 for counter `counter` of stream `stream` of a run."""
    return rng.tf_seed(seed, stream, counter)


def stream_rng(seed: int, stream: int, counter: int) -> np.random.Generator:
    """A NumPy generator for counter `counter` of stream `stream` of a run."""
    return rng.generator(seed, stream, counter)


@dataclass
class LoopState:
    """Counters and history of an online run (the variables are saved beside it)."""

    env_steps: int = 0
    updates: int = 0
    episodes: int = 0  # finished training episodes (= replay episodes)
    replay_steps: int = 0
    evaluations: int = 0
    episode_history: list = dataclasses.field(default_factory=list)  # [env_steps, return, length]
    eval_history: list = dataclasses.field(default_factory=list)  # {env_steps, updates, return_mean, ...}
    metric_sums: dict = dataclasses.field(default_factory=dict)
    metric_count: int = 0
    seconds: float = 0.0  # wall time of the run, summed over resumed parts
    best_evaluation: int = -1  # index in eval_history of the best evaluation so far, whose agent `best_weights` holds


@dataclass
class LiveEpisode:
    """An episode being played: the actor's recurrent state and the steps so far."""

    env: Any  # the training or the evaluation environment
    env_seed: int
    policy: str  # "random", "explore" (training), "mode" or "sample" (evaluation)
    counter: int  # numbers the episode's random streams
    observation: Any
    state: Any
    previous: Any  # the agent's last action
    done: bool = False
    steps: dict = dataclasses.field(default_factory=lambda: {key: [] for key in ("obs", "action", "reward", "terminated", "truncated")})

    @property
    def length(self) -> int:
        return len(self.steps["obs"])

    def record(self, observation: Any, action: Any, reward: float, terminated: bool, truncated: bool) -> None:
        for key, value in zip(self.steps, (observation, action, reward, terminated, truncated)):
            self.steps[key].append(value)
        self.done = bool(terminated or truncated)

    def arrays(self) -> dict[str, np.ndarray]:
        return {key: np.asarray(values) for key, values in self.steps.items()}


class OnlineRun:
    """One `wm train-dreamer` run: its agent, environment, replay, counters and files."""

    def __init__(self, config: Any, shape: Any, learning: Any, env: Any, output: Any, seed: int, attributes: dict[str, Any], prefill: Any,
                 eval_env: Any = None):
        from wm.dreamer.agent import Agent
        from wm.envs.policies import PolicySpec, make_policy
        from wm.tfsetup import keras, tensorflow

        self.tf, keras = tensorflow(), keras()
        self.config, self.shape, self.env, self.output, self.out, self.seed = config, shape, env, output, output.path, seed
        self.eval_env = env if eval_env is None else eval_env  # another episode limit (--train-max-steps), same environment
        self.attributes, self.prefill = attributes, prefill
        self.checkpoint_folder, self.log_folder = output.checkpoint_folder, output.log_folder
        self.replay_path = self.checkpoint_folder / "replay.h5"
        space = env.action_space
        self.low = getattr(space, "low", None)
        self.high = getattr(space, "high", None)

        keras.utils.set_random_seed(seed)
        self.agent = Agent(shape, learning, xla=config.xla)
        # The agent of the best evaluation so far (--keep best), beside the training one.
        self.best_weights = [self.tf.Variable(weight, trainable=False) for weight in self.agent.weights]
        self.state = LoopState()
        resumed = self._load_checkpoint()
        self.checkpoint_folder.mkdir(parents=True, exist_ok=True)
        self.replay_file = open_h5(self.replay_path, "a" if resumed else "w", resumable=True)
        self.replay_written = file_identity(self.replay_file)
        if not resumed:
            output.write_root_attributes(self.replay_file, kind="replay", **attributes)
        layout = storage_layout(env.observation_space, env.action_space)
        self.writer = RolloutsWriter(self.replay_file, **layout, compression=config.compression, image_obs=shape.image)
        if resumed:
            self._cut_replay_back()
            log(f"Resuming from {self.checkpoint.path}: {self.state.env_steps} environment steps, {self.state.updates} updates.")
        self.cem = (config.cem_horizon, config.cem_iterations, config.cem_candidates, config.cem_top)
        self.random_policy = make_policy(PolicySpec("random"), config.env, env.action_space)  # acts while the replay fills
        self.sampler = WindowSampler(self.replay_file, config.sequence_length, shape.action_kind, shape.action_dim, self.low, self.high)
        self.metrics = MetricsLog(self.log_folder)
        self._last_checkpoint = time.monotonic()
        self.checkpointed_steps = self.state.env_steps if resumed else None  # where a resumed run would go on from

    # ---- checkpoints ----

    def _variable_groups(self) -> dict[str, list[Any]]:
        agent = self.agent
        return {
            "agent": list(agent.weights),
            "model_optimizer": list(agent.model_optimizer.variables),
            "actor_optimizer": list(agent.actor_optimizer.variables),
            "critic_optimizer": list(agent.critic_optimizer.variables),
            "return_range": list(agent.return_range),
            "best_agent": self.best_weights,
        }

    def _load_checkpoint(self) -> bool:
        self.checkpoint = self.output.checkpoint().track(**self._variable_groups())
        saved = self.checkpoint.load()
        if saved is None:
            shutil.rmtree(self.checkpoint_folder, ignore_errors=True)  # a replay without a checkpoint: nothing to resume from
            return False
        self.state = LoopState(**saved[0])
        self.agent.updates.assign(self.state.updates)
        return True

    def _cut_replay_back(self) -> None:
        """Drop the replay's episodes after the checkpoint (the run goes on from there)."""
        if self.writer.episodes < self.state.episodes:
            raise OutputExistsError(f"{self.replay_path} holds fewer episodes than {self.checkpoint.path} counted; "
                                    "pass --force to discard both and start again.")
        self.replay_file.attrs[COMMITTED_EPISODES] = self.state.episodes
        self.replay_file.attrs[COMMITTED_STEPS] = self.state.replay_steps
        self.writer._truncate_to_commit()
        self.replay_file.flush()

    def save_checkpoint(self) -> None:
        """Write networks, optimizers and counters atomically (a kill while saving keeps the previous one)."""
        self.state.updates = int(self.agent.updates.numpy())
        self.checkpoint.save(dataclasses.asdict(self.state))
        self._last_checkpoint = time.monotonic()
        self.checkpointed_steps = self.state.env_steps

    # ---- acting ----

    def _new_actor_state(self, batch: int) -> tuple[dict[str, Any], Any]:
        return self.agent.rssm.initial(batch), self.tf.zeros([batch, self.shape.action_dim])

    def begin_episode(self, env_seed: int, policy: str, counter: int) -> LiveEpisode:
        """Reset the environment for one episode acted by `policy`: "random", "explore" (actor samples), or an evaluation's
        "mode" (the actor's most likely action) or "sample" (actor samples, from the evaluation's random stream)."""
        env = self.eval_env if policy in ("mode", "sample") else self.env
        observation, _ = env.reset(seed=env_seed)
        if policy == "random":
            self.random_policy.reset(stream_rng(self.seed, PREFILL_STREAM, counter))
        state, previous = self._new_actor_state(1)
        return LiveEpisode(env, env_seed, policy, counter, observation, state, previous)

    def step(self, episode: LiveEpisode) -> None:
        """Act once in the episode and record the step (the agent's `act`, or `plan` with --planner cem)."""
        tf, observation = self.tf, episode.observation
        if episode.policy == "random":
            action = self.random_policy.act(observation)
        else:
            stream = ACT_STREAM if episode.policy == "explore" else EVAL_STREAM
            step_seed = tf.constant(stream_seed(self.seed, stream, episode.counter * 100_000 + episode.length))
            if self.config.planner == "cem":
                agent_action, episode.state = self.agent.plan(tf.constant(observation[None]), episode.state, episode.previous, step_seed, *self.cem)
                if episode.policy == "explore":
                    agent_action = self._planner_noise(agent_action, step_seed)
            else:
                agent_action, episode.state = self.agent.act(tf.constant(observation[None]), episode.state, episode.previous, step_seed,
                                                             episode.policy in ("explore", "sample"))
            episode.previous = agent_action
            action = dreamer_env_action(agent_action.numpy()[0], self.shape.action_kind, self.low, self.high)
        episode.observation, reward, terminated, truncated, _ = episode.env.step(action)
        episode.record(observation, action, reward, terminated, truncated)

    def _planner_noise(self, action: Any, seed: Any) -> Any:
        """PlaNet's exploration: Gaussian noise on bounded actions; a uniform random discrete action with probability cem_noise."""
        draws = np.random.default_rng(seed.numpy().astype(np.uint32))
        action = action.numpy()
        if self.shape.action_kind == "categorical":
            if draws.random() < self.config.cem_noise:
                action = np.eye(self.shape.action_dim, dtype=np.float32)[None, draws.integers(self.shape.action_dim)]
        else:
            action = np.clip(action + self.config.cem_noise * draws.normal(size=action.shape), -1.0, 1.0).astype(np.float32)
        return self.tf.constant(action)

    # ---- learning ----

    def train_step(self) -> None:
        """One update of the agent on a batch of replay windows (the agent's `train_step`), guarded against NaN."""
        updates = int(self.agent.updates.numpy())
        batch = self.sampler.sample(self.config.batch_size, stream_rng(self.seed, SAMPLE_STREAM, updates))
        tf_batch = {key: self.tf.constant(value) for key, value in batch.items()}
        metrics = self.agent.train_step(tf_batch, self.tf.constant(stream_seed(self.seed, TRAIN_STREAM, updates)))
        values = {key: float(value) for key, value in metrics.items()}
        check_finite(values, name="train-dreamer", where=f"update {updates + 1}", checkpoint_folder=self.checkpoint_folder,
                     advice="lower the learning rates or change the seed, and run again")
        for key, value in values.items():
            self.state.metric_sums[key] = self.state.metric_sums.get(key, 0.0) + value
        self.state.metric_count += 1
        if self.state.metric_count >= METRICS_EVERY_UPDATES:
            self._flush_metrics()

    def _flush_metrics(self) -> None:
        if not self.state.metric_count:
            return
        row = {key: value / self.state.metric_count for key, value in self.state.metric_sums.items()}
        row["train/updates"] = int(self.agent.updates.numpy())
        self.metrics.write(row, self.state.env_steps)
        self.state.metric_sums, self.state.metric_count = {}, 0

    def evaluation_env_seeds(self, index: int) -> list[int]:
        """The environment seeds of evaluation `index`'s episodes (their own, apart from training's)."""
        from wm.episodes import episode_env_seed, purpose_seed

        run_seed = purpose_seed(self.seed, EVAL_STREAM, index)
        return [episode_env_seed(run_seed, episode) for episode in range(self.config.eval_episodes)]

    def _score(self, index: int, action: str) -> tuple[list[float], list[int]]:
        """Returns and lengths of evaluation `index`'s episodes, the actor's `action` ("mode" or "sample") acting."""
        returns, lengths = [], []
        for number, env_seed in enumerate(self.evaluation_env_seeds(index)):
            episode = self.begin_episode(env_seed, action, (index << 10) + number)
            while not episode.done:
                self.step(episode)
            returns.append(float(episode.arrays()["reward"].astype(np.float64).sum()))
            lengths.append(episode.length)
        return returns, lengths

    def evaluate(self) -> dict[str, float]:
        """`eval_episodes` episodes with seeds of their own, acted by --eval-action (and with --eval-both by the other
        choice too, on the same seeds); the row added to the history."""
        index, scored = self.state.evaluations, self.config.eval_action
        returns, lengths = self._score(index, scored)
        row = {
            "env_steps": self.state.env_steps, "updates": int(self.agent.updates.numpy()),
            "return_mean": float(np.mean(returns)), "return_std": float(np.std(returns)),
            "length_mean": float(np.mean(lengths)), "seconds": self.elapsed(),
        }
        if self.config.eval_both:
            other = "sample" if scored == "mode" else "mode"
            other_returns, _ = self._score(index, other)
            for action, values in ((scored, returns), (other, other_returns)):
                row[f"{action}_return_mean"], row[f"{action}_return_std"] = float(np.mean(values)), float(np.std(values))
            row["seconds"] = self.elapsed()
        self.state.eval_history.append(row)
        best = self.state.best_evaluation
        if best < 0 or row["return_mean"] >= self.state.eval_history[best]["return_mean"]:  # ties: the later, more trained agent
            for kept, weight in zip(self.best_weights, self.agent.weights):
                kept.assign(weight)
            self.state.best_evaluation = index
        self.state.evaluations += 1
        self.metrics.write({f"eval/{key}": value for key, value in row.items() if "return_" in key}, self.state.env_steps)
        return row

    def elapsed(self) -> float:
        return self.state.seconds + time.monotonic() - self._started

    # ---- the loop ----

    def train(self) -> None:
        """Step the environment until `steps` environment steps (finishing the last episode), then a last evaluation.

        Three clocks, read from the saved counters so that a resumed run keeps time: an update every
        `train_every` environment steps once `prefill_steps` are stored; an evaluation every
        `eval_every` steps, between episodes; a checkpoint every `checkpoint_seconds`, at an
        episode's end (where the replay and the counters agree).
        """
        from wm.episodes import episode_env_seed

        config, state = self.config, self.state
        self._started = time.monotonic()
        if self.prefill is not None and state.episodes == 0:
            self._fill_replay(self.prefill)
        random_until = 0 if self.prefill is not None else config.prefill_steps  # the first episodes act at random

        def update_due() -> bool:
            return state.env_steps >= config.prefill_steps and state.env_steps % config.train_every == 0 and self.sampler.ready

        def evaluation_due() -> bool:
            return state.env_steps >= max(random_until, (state.evaluations + 1) * config.eval_every)

        def checkpoint_due() -> bool:
            return time.monotonic() - self._last_checkpoint >= config.checkpoint_seconds

        progress = Progress(config.steps, description=f"train-dreamer {config.env}", unit="steps", initial=state.env_steps)
        rate_restarted = state.env_steps >= config.prefill_steps
        episode = None
        try:
            while episode is not None or state.env_steps < config.steps:
                if episode is None:
                    if evaluation_due():
                        self._report(progress, self.evaluate(), "evaluation")
                    policy = "random" if state.env_steps < random_until else "explore"
                    episode = self.begin_episode(episode_env_seed(self.seed, state.episodes), policy, state.episodes)
                self.step(episode)
                state.env_steps += 1
                if update_due():
                    self.train_step()
                if episode.done:
                    self._store(episode, progress)
                    if not rate_restarted and state.env_steps >= config.prefill_steps:
                        progress.restart_rate()  # random prefill steps run far faster than training ones
                        rate_restarted = True
                    if checkpoint_due():
                        self._save_with_time()
                    episode = None
            self._flush_metrics()
            self._report(progress, self.evaluate(), "final evaluation")
        finally:
            progress.close()
        state.seconds = self.elapsed()
        self._started = time.monotonic()

    def _fill_replay(self, prefill: Any) -> None:
        """Start the replay with the episodes of a rollouts (or replay) artifact."""
        reader = RolloutsReader(prefill)
        for episode in reader.episodes():
            self.writer.append(dataclasses.replace(episode, index=self.writer.episodes))
        log(f"Replay filled with {reader.num_episodes} episodes ({reader.num_steps} steps) of {prefill.path}.")
        self.state.episodes, self.state.replay_steps = self.writer.episodes, self.writer.steps
        self.sampler.refresh(self.writer.steps, self.replay_file["episode/start"][:])

    def _store(self, episode: LiveEpisode, progress: Any) -> None:
        """Commit a finished training episode to the replay, where the sampler sees it."""
        steps = episode.arrays()
        stored = Episode(self.state.episodes, episode.env_seed, steps["obs"], steps["action"], steps["reward"].astype(np.float32),
                         steps["terminated"], steps["truncated"])
        self.writer.append(stored)
        self.sampler.refresh(self.writer.steps, self.replay_file["episode/start"][:])
        self.state.episodes, self.state.replay_steps = self.writer.episodes, self.writer.steps
        self.state.episode_history.append([self.state.env_steps, stored.total_return, stored.length])
        progress.update(stored.length, postfix=f"return {stored.total_return:.1f}, {int(self.agent.updates.numpy())} updates")

    @staticmethod
    def _report(progress: Any, row: dict[str, float], what: str) -> None:
        both = "".join(f"; {action} {row[f'{action}_return_mean']:.1f} +- {row[f'{action}_return_std']:.1f}"
                       for action in ("mode", "sample") if f"{action}_return_mean" in row)
        progress.write(f"{what} at {row['env_steps']} steps ({row['updates']} updates): return "
                       f"{row['return_mean']:.1f} +- {row['return_std']:.1f}{both}")

    def _save_with_time(self) -> None:
        self.state.seconds = self.elapsed()
        self._started = time.monotonic()
        self.save_checkpoint()
        self.plot()

    def plot(self) -> None:
        """learning.png: evaluation returns (mean +- std) and training episode returns over environment steps."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axis = plt.subplots(figsize=(7, 4))
        if self.state.episode_history:
            history = np.asarray(self.state.episode_history, dtype=np.float64)
            axis.plot(history[:, 0], history[:, 1], ".", alpha=0.3, markersize=3, label="training episodes")
        if self.state.eval_history:
            steps = [row["env_steps"] for row in self.state.eval_history]
            mean = np.array([row["return_mean"] for row in self.state.eval_history])
            std = np.array([row["return_std"] for row in self.state.eval_history])
            described = {"mode": "mode of the actor", "sample": "actor's samples"}
            axis.plot(steps, mean, "o-", label=f"evaluation ({described[self.config.eval_action]})")
            axis.fill_between(steps, mean - std, mean + std, alpha=0.2)
            other = "sample" if self.config.eval_action == "mode" else "mode"
            if all(f"{other}_return_mean" in row for row in self.state.eval_history):
                axis.plot(steps, [row[f"{other}_return_mean"] for row in self.state.eval_history], "s--", label=f"evaluation ({described[other]})")
        axis.set_xlabel("environment steps")
        axis.set_ylabel("return")
        axis.set_title(f"wm train-dreamer {self.config.env}")
        axis.legend()
        fig.tight_layout()
        self.log_folder.mkdir(parents=True, exist_ok=True)
        path = self.log_folder / "learning.png"
        temporary = path.parent / f".{path.name}.tmp.png"
        fig.savefig(temporary, dpi=90)
        plt.close(fig)
        os.replace(temporary, path)

    # ---- the artifacts ----

    def write_artifacts(self) -> None:
        """The `dreamer` artifact at `out` and the finished replay at `<out stem>.replay.h5`; then the checkpoint goes."""
        self.plot()
        # Every environment seed this agent met, so that `wm evaluate` can stay clear of them.
        met = [int(s) for s in self.replay_file["episode/seed"][:]]
        for index in range(self.state.evaluations):
            met += self.evaluation_env_seeds(index)
        self.writer.finish()
        self.replay_file.close()
        replay_out = self.out.parent / f"{self.out.stem}.replay.h5"
        commit(self.replay_path, replay_out, self.replay_written)
        state = self.state
        final = state.eval_history[-1]
        last = len(state.eval_history) - 1
        kept_index = state.best_evaluation if self.config.keep == "best" else last
        kept = state.eval_history[kept_index]
        last_weights, best_weights = list(self.agent.weights), self.best_weights
        with self.output.artifact(
            **self.attributes, agent_shape_json=json.dumps(dataclasses.asdict(self.shape)),
            learning_json=json.dumps(dataclasses.asdict(self.agent.learning)), env_steps=state.env_steps,
            updates=int(self.agent.updates.numpy()), train_seconds=state.seconds, final_return_mean=final["return_mean"],
            final_return_std=final["return_std"], replay_path=replay_out.name, kept=self.config.keep, kept_evaluation=kept_index,
            kept_env_steps=kept["env_steps"], kept_return_mean=kept["return_mean"], kept_return_std=kept["return_std"],
            best_evaluation=state.best_evaluation,
        ) as f:
            # `agent` is the one every reader loads; the other is kept beside it unless the last evaluation was the best.
            kept_weights, other = (best_weights, last_weights) if self.config.keep == "best" else (last_weights, best_weights)
            save_variables(f.create_group("agent"), kept_weights)
            if state.best_evaluation != last:
                save_variables(f.create_group("other_agent"), other)
            create_dataset(f, "training_env_seeds", data=np.asarray(sorted(set(met)), np.uint32))
            keys = ("env_steps", "updates", "return_mean", "return_std", "length_mean", "seconds")
            if self.config.eval_both:
                keys += ("mode_return_mean", "mode_return_std", "sample_return_mean", "sample_return_std")
            for key in keys:
                create_dataset(f, f"history/eval_{key}", data=np.array([row[key] for row in state.eval_history], dtype=np.float64))
            episodes = np.asarray(state.episode_history, dtype=np.float64).reshape(-1, 3)
            create_dataset(f, "history/episode_env_steps", data=episodes[:, 0])
            create_dataset(f, "history/episode_return", data=episodes[:, 1])
            create_dataset(f, "history/episode_length", data=episodes[:, 2])
            f.attrs["history_json"] = json.dumps(state.eval_history)
        shutil.rmtree(self.checkpoint_folder, ignore_errors=True)
        best = state.eval_history[state.best_evaluation]
        log(f"Wrote {self.out}: {state.env_steps} environment steps, {int(self.agent.updates.numpy())} updates in "
            f"{state.seconds / 60:.1f} min; final evaluation {final['return_mean']:.1f} +- {final['return_std']:.1f}, best "
            f"{best['return_mean']:.1f} +- {best['return_std']:.1f} at {best['env_steps']} steps; it holds the {self.config.keep} agent; "
            f"replay in {replay_out}, curves in {self.log_folder / 'learning.png'}.")
