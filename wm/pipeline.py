"""`wm run`: a recipe's stages in order, in one run folder, with a manifest.

A recipe (in `pipelines/`) is data: steps (a stage, its output file name, which earlier steps feed
its inputs, and fixed settings) plus presets (per-step overrides). A step's config is

    the stage's own preset of the same name (if it has one) < the step's settings
    < the recipe preset's overrides < --config FILE < --set STEP.KEY=VALUE

A step whose output already holds the same fingerprint is skipped by the stage itself, so a rerun
after a crash or a change redoes only what is out of date. `manifest.json` in the run folder lists
each step's artifact, fingerprint, status and wall time.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from wm.config import parse_set
from wm.errors import ConfigError, UsageError


@dataclass(frozen=True)
class Step:
    """One stage of a recipe."""

    name: str  # unique within the recipe; defaults to the stage name
    stage: str
    out: str  # file name inside the run folder
    inputs: Mapping[str, str] = field(default_factory=dict)  # stage input name -> name of the step producing it
    settings: Mapping[str, Any] = field(default_factory=dict)  # config values for every preset


@dataclass(frozen=True)
class Recipe:
    """An ordered chain of steps and its presets (preset -> step name -> overrides)."""

    name: str
    help: str
    steps: Sequence[Step]
    presets: Mapping[str, Mapping[str, Mapping[str, Any]]]


def get_recipe(name: str) -> Recipe:
    """The recipe called `name`, or a UsageError listing the known ones."""
    from wm.pipelines import RECIPES

    if name not in RECIPES:
        import difflib

        close = difflib.get_close_matches(name, RECIPES, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise UsageError(f"Unknown pipeline '{name}'; known pipelines: {', '.join(sorted(RECIPES))}.{hint}")
    return RECIPES[name]


def _step_overrides(recipe: Recipe, config_file: str | None, sets: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per-step overrides from a YAML/TOML file of {step: {key: value}} and --set STEP.KEY=VALUE."""
    from wm.config import load_config_file

    steps = {step.name for step in recipe.steps}
    overrides: dict[str, dict[str, Any]] = {}
    if config_file is not None:
        for step_name, values in load_config_file(config_file).items():
            if step_name not in steps or not isinstance(values, dict):
                raise ConfigError(
                    f"Config file {config_file}: '{step_name}' is not a step of {recipe.name} with a mapping of settings "
                    f"(steps: {', '.join(s.name for s in recipe.steps)})."
                )
            overrides.setdefault(step_name, {}).update({key.replace("-", "_"): value for key, value in values.items()})
    for item in sets:
        key, text = parse_set(item)
        step_name, _, field_name = key.partition(".")
        if step_name.replace("_", "-") in steps:
            step_name = step_name.replace("_", "-")
        if not field_name or step_name not in steps:
            raise ConfigError(f"--set {item!r}: use STEP.KEY=VALUE with STEP one of {', '.join(s.name for s in recipe.steps)}.")
        overrides.setdefault(step_name, {})[field_name] = ("text", text)
    return overrides


def step_config(recipe: Recipe, step: Step, preset: str | None, overrides: Mapping[str, Any]) -> Any:
    """The resolved config of `step` under `preset` and the user's overrides."""
    from wm.config import check_key, coerce_value, resolve_config
    from wm.stages import get_stage

    config_class = get_stage(step.stage).config_class
    values = {**step.settings, **(recipe.presets.get(preset, {}).get(step.name, {}) if preset else {})}
    try:
        typed = {key: coerce_value(config_class, key, value, from_text=False) for key, value in values.items()}
        for key, value in overrides.items():  # the user's overrides win over the recipe's values
            check_key(config_class, key, "--set or --config")
            if isinstance(value, tuple) and value and value[0] == "text":
                typed[key] = coerce_value(config_class, key, value[1], from_text=True)
            else:
                typed[key] = coerce_value(config_class, key, value, from_text=False)
        return resolve_config(config_class, preset=preset if preset in config_class.PRESETS else None, explicit=typed)
    except ConfigError as exc:
        raise ConfigError(f"Step '{step.name}': {exc}") from None


def run_pipeline(
    name: str,
    *,
    preset: str | None,
    out: str | Path | None,
    seed: int,
    force: bool,
    sets: Sequence[str] = (),
    config_file: str | None = None,
) -> dict[str, Any]:
    """Run every step of recipe `name` into its run folder; returns the manifest."""
    from wm.stage import log
    from wm.stages import get_stage

    recipe = get_recipe(name)
    if preset is not None and preset not in recipe.presets:
        raise ConfigError(f"Unknown preset '{preset}' for pipeline {name}; known presets: {', '.join(recipe.presets)}.")
    run_folder = Path(out) if out else Path("artifacts") / name / (preset or "default")
    overrides = _step_overrides(recipe, config_file, sets)
    # Resolve every config before any work, so a typo fails at once.
    configs = {step.name: step_config(recipe, step, preset, overrides.get(step.name, {})) for step in recipe.steps}
    run_folder.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {"pipeline": name, "preset": preset, "seed": seed, "steps": {}}
    paths: dict[str, Path] = {}
    for index, step in enumerate(recipe.steps, 1):
        stage = get_stage(step.stage)
        inputs = {input_name: str(paths[source]) for input_name, source in step.inputs.items()}
        out_path = run_folder / step.out
        log(f"[{index}/{len(recipe.steps)}] {step.name} -> {out_path}")
        started = time.monotonic()
        result = stage.run(configs[step.name], out=out_path, seed=seed, inputs=inputs, force=force)
        paths[step.name] = out_path
        manifest["steps"][step.name] = {
            "stage": step.stage,
            "path": str(out_path),
            "fingerprint": result.fingerprint,
            "status": result.status,
            "wall_seconds": round(time.monotonic() - started, 2),
        }
        _write_manifest(run_folder / "manifest.json", manifest)
    return manifest


def _write_manifest(path: Path, manifest: Mapping[str, Any]) -> None:
    temporary = path.parent / f".{path.name}.tmp"
    temporary.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(temporary, path)
