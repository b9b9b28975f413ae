"""The stages of wm (installed as `wm.stages`): one module per stage, each exposing `STAGE`.

Stage modules import nothing heavy at module level (no TensorFlow, no environments), so that the
CLI can list and describe them quickly.
"""

from __future__ import annotations

import importlib

from wm.runner import Stage

STAGE_MODULES = ("rollout", "train_vae", "encode", "train_mdnrnn", "train_controller", "evaluate", "fidelity", "dream", "train_dreamer")


def all_stages() -> list[Stage]:
    """Every registered stage, in pipeline order."""
    return [importlib.import_module(f"wm.stages.{name}").STAGE for name in STAGE_MODULES]


def get_stage(name: str) -> Stage:
    """The stage called `name`."""
    for stage in all_stages():
        if stage.name == name:
            return stage
    raise KeyError(name)
