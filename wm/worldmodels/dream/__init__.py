"""Dreams inside a learned world model (V + M): batched for CMA-ES and PPO, and as a gymnasium environment.

Importing this package registers the gymnasium id `wm/Dream-v0`:

    import gymnasium as gym
    env = gym.make("wm.worldmodels.dream:wm/Dream-v0", vae="vae.h5", mdnrnn="mdnrnn.h5", temperature=1.15)

(the `wm.worldmodels.dream:` prefix makes gymnasium import this package first). See `wm.worldmodels.dream.env.DreamEnv`.
"""

from gymnasium.envs.registration import register, registry

DREAM_ENV_ID = "wm/Dream-v0"

if DREAM_ENV_ID not in registry:
    register(id=DREAM_ENV_ID, entry_point="wm.worldmodels.dream.env:DreamEnv")
