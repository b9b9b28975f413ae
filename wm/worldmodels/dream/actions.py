"""Action sequences for dreams of policies that do not look at what they see (the random process, a constant action).

Such a policy's actions depend only on its random generator, so dream i can take exactly the
actions that real episode i of the same run took: `policy_action_table` replays the policy with the
episode's own generator (`wm.episodes.episode_policy_rng`) for the whole step cap.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from wm.actions import memory_inputs


def policy_action_table(spec: Any, env_id: str, space: Any, run_seed: int, indices: Sequence[int], max_steps: int,
                        action_dim: int, discrete: bool) -> np.ndarray:
    """MDN-RNN action inputs [len(indices), max_steps, action_dim] of policy `spec` in episodes `indices` of run `run_seed`."""
    from wm.envs.policies import make_policy
    from wm.episodes import episode_policy_rng

    table = np.zeros((len(indices), max_steps, action_dim), np.float32)
    for row, index in enumerate(indices):
        policy = make_policy(spec, env_id, space)
        policy.reset(episode_policy_rng(run_seed, int(index)))
        table[row] = memory_inputs(np.asarray([policy.act(None) for _ in range(max_steps)]), action_dim, discrete)
    return table
