"""Pipeline recipes for `wm run` (installed as `wm.pipelines`).

A recipe is data: an ordered list of steps (a stage, its output file, which earlier steps feed its
inputs, fixed settings) and presets of per-step overrides; `wm.recipe` runs them.
"""

from .dreamer import DREAMER_CARTPOLE, DREAMER_DOOM_TAKECOVER, DREAMER_PENDULUM
from .world_models import CARRACING, DOOM_TAKECOVER, DOOM_TAKECOVER_PRETRAINED

RECIPES = {recipe.name: recipe for recipe in (DOOM_TAKECOVER, DOOM_TAKECOVER_PRETRAINED, CARRACING, DREAMER_CARTPOLE, DREAMER_PENDULUM, DREAMER_DOOM_TAKECOVER)}
