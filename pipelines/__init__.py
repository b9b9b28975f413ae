"""Pipeline recipes for `wm run` (installed as `wm.pipelines`).

A recipe is data: an ordered list of stages, how each stage's inputs are wired to earlier outputs,
and its presets. The recipes arrive with the stages they chain (vision and memory, controllers,
Dreamer); `wm rollout` is the only stage so far.
"""

RECIPES: dict = {}
