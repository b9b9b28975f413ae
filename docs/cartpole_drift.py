"""Why a Dreamer agent loses CartPole: where its carts end, what its critic thinks of the cart's position,
and whether its world model sees the end of the track coming (the README's CartPole section).

    python docs/cartpole_drift.py --artifact runs/cartpole-v3/dreamer.h5 [--episodes 10]
    python docs/cartpole_drift.py --checkpoint runs/cartpole-v3/dreamer.ckpt/checkpoint.h5 --preset cartpole-v3

1. `--episodes` episodes on fresh seeds (20,000 + i), the actor's most likely actions (or samples of them,
   `--actor-action sample`): each one's return, the cart's final position x, the actor's mean p(push right)
   and the share of steps at which neither action had more than 0.6 (where the mode turns a near coin toss
   into a fixed choice); then the critic's value of the posterior states, averaged by x.
2. With a replay (`<out stem>.replay.h5` beside an artifact, `replay.h5` beside a checkpoint, or `--replay`): of
   its episodes that ended by termination with the cart beyond |x| = 2, the discount head's probability that
   the episode continues after the last action (the prior state after it), for the last `--edge-episodes`;
3. and how the replay's training episodes ended (at the edge, the pole fallen, not at all), `--block` steps a row.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import h5py
import numpy as np

X_BINS = (-2.4, -1.8, -1.2, -0.6, -0.2, 0.2, 0.6, 1.2, 1.8, 2.4)


def load(args: argparse.Namespace) -> tuple:
    """(agent, replay path or None) of an artifact, or of a checkpoint with the preset it was trained with."""
    from wm.dreamer.agent import Agent, agent_from_artifact
    from wm.io.artifact import open_artifact
    from wm.io.models import load_variables

    if args.artifact:
        with open_artifact(args.artifact, "dreamer") as artifact:
            agent = agent_from_artifact(artifact)
        replay = Path(args.artifact).with_suffix(".replay.h5")
    else:
        import gymnasium as gym

        from wm.config import resolve_config
        from wm.stages.train_dreamer import TrainDreamerConfig, agent_shape_for, learning_for

        config = resolve_config(TrainDreamerConfig, preset=args.preset)
        env = gym.make(config.env)
        agent = Agent(agent_shape_for(config, env.observation_space, env.action_space, config.env), learning_for(config))
        with h5py.File(args.checkpoint, "r") as f:
            load_variables(f["variables"]["agent"], list(agent.weights), args.checkpoint)
        replay = Path(args.checkpoint).with_name("replay.h5")
    replay = Path(args.replay) if args.replay else replay
    return agent, replay if replay.exists() else None


def episodes(agent, count: int, sample: bool, tf) -> None:
    """Part 1: returns, final positions, the actor's probabilities and the critic's value by cart position."""
    import gymnasium as gym

    env = gym.make("CartPole-v1")
    xs, values = [], []
    for episode in range(count):
        obs, _ = env.reset(seed=20_000 + episode)
        state, previous = agent.rssm.initial(1), tf.zeros([1, agent.shape.action_dim])
        done, total, right = False, 0.0, []
        while not done:
            previous, state = agent.act(tf.constant(obs[None], tf.float32), state, previous, tf.constant([episode, int(total)]), sample)
            features = agent.rssm.features(state)
            xs.append(obs[0])
            values.append(float(agent.scalar(agent.critic, features)[0]))
            right.append(float(tf.nn.softmax(agent.action_distribution(features).logits)[0, 1]))
            obs, reward, terminated, truncated, _ = env.step(int(np.argmax(previous.numpy()[0])))
            total += reward
            done = terminated or truncated
        right = np.array(right)
        print(f"episode {episode}: return {total:.0f}, final x {obs[0]:+.2f}" + (" (terminated)" if terminated else "") +
              f"; mean p(right) {right.mean():.3f}, steps with both actions at 0.4-0.6: {np.mean(np.abs(right - 0.5) <= 0.1):.0%}")
    xs, values = np.array(xs), np.array(values)
    print("critic's value of the real states by cart position:")
    for low, high in zip(X_BINS[:-1], X_BINS[1:]):
        inside = (xs >= low) & (xs < high)
        if inside.any():
            print(f"  x in [{low:+.1f}, {high:+.1f}): {inside.sum():5d} states, value {values[inside].mean():6.1f} +- {values[inside].std():.1f}")


def read_replay(path: Path) -> dict:
    """The replay's arrays this script reads: obs, action, terminated, and each episode's start and length."""
    with h5py.File(path, "r") as f:
        return {"path": path, "obs": f["obs"][:], "action": f["action"][:], "terminated": f["terminated"][:],
                "starts": f["episode/start"][:], "lengths": f["episode/length"][:]}


def ended_and_edge(replay: dict, episodes: list) -> tuple[list, list]:
    """Of (start, length) `episodes`: those that ended by termination, and of those the ones with the cart beyond |x| = 2."""
    ended = [(s, n) for s, n in episodes if replay["terminated"][s + n - 1]]
    return ended, [(s, n) for s, n in ended if abs(replay["obs"][s + n - 1, 0]) > 2.0]


def edge_endings(agent, replay: dict, last: int, tf) -> None:
    """Part 2: the discount head's p(continue) after the last action of episodes that ended at the track's edge."""
    obs, action, starts = replay["obs"], replay["action"], replay["starts"]
    ended, edge = ended_and_edge(replay, list(zip(starts, replay["lengths"])))
    print(f"replay {replay['path']}: {len(starts)} episodes, {len(ended)} ended by termination, {len(edge)} of them with the cart beyond |x| = 2")
    for start, length in edge[-last:]:
        state, previous = agent.rssm.initial(1), tf.zeros([1, agent.shape.action_dim])
        for t in range(start, start + length):
            state, _ = agent.rssm.obs_step(state, previous, agent.encoder(tf.constant(obs[t:t + 1], tf.float32)), tf.constant([0, t]))
            previous = tf.one_hot([int(action[t])], agent.shape.action_dim)
        after = agent.rssm.img_step(state, previous, tf.constant([1, start + length - 1]))
        continues = float(tf.sigmoid(agent.discount_head(agent.rssm.features(after)))[0, 0])
        print(f"  an episode of {length} steps, last x {obs[start + length - 1, 0]:+.2f}: p(continue) after its last action {continues:.2f}")


def endings_over_training(replay: dict, block: int) -> None:
    """Part 3: how the replay's episodes ended, block by block of environment steps (training episodes, sampled actions)."""
    starts, lengths = replay["starts"], replay["lengths"]
    print(f"how the replay's episodes ended, by blocks of {block} environment steps (an episode counts in the block it ends in):")
    print("  steps           episodes  mean length  at the edge (|x| > 2)  pole fell  not terminated")
    ends = np.cumsum(lengths)
    for low in range(0, int(ends[-1]), block):
        inside = [(s, n) for s, n, end in zip(starts, lengths, ends) if low < end <= low + block]
        if not inside:
            continue
        ended, edge = ended_and_edge(replay, inside)
        print(f"  {low:6d}-{low + block:6d}  {len(inside):8d}  {np.mean([n for _, n in inside]):11.1f}  {len(edge):21d}  "
              f"{len(ended) - len(edge):9d}  {len(inside) - len(ended):14d}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--artifact", help="a `dreamer` artifact of CartPole-v1")
    source.add_argument("--checkpoint", help="a `wm train-dreamer` checkpoint (with --preset)")
    parser.add_argument("--preset", default="cartpole-v3", help="the preset the checkpoint was trained with")
    parser.add_argument("--replay", help="a replay file other than the one beside the artifact or checkpoint")
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--actor-action", choices=("mode", "sample"), default="mode", help="part 1's actions: the actor's mode or samples")
    parser.add_argument("--edge-episodes", type=int, default=4)
    parser.add_argument("--block", type=int, default=2500, help="environment steps per row of part 3")
    args = parser.parse_args()
    from wm.tfsetup import tensorflow

    tf = tensorflow()
    agent, replay = load(args)
    episodes(agent, args.episodes, args.actor_action == "sample", tf)
    if replay is not None:
        arrays = read_replay(replay)
        edge_endings(agent, arrays, args.edge_episodes, tf)
        endings_over_training(arrays, args.block)


if __name__ == "__main__":
    main()
