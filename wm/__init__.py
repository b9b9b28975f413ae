"""wm: learned world models for reinforcement learning, reproduced end to end on an ordinary machine.

The library lives here (config, cli, io, envs, parallel); the stages are in `wm.stages` and the
pipeline recipes in `wm.pipelines`. Importing `wm` imports neither TensorFlow nor gymnasium.
"""

__version__ = "0.1.0"
