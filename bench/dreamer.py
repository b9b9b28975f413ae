"""Dreamer on 2 cores: training speed, and memory against replay size.

1. For the `cartpole` (vector) and `doom-takecover` (64x64 images) settings of `wm train-dreamer`,
   measured in one run on the same agent code the stage uses:
   - training updates per second (a batch of 16 x 50 windows sampled from a replay file, the
     world-model update, imagination of 15 steps from every posterior state, actor and critic);
   - environment steps per second while acting (the actor's posterior update and sample, and the
     environment's step);
   - the resulting environment steps per second of the whole loop at the preset's train ratio
     (one update every `train_every` steps).
2. Peak resident memory of the real `wm train-dreamer` command (doom-takecover settings, the same
   number of updates) with a replay of about 20,000 image steps against one of about 200,000.
   Target: large / small <= 1.2 (windows are read from the file; the replay is never loaded).

    python bench/dreamer.py                     # makes the rollouts files it needs
    python bench/dreamer.py --updates 30 --data-dir /tmp/wm-bench
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vision_memory import parse_with_rollouts, peak_rss_of, print_memory_ratio  # noqa: E402


def cartpole_rollouts(path: Path) -> Path:
    """A CartPole-v1 random rollouts file (about 20,000 steps) to sample windows from."""
    if not path.exists():
        subprocess.run([sys.executable, "-m", "wm", "rollout", "--env", "CartPole-v1", "--episodes", "900", "--seed", "3",
                        "--backend", "serial", "--out", str(path)], check=True)
    return path


def make_agent(preset: str, xla: bool = False, **overrides: object) -> tuple:
    """(config, environment, agent) of a preset of `wm train-dreamer`, its weights seeded with 0."""
    from wm.dreamer.agent import Agent
    from wm.envs import make_env
    from wm.stages.train_dreamer import TrainDreamerConfig, agent_shape_for, learning_for
    from wm.tfsetup import keras

    config = TrainDreamerConfig(**{**TrainDreamerConfig.PRESETS[preset], **overrides})
    env = make_env(config.env)
    shape = agent_shape_for(config, env.observation_space, env.action_space, config.env)
    keras().utils.set_random_seed(0)
    return config, env, Agent(shape, learning_for(config), xla=xla)


def update_rate(preset: str, rollouts: Path, updates: int, xla: bool = False, profile: bool = False, **overrides: object) -> dict:
    """Updates per second of a preset's agent on windows of `rollouts` (after 3 warm-up updates); with `profile`,
    also the seconds of each part of an update, each compiled and timed alone."""
    from wm.dreamer.online import stream_seed
    from wm.dreamer.replay import WindowSampler
    from wm.io.artifact import open_artifact
    from wm.tfsetup import tensorflow

    tf = tensorflow()
    config, env, agent = make_agent(preset, xla, **overrides)
    shape = agent.shape
    low, high = getattr(env.action_space, "low", None), getattr(env.action_space, "high", None)
    env.close()
    with open_artifact(rollouts, "rollouts") as artifact:
        sampler = WindowSampler(artifact.file, config.sequence_length, shape.action_kind, shape.action_dim, low, high)
        rng = np.random.default_rng(0)

        def update(k: int) -> None:
            batch = {key: tf.constant(value) for key, value in sampler.sample(config.batch_size, rng).items()}
            agent.train_step(batch, tf.constant(stream_seed(0, 1, k)))

        for k in range(3):  # compile and warm up
            update(k)
        started = time.perf_counter()
        for k in range(updates):
            update(3 + k)
        result = {"updates": updates / (time.perf_counter() - started)}
        if profile:
            result["parts"] = profile_update(agent, sampler, config.batch_size, rng, max(3, updates // 2))
    return result


def profile_update(agent: object, sampler: object, batch_size: int, rng: np.random.Generator, repeats: int) -> dict[str, float]:
    """Seconds per update spent in each part of it, each part compiled (tf.function) and timed alone."""
    from wm.tfsetup import tensorflow

    tf = tensorflow()

    def sample() -> dict:
        return {key: tf.constant(value) for key, value in sampler.sample(batch_size, rng).items()}

    batch = sample()
    obs = batch["obs"]
    b, length = obs.shape[0], obs.shape[1]
    flat_obs = tf.reshape(obs, [b * length] + obs.shape[2:].as_list())
    seed = tf.constant([0, 1])

    def gradients(loss_of: object, variables: list) -> object:
        with tf.GradientTape() as tape:
            loss = loss_of()
        return tape.gradient(loss, variables)

    embed = tf.reshape(agent.encoder(flat_obs), [b, length, -1])
    posterior, _ = agent.rssm.observe(embed, batch["previous_action"], batch["is_first"], seed)
    feat = tf.reshape(agent.rssm.features(posterior), [b * length, -1])
    start = {k: tf.reshape(v, [b * length] + v.shape[2:].as_list()) for k, v in posterior.items()}
    states, actions = agent.imagine(start, seed)

    def observe_loss() -> object:
        post, prior = agent.rssm.observe(embed, batch["previous_action"], batch["is_first"], seed)
        return tf.reduce_mean(agent.rssm.features(post)) + tf.reduce_mean(prior["deter"])

    def behaviour() -> object:
        with tf.GradientTape(persistent=True) as tape:
            actor_loss, critic_loss, _ = agent.behaviour_losses(states, actions)
        return tape.gradient(actor_loss, agent.actor.trainable_variables), tape.gradient(critic_loss, agent.critic.trainable_variables)

    heads = agent.reward_head.trainable_variables + agent.discount_head.trainable_variables
    parts = {
        "input pipeline (sample windows, to tensors)": sample,
        "encoder (forward + backward)": tf.function(lambda: gradients(lambda: tf.reduce_mean(agent.encoder(flat_obs)), agent.encoder.trainable_variables)),
        "RSSM observe scan (forward + backward)": tf.function(lambda: gradients(observe_loss, agent.rssm.trainable_variables)),
        "decoder and its loss (forward + backward)": tf.function(
            lambda: gradients(lambda: -tf.reduce_mean(agent.decoder.log_likelihood(feat, flat_obs)), agent.decoder.trainable_variables)),
        "reward and discount heads (forward + backward)": tf.function(
            lambda: gradients(lambda: tf.reduce_mean(agent.scalar(agent.reward_head, feat)) + tf.reduce_mean(agent.discount_head(feat)), heads)),
        f"imagination, {agent.learning.horizon} steps from every state (forward)": tf.function(lambda: agent.imagine(start, seed)),
        "actor and critic losses (forward + backward)": tf.function(behaviour),
    }
    seconds = {}
    for name, part in parts.items():
        part()
        started = time.perf_counter()
        for _ in range(repeats):
            part()
        seconds[name] = (time.perf_counter() - started) / repeats
    return seconds


def acting_rate(preset: str, steps: int) -> float:
    """Environment steps per second while the preset's actor acts (its posterior update and sample, and the environment's step)."""
    from wm.actions import dreamer_env_action
    from wm.dreamer.online import stream_seed
    from wm.tfsetup import tensorflow

    tf = tensorflow()
    config, env, agent = make_agent(preset)
    shape = agent.shape
    low, high = getattr(env.action_space, "low", None), getattr(env.action_space, "high", None)
    observation, _ = env.reset(seed=0)
    state, previous = agent.rssm.initial(1), tf.zeros([1, shape.action_dim])
    agent.act(tf.constant(observation[None]), state, previous, tf.constant([0, 0]), True)
    started = time.perf_counter()
    for t in range(steps):
        action, state = agent.act(tf.constant(observation[None]), state, previous, tf.constant(stream_seed(0, 2, t)), True)
        previous = action
        observation, _, terminated, truncated, _ = env.step(dreamer_env_action(action.numpy()[0], shape.action_kind, low, high))
        if terminated or truncated:
            observation, _ = env.reset()
            state, previous = agent.rssm.initial(1), tf.zeros([1, shape.action_dim])
    rate = steps / (time.perf_counter() - started)
    env.close()
    return rate


def peak_rss_mib(rollouts: Path, out: Path, steps: int) -> float:
    """Peak resident memory (MiB) of `wm train-dreamer` (doom-takecover settings) with `rollouts` as its replay."""
    return peak_rss_of(["train-dreamer", "--preset", "doom-takecover", "--prefill", str(rollouts), "--steps", str(steps),
                        "--eval-every", str(10 * steps), "--eval-episodes", "1", "--max-steps", "100", "--out", str(out),
                        "--force"], out.with_suffix(".peak"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=20, help="Timed updates per preset (after 3 warm-up updates).")
    parser.add_argument("--acting-steps", type=int, default=500, help="Timed acting steps per preset.")
    parser.add_argument("--memory-steps", type=int, default=160, help="Environment steps of each memory run (one update every 16).")
    args, small, large = parse_with_rollouts(parser)
    cartpole = cartpole_rollouts(args.data_dir / "cartpole-random.h5")

    presets = (("cartpole", cartpole), ("doom-takecover", small))
    print("1. Where an update's time goes (the plain graph; each part compiled and timed alone):")
    for preset, rollouts in presets:
        measured = update_rate(preset, rollouts, args.updates, profile=True)
        whole = 1.0 / measured["updates"]
        print(f"   {preset}: {1000 * whole:.0f} ms per update")
        for name, seconds in measured["parts"].items():
            print(f"     {name:58s} {1000 * seconds:7.1f} ms  {100 * seconds / whole:5.1f}%")
        rest = whole - sum(measured["parts"].values())
        print(f"     {'the rest (optimizer steps, graph overhead)':58s} {1000 * rest:7.1f} ms  {100 * rest / whole:5.1f}%")

    print("2. Updates per second, the old code path against the options (same run, same windows):")
    for preset, rollouts in presets:
        baseline = update_rate(preset, rollouts, args.updates)["updates"]
        print(f"   {preset:15s} plain graph (--baseline) {baseline:6.2f} updates/s")
        for label, xla in (("XLA (--xla)", True),):
            rate = update_rate(preset, rollouts, args.updates, xla=xla)["updates"]
            print(f"   {preset:15s} {label:24s} {rate:6.2f} updates/s   x{rate / baseline:.2f}")

    print("3. Acting, and the whole loop at the preset's train ratio (plain graph):")
    for preset, rollouts in presets:
        config, _, _ = make_agent(preset)
        updates, acting = update_rate(preset, rollouts, args.updates)["updates"], acting_rate(preset, args.acting_steps)
        loop = 1.0 / (1.0 / acting + 1.0 / (config.train_every * updates))
        print(f"   {preset:15s} acting {acting:6.0f} env steps/s; whole loop at one update every {config.train_every} steps: {loop:6.1f} env steps/s")

    print("4. Peak resident memory of `wm train-dreamer --preset doom-takecover` (same updates):")
    print_memory_ratio(small, large, lambda path, size: peak_rss_mib(path, args.data_dir / f"dreamer-{size}.h5", args.memory_steps),
                       "replay steps")


if __name__ == "__main__":
    main()
