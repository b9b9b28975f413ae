"""Dreamer on 2 cores: where an update's time goes, what makes it faster, and memory against replay size.

For the `cartpole`, `cartpole-v3`, `doom-takecover` and `doom-takecover-v3` settings of `wm train-dreamer`,
on the agent code the stage uses (batches of 16 x 50 windows sampled from a rollouts file):
1. one update taken apart: input pipeline, encoder, RSSM scan, decoder, heads, imagination, actor
   and critic, each compiled and timed alone, against the whole update; the three Adam steps alone, as separate ops
   and fused by XLA;
2. updates per second of the plain graph (the code path without --xla) against XLA, in the same run;
3. the CNN encoder and decoder in float32 against Keras' mixed_bfloat16 (this CPU has AVX-512 BF16);
4. window shapes (batch x length) for cartpole-v3;
5. acting speed, and the whole loop at the preset's train ratio;
6. peak resident memory of the real `wm train-dreamer` (doom-takecover settings, the same updates)
   with a replay of about 20,000 image steps against one of about 200,000 (target: ratio <= 1.2).

    python bench/dreamer.py                     # makes the rollouts files it needs
    python bench/dreamer.py --updates 30 --data-dir /tmp/wm-bench --skip-memory
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
    from wm.stages.train_dreamer import TrainDreamerConfig, agent_shape_for, learning_for, with_action_repeat
    from wm.tfsetup import keras

    config = TrainDreamerConfig(**{**TrainDreamerConfig.PRESETS[preset], **overrides})
    env = with_action_repeat(make_env(config.env), config.action_repeat)
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
            result["optimizer"] = optimizer_seconds(agent, max(3, updates // 2))
    return result


def profile_update(agent: object, sampler: object, batch_size: int, rng: np.random.Generator, repeats: int) -> dict[str, float]:
    """Seconds per update spent in each part of it, each part compiled (tf.function) and timed alone."""
    from wm.dreamer.agent import REPLAY_VALUE_KEYS
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
            replay = {k: batch[k] for k in REPLAY_VALUE_KEYS}
            actor_loss, critic_loss, _ = agent.behaviour_losses(states, actions, replay)
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
    return {name: seconds_per_call(part, repeats) for name, part in parts.items()}


def seconds_per_call(function: object, repeats: int) -> float:
    """Mean seconds of `repeats` calls of `function`, after one call that compiles it."""
    function()
    started = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - started) / repeats


def optimizer_seconds(agent: object, repeats: int) -> dict[str, float]:
    """Seconds of an update's three Adam steps (world model, actor, critic) on fixed gradients: one graph of per-variable
    ops (the plain update), and the same compiled by XLA, which fuses the elementwise updates of all variables."""
    from wm.tfsetup import tensorflow

    tf = tensorflow()
    steps = [(agent.model_optimizer, agent.world_model_variables), (agent.actor_optimizer, agent.actor.trainable_variables),
             (agent.critic_optimizer, agent.critic.trainable_variables)]
    gradients = [[tf.fill(tf.shape(v), 1e-3) for v in variables] for _, variables in steps]

    def apply() -> None:
        for (optimizer, variables), grads in zip(steps, gradients):
            optimizer.apply_gradients(zip(grads, variables))

    return {"plain": seconds_per_call(tf.function(apply), repeats), "xla": seconds_per_call(tf.function(apply, jit_compile=True), repeats)}


def acting_rate(preset: str, steps: int) -> float:
    """The agent's steps per second while the preset's actor acts (its posterior update and sample, and the environment's
    step: `action_repeat` frames)."""
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


def precision_rates(repeats: int) -> dict[str, float]:
    """Seconds of the doom-takecover-v3 encoder and decoder (forward and backward on 16 x 50 frames) in float32 and in
    Keras' mixed_bfloat16, alternating twice."""
    from wm.dreamer.networks import Body, Decoder, Encoder
    from wm.tfsetup import keras, tensorflow

    tf, keras = tensorflow(), keras()
    feat = tf.random.normal([800, 200 + 32 * 32])
    obs = tf.cast(tf.random.uniform([800, 64, 64, 3], 0, 255), tf.uint8)
    seconds: dict[str, list[float]] = {"float32": [], "mixed_bfloat16": []}
    try:
        for policy in ("float32", "mixed_bfloat16") * 2:
            keras.mixed_precision.set_global_policy(policy)
            keras.utils.set_random_seed(0)
            decoder, encoder = Decoder(True, 16, 200, 2, 0, Body("layer", "silu")), Encoder(True, 16, 200, 2, Body("layer", "silu"))

            @tf.function
            def step() -> object:
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean(tf.cast(decoder(feat), tf.float32)) + tf.reduce_mean(tf.cast(encoder(obs), tf.float32))
                return tape.gradient(loss, decoder.trainable_variables + encoder.trainable_variables)

            step()
            started = time.perf_counter()
            for _ in range(repeats):
                step()
            seconds[policy].append((time.perf_counter() - started) / repeats)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return {policy: min(values) for policy, values in seconds.items()}


def main() -> None:
    from wm.stages.train_dreamer import TrainDreamerConfig

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=20, help="Timed updates per measurement (after 3 warm-up updates).")
    parser.add_argument("--acting-steps", type=int, default=500, help="Timed acting steps per preset.")
    parser.add_argument("--memory-steps", type=int, default=160, help="Environment steps of each memory run (one update every 16).")
    parser.add_argument("--skip-memory", action="store_true", help="Leave out part 5 (two runs of wm train-dreamer).")
    args, small, large = parse_with_rollouts(parser)
    cartpole = cartpole_rollouts(args.data_dir / "cartpole-random.h5")
    presets = {"cartpole": cartpole, "cartpole-v3": cartpole, "doom-takecover": small, "doom-takecover-v3": small}

    print("1. Where an update's time goes (the plain graph; each part compiled and timed alone):")
    for preset, rollouts in presets.items():
        measured = update_rate(preset, rollouts, args.updates, profile=True)
        whole = 1.0 / measured["updates"]
        print(f"   {preset}: {1000 * whole:.0f} ms per update")
        for name, seconds in measured["parts"].items():
            print(f"     {name:58s} {1000 * seconds:7.1f} ms  {100 * seconds / whole:5.1f}%")
        rest = whole - sum(measured["parts"].values())
        print(f"     {'the rest (optimizer steps, graph overhead)':58s} {1000 * rest:7.1f} ms  {100 * rest / whole:5.1f}%")
        steps = measured["optimizer"]
        print(f"     of the rest, the three Adam steps: {1000 * steps['plain']:.1f} ms as separate ops, {1000 * steps['xla']:.1f} ms "
              f"fused by XLA (would save {100 * (steps['plain'] - steps['xla']) / whole:.1f}% of the update)")

    print("2. Updates per second: the plain graph (the old code path) against XLA (--xla), alternating, best of two:")
    for preset, rollouts in presets.items():
        rates = {False: [], True: []}
        for xla in (False, True, False, True):
            rates[xla].append(update_rate(preset, rollouts, args.updates, xla=xla)["updates"])
        plain, compiled = max(rates[False]), max(rates[True])
        print(f"   {preset:18s} plain {plain:6.2f} updates/s; XLA {compiled:6.2f} updates/s; XLA / plain {compiled / plain:.2f}")

    print("3. Precision: the doom-takecover-v3 encoder + decoder (forward and backward, 800 frames), float32 against mixed_bfloat16:")
    measured = precision_rates(max(3, args.updates // 4))
    print(f"   float32 {1000 * measured['float32']:.0f} ms; mixed_bfloat16 {1000 * measured['mixed_bfloat16']:.0f} ms; "
          f"bfloat16 / float32 time {measured['mixed_bfloat16'] / measured['float32']:.2f}")

    print("4. Window shapes for cartpole-v3 (batch x length; replayed steps per second = updates/s x batch x length):")
    for batch, length in ((16, 50), (32, 25), (8, 100), (16, 64)):
        rate = update_rate("cartpole-v3", cartpole, args.updates, batch_size=batch, sequence_length=length)["updates"]
        print(f"   {batch:3d} x {length:3d}: {rate:6.2f} updates/s, {rate * batch * length:7.0f} replayed steps/s")

    print("5. Acting, and the whole loop at the preset's train ratio (plain graph):")
    for preset, rollouts in presets.items():
        train_every = TrainDreamerConfig.PRESETS[preset].get("train_every", TrainDreamerConfig.train_every)
        updates, acting = update_rate(preset, rollouts, args.updates)["updates"], acting_rate(preset, args.acting_steps)
        loop = 1.0 / (1.0 / acting + 1.0 / (train_every * updates))
        print(f"   {preset:18s} acting {acting:6.0f} env steps/s; whole loop at one update every {train_every} steps: {loop:6.1f} env steps/s")

    if not args.skip_memory:
        print("6. Peak resident memory of `wm train-dreamer --preset doom-takecover` (same updates):")
        print_memory_ratio(small, large, lambda path, size: peak_rss_mib(path, args.data_dir / f"dreamer-{size}.h5", args.memory_steps),
                           "replay steps")


if __name__ == "__main__":
    main()
