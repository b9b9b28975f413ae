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


def speeds(preset: str, rollouts: Path, updates: int, acting_steps: int) -> dict[str, float]:
    """Updates per second, acting steps per second, and the loop's steps per second for one preset."""
    from wm.actions import dreamer_env_action
    from wm.dreamer.online import stream_seed
    from wm.dreamer.replay import WindowSampler
    from wm.envs import make_env
    from wm.io.artifact import open_artifact
    from wm.stages.train_dreamer import TrainDreamerConfig, agent_shape_for, learning_for
    from wm.tfsetup import keras, tensorflow
    from wm.dreamer.agent import Agent

    tf, keras = tensorflow(), keras()
    config = TrainDreamerConfig(**TrainDreamerConfig.PRESETS[preset])
    env = make_env(config.env)
    shape = agent_shape_for(config, env.observation_space, env.action_space, config.env)
    keras.utils.set_random_seed(0)
    agent = Agent(shape, learning_for(config))
    low, high = getattr(env.action_space, "low", None), getattr(env.action_space, "high", None)
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
        update_rate = updates / (time.perf_counter() - started)

    observation, _ = env.reset(seed=0)
    state, previous = agent.rssm.initial(1), tf.zeros([1, shape.action_dim])
    agent.act(tf.constant(observation[None]), state, previous, tf.constant([0, 0]), True)
    started = time.perf_counter()
    for t in range(acting_steps):
        action, state = agent.act(tf.constant(observation[None]), state, previous, tf.constant(stream_seed(0, 2, t)), True)
        previous = action
        observation, _, terminated, truncated, _ = env.step(dreamer_env_action(action.numpy()[0], shape.action_kind, low, high))
        if terminated or truncated:
            observation, _ = env.reset()
            state, previous = agent.rssm.initial(1), tf.zeros([1, shape.action_dim])
    acting_rate = acting_steps / (time.perf_counter() - started)
    env.close()
    loop_rate = 1.0 / (1.0 / acting_rate + 1.0 / (config.train_every * update_rate))
    return {"updates": update_rate, "acting": acting_rate, "loop": loop_rate, "train_every": config.train_every}


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

    print("1. Training and acting speed (2 cores):")
    for preset, rollouts in (("cartpole", cartpole), ("doom-takecover", small)):
        measured = speeds(preset, rollouts, args.updates, args.acting_steps)
        print(f"   {preset:15s} {measured['updates']:6.2f} updates/s; acting {measured['acting']:6.0f} env steps/s; "
              f"whole loop at one update every {measured['train_every']} steps: {measured['loop']:6.1f} env steps/s")

    print("2. Peak resident memory of `wm train-dreamer --preset doom-takecover` (same updates):")
    print_memory_ratio(small, large, lambda path, size: peak_rss_mib(path, args.data_dir / f"dreamer-{size}.h5", args.memory_steps),
                       "replay steps")


if __name__ == "__main__":
    main()
