"""Frames per second of `wm rollout` with 2 workers against a plain single-process gymnasium loop.

Both sides use the same environment wrapper (the same preprocessing to 64x64x3) and the same random
process; the plain loop stores nothing, `wm rollout` writes a compressed HDF5 artifact. Both are
measured here, one after the other, and the ratio printed. Target: at least 1.7x on 2 cores.

    python bench/rollout.py                  # doom-takecover and carracing, default compression
    python bench/rollout.py --compression gzip lzf none --doom-episodes 300
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from wm.config import resolve_config
from wm.envs import default_max_steps, make_env
from wm.episodes import episode_env_seed, episode_policy_rng
from wm.envs.policies import PolicySpec, make_policy
from wm.runner import run_stage
from wm.stages.rollout import STAGE, RolloutConfig


def plain_loop(env_name: str, episodes: int, seed: int) -> tuple[int, float]:
    """One process: reset, act, step; frames are produced and dropped. Returns (frames, seconds)."""
    env = make_env(env_name, default_max_steps(env_name))
    policy = make_policy(PolicySpec("random"), env_name, env.action_space)
    frames = 0
    started = time.perf_counter()
    for index in range(episodes):
        policy.reset(episode_policy_rng(seed, index))
        observation, _ = env.reset(seed=episode_env_seed(seed, index))
        done = False
        while not done:
            observation, _, terminated, truncated, _ = env.step(policy.act(observation))
            frames += 1
            done = terminated or truncated
    seconds = time.perf_counter() - started
    env.close()
    return frames, seconds


def wm_rollout(env_name: str, episodes: int, seed: int, compression: str, workers: int, folder: Path) -> tuple[int, float, int]:
    """The rollout stage, timed from the call to the committed file. Returns (frames, seconds, bytes)."""
    config = resolve_config(
        RolloutConfig, explicit={"env": env_name, "episodes": episodes, "workers": workers, "compression": compression}
    )
    out = folder / f"{env_name}-{compression}.h5"
    started = time.perf_counter()
    run_stage(STAGE, config, out=out, seed=seed, inputs={})
    seconds = time.perf_counter() - started
    import h5py

    with h5py.File(out) as f:
        frames = int(f["reward"].shape[0])
    return frames, seconds, os.path.getsize(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--doom-episodes", type=int, default=100)
    parser.add_argument("--carracing-episodes", type=int, default=6)
    parser.add_argument("--compression", nargs="+", default=["gzip"], choices=["gzip", "lzf", "none"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="wm-bench-") as tmp:
        for env_name, episodes in (("doom-takecover", args.doom_episodes), ("carracing", args.carracing_episodes)):
            frames, seconds = plain_loop(env_name, episodes, args.seed)
            plain_fps = frames / seconds
            print(f"{env_name}: plain single-process loop, {frames} frames in {seconds:.1f} s = {plain_fps:.0f} frames/s", flush=True)
            for compression in args.compression:
                wm_frames, wm_seconds, size = wm_rollout(env_name, episodes, args.seed, compression, args.workers, Path(tmp))
                assert wm_frames == frames, "the two sides played different episodes"
                wm_fps = wm_frames / wm_seconds
                ratio = wm_fps / plain_fps
                rows.append((env_name, compression, plain_fps, wm_fps, ratio, size / wm_frames))
                print(
                    f"{env_name}: wm rollout --workers {args.workers} --compression {compression}, {wm_frames} frames in "
                    f"{wm_seconds:.1f} s = {wm_fps:.0f} frames/s, {size / wm_frames:.0f} bytes/frame on disk; "
                    f"ratio {ratio:.2f}x",
                    flush=True,
                )
    print(f"\ncores: {os.cpu_count()}")
    print(f"{'environment':<16}{'compression':<13}{'plain fps':>10}{'wm fps':>10}{'ratio':>8}{'bytes/frame':>13}")
    for env_name, compression, plain_fps, wm_fps, ratio, per_frame in rows:
        print(f"{env_name:<16}{compression:<13}{plain_fps:>10.0f}{wm_fps:>10.0f}{ratio:>7.2f}x{per_frame:>13.0f}")


if __name__ == "__main__":
    main()
