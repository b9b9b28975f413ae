"""Dreamer recipes: train-dreamer (online: act, replay, world model, actor-critic in imagination) -> evaluate.

- `dreamer-cartpole`, `dreamer-pendulum`: vector observations, small networks (the stage's
  `cartpole` and `pendulum` settings);
- `dreamer-doom-takecover`: 64x64 pixels (the stage's `doom-takecover` settings).

Presets: `tiny` (tests), `demo` (a short run that shows the loop at work), `paper` (the issue's
budgets: 50,000 CartPole steps, 30,000 Pendulum steps).
"""

from wm.recipe import Recipe, Step
from wm.stages.train_dreamer import TrainDreamerConfig


def _chain(settings_of: str) -> list[Step]:
    return [
        Step("train-dreamer", "train-dreamer", "dreamer.h5", settings=TrainDreamerConfig.PRESETS[settings_of]),
        Step("evaluate", "evaluate", "evaluation.h5", inputs={"dreamer": "train-dreamer"}, settings={"dream_episodes": 0}),
    ]


# The stage's tiny settings again: a recipe step's own settings come after the stage's preset.
_TINY = {"train-dreamer": TrainDreamerConfig.PRESETS["tiny"], "evaluate": {"episodes": 2, "backend": "serial"}}


def _recipe(name: str, settings_of: str, help: str, demo_steps: int, paper_steps: int) -> Recipe:
    return Recipe(
        name=name,
        help=help,
        steps=_chain(settings_of),
        presets={
            "tiny": _TINY,
            "demo": {"train-dreamer": {"steps": demo_steps}, "evaluate": {"episodes": 10}},
            "paper": {"train-dreamer": {"steps": paper_steps}, "evaluate": {"episodes": 100}},
        },
    )


DREAMER_CARTPOLE = _recipe("dreamer-cartpole", "cartpole", "DreamerV2 on CartPole-v1 (vector observations), then 100 evaluation episodes.", 10_000, 50_000)
DREAMER_PENDULUM = _recipe("dreamer-pendulum", "pendulum", "DreamerV2 on Pendulum-v1 (vector observations, bounded actions), then evaluation.", 10_000, 30_000)
DREAMER_DOOM_TAKECOVER = _recipe("dreamer-doom-takecover", "doom-takecover", "DreamerV2 on doom-takecover from 64x64 pixels, then evaluation.", 10_000, 30_000)
