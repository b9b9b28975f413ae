"""`wm run`: a recipe's stages in order, in one run folder, with a manifest.

A recipe (in `pipelines/`) is data: steps (a stage, its output file name, which earlier steps feed
its inputs, and fixed settings), the steps of one round of the paper's iterative procedure, and
presets (per-step overrides). A step's config is

    the stage's own preset of the same name (if it has one) < the step's settings
    < the recipe preset's overrides for the step's base name, then BASE@* (iterations), then its exact name
    < --config FILE < --set STEP.KEY=VALUE (in the same order)

Steps of iteration k (`--iterations K`) are named `BASE@k` (`rollout@2`, `train-controller@2`) and
write into `iterK/`; an override for `BASE` applies to the first pass and every iteration, one for
`BASE@*` to every iteration k >= 2, and one for `BASE@k` to iteration k alone (the most specific wins).

A step whose output already holds the same fingerprint is skipped by the stage itself, so a rerun
after a crash or a change redoes only what is out of date. An output of the same stage whose
settings changed is replaced (the run folder belongs to the pipeline); a file there that some other
command wrote is left alone unless `--force`. `--force` also reruns up-to-date steps.
`--from-stage` and `--to-stage` limit the run to a stretch of the steps. `manifest.json` in the run
folder lists each step's artifact, fingerprint, status and wall time (`wall_seconds` of this run,
`written_seconds` of the run that wrote the artifact, kept while it stays up to date).
"""

from __future__ import annotations

import difflib
import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from wm.config import check_key, coerce_value, load_config_file, parse_set, resolve_config
from wm.errors import ConfigError, UsageError
from wm.io.artifact import open_artifact, open_h5
from wm.io.lock import OutputLock
from wm.progress import log
from wm.runner import run_stage
from wm.stages import get_stage


@dataclass(frozen=True)
class Step:
    """One stage of a recipe."""

    name: str  # unique within the expanded recipe: BASE, or BASE@k in iteration k
    stage: str
    out: str  # file name inside the run folder
    # stage input name -> name of the step producing it, or "file:PATH" for an artifact shipped in the repository
    inputs: Mapping[str, str] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)  # config values for every preset

    @property
    def base(self) -> str:
        """The step's name without its iteration suffix."""
        return self.name.split("@", 1)[0]

    def override_keys(self) -> list[str]:
        """The override names that apply to this step, least specific first: BASE, then BASE@* and BASE@k in an iteration."""
        return [self.base] if self.name == self.base else [self.base, f"{self.base}@*", self.name]


@dataclass(frozen=True)
class Recipe:
    """An ordered chain of steps, the steps of one more iteration, and presets (preset -> step -> overrides)."""

    name: str
    help: str
    steps: Sequence[Step]
    presets: Mapping[str, Mapping[str, Mapping[str, Any]]]
    # iteration(k, retrain_vae) -> the steps of round k >= 2 (they read the steps of round k - 1)
    iteration: Callable[[int, bool], Sequence[Step]] | None = None

    def expand(self, iterations: int = 0, retrain_vae: bool = False) -> list[Step]:
        """The first pass plus `iterations` rounds of the iterative procedure."""
        if iterations and self.iteration is None:
            raise UsageError(f"Pipeline {self.name} has no iterative procedure; drop --iterations.")
        steps = list(self.steps)
        for k in range(2, iterations + 2):
            steps += list(self.iteration(k, retrain_vae))
        return steps


def get_recipe(name: str) -> Recipe:
    """The recipe called `name`, or a UsageError listing the known ones."""
    from wm.pipelines import RECIPES

    if name not in RECIPES:
        close = difflib.get_close_matches(name, RECIPES, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise UsageError(f"Unknown pipeline '{name}'; known pipelines: {', '.join(sorted(RECIPES))}.{hint}")
    return RECIPES[name]


def _match_step(steps: Sequence[Step], name: str, what: str) -> str:
    """`name` if it names a step (or a step's base name, meaning its first occurrence); else a UsageError."""
    names = [step.name for step in steps]
    candidate = name.replace("_", "-") if name.replace("_", "-") in names else name
    if candidate in names:
        return candidate
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise UsageError(f"{what} '{name}' is not a step of this pipeline; steps: {', '.join(names)}.{hint}")


def _rounds_hint(name: str, steps: Sequence[Step]) -> str:
    """A hint for BASE@k or BASE@* of a known step that this run has no such round of: it needs --iterations."""
    name = name.replace("_", "-")
    base, at, _ = name.partition("@")
    if not at or base not in {step.base for step in steps}:
        return ""
    rounds = max([int(step.name.partition("@")[2]) for step in steps if "@" in step.name] or [1])
    have = "only the first pass" if rounds == 1 else f"rounds up to {rounds}"
    return f"; this run has {have}, so '{name}' needs --iterations (K iterations add rounds 2 to K + 1)"


def _step_overrides(steps: Sequence[Step], config_file: str | None, sets: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per-step (or per-base-name) overrides from a YAML/TOML file of {step: {key: value}} and --set STEP.KEY=VALUE."""
    names = {key for step in steps for key in step.override_keys()}
    listing = ", ".join(dict.fromkeys(step.base for step in steps))
    overrides: dict[str, dict[str, Any]] = {}
    if config_file is not None:
        for step_name, values in load_config_file(config_file).items():
            if step_name not in names or not isinstance(values, dict):
                raise ConfigError(f"Config file {config_file}: '{step_name}' is not a step of this pipeline with a mapping of settings "
                                  f"(steps: {listing}; STEP@k for iteration k, STEP@* for every iteration){_rounds_hint(step_name, steps)}.")
            overrides.setdefault(step_name, {}).update({key.replace("-", "_"): value for key, value in values.items()})
    for item in sets:
        key, text = parse_set(item)
        step_name, _, field_name = key.partition(".")
        if step_name.replace("_", "-") in names:
            step_name = step_name.replace("_", "-")
        if not field_name or step_name not in names:
            raise ConfigError(f"--set {item!r}: use STEP.KEY=VALUE with STEP one of {listing} (or STEP@k for iteration k, "
                              f"STEP@* for every iteration){_rounds_hint(step_name, steps)}.")
        overrides.setdefault(step_name, {})[field_name] = ("text", text)
    return overrides


def step_config(recipe: Recipe, step: Step, preset: str | None, overrides: Mapping[str, Mapping[str, Any]]) -> Any:
    """The resolved config of `step` under `preset` and the user's overrides."""
    config_class = get_stage(step.stage).config_class
    chosen = recipe.presets.get(preset, {}) if preset else {}
    values = dict(step.settings)
    user: dict[str, Any] = {}
    for key in step.override_keys():
        values.update(chosen.get(key, {}))
        user.update(overrides.get(key, {}))
    try:
        typed = {key: coerce_value(config_class, key, value, from_text=False) for key, value in values.items()}
        for key, value in user.items():  # the user's overrides win over the recipe's values
            check_key(config_class, key, "--set or --config")
            if isinstance(value, tuple) and value and value[0] == "text":
                typed[key] = coerce_value(config_class, key, value[1], from_text=True)
            else:
                typed[key] = coerce_value(config_class, key, value, from_text=False)
        return resolve_config(config_class, preset=preset if preset in config_class.PRESETS else None, explicit=typed)
    except ConfigError as exc:
        raise ConfigError(f"Step '{step.name}': {exc}") from None


def _owned_by(path: Path, stage: str) -> bool:
    """True if `path` is a wm artifact written by `stage` (so the pipeline may replace it)."""
    try:
        with open_h5(path) as f:
            value = f.attrs.get("stage")
    except (OSError, ValueError):
        return False
    return (value.decode() if isinstance(value, bytes) else value) == stage


def _run_step(stage: Any, config: Any, out: Path, seed: int, inputs: dict, *, rerun: bool, force: bool) -> Any:
    """Run one step; `rerun` runs it even when its output is up to date (the old output is kept until the new one is complete)."""
    replace_changed = force or not out.exists() or _owned_by(out, stage.name)
    return run_stage(stage, config, out=out, seed=seed, inputs=inputs, force=replace_changed, rerun=rerun)


def run_pipeline(
    name: str,
    *,
    preset: str | None,
    out: str | Path | None,
    seed: int,
    force: bool,
    sets: Sequence[str] = (),
    config_file: str | None = None,
    iterations: int = 0,
    retrain_vae: bool = False,
    from_stage: str | None = None,
    to_stage: str | None = None,
) -> dict[str, Any]:
    """Run the steps of recipe `name` (from `from_stage` to `to_stage`) into its run folder; returns the manifest."""
    recipe = get_recipe(name)
    if preset is not None and preset not in recipe.presets:
        raise ConfigError(f"Unknown preset '{preset}' for pipeline {name}; known presets: {', '.join(recipe.presets)}.")
    if iterations < 0:
        raise ConfigError(f"--iterations must be at least 0; got {iterations}.")
    steps = recipe.expand(iterations, retrain_vae)
    names = [step.name for step in steps]
    first = names.index(_match_step(steps, from_stage, "--from-stage")) if from_stage else 0
    last = names.index(_match_step(steps, to_stage, "--to-stage")) if to_stage else len(steps) - 1
    if first > last:
        raise UsageError(f"--from-stage {from_stage} comes after --to-stage {to_stage}.")
    run_folder = Path(out) if out else Path("artifacts") / name / (preset or "default")
    overrides = _step_overrides(steps, config_file, sets)
    # Resolve every config before any work, so a typo fails at once.
    configs = {step.name: step_config(recipe, step, preset, overrides) for step in steps}
    for step in steps:  # shipped artifacts must be there before any work starts
        for source in step.inputs.values():
            if source.startswith(SHIPPED):
                _shipped_path(source)
    for step in steps[:first]:  # the steps --from-stage skips must have left their outputs
        path = run_folder / step.out
        if not path.exists():
            raise UsageError(f"--from-stage {steps[first].name} needs the output of step {step.name}, but {path} does not exist; run the earlier steps first.")
        open_artifact(path).close()
    run_folder.mkdir(parents=True, exist_ok=True)
    # One `wm run` per run folder: the manifest's lock (each step also locks its own output).
    with OutputLock(run_folder / "manifest.json", force=force):
        manifest_path = run_folder / "manifest.json"
        manifest: dict[str, Any] = {"pipeline": name, "preset": preset, "seed": seed, "iterations": iterations, "steps": {}}
        if manifest_path.exists():  # keep the record of steps this run does not touch
            try:
                manifest["steps"] = {k: v for k, v in json.loads(manifest_path.read_text()).get("steps", {}).items() if k in names}
            except (json.JSONDecodeError, OSError):
                pass
        for index, step in enumerate(steps[: last + 1]):
            stage = get_stage(step.stage)
            out_path = run_folder / step.out
            if index < first:
                continue
            inputs = {input_name: _input_path(steps, run_folder, source) for input_name, source in step.inputs.items()}
            out_path.parent.mkdir(parents=True, exist_ok=True)
            log(f"[{index + 1}/{len(steps)}] {step.name} -> {out_path}")
            started = time.monotonic()
            result = _run_step(stage, configs[step.name], out_path, seed, inputs, rerun=force, force=force)
            seconds = round(time.monotonic() - started, 2)
            earlier = manifest["steps"].get(step.name, {})
            if result.status == "up-to-date":  # keep what writing this very artifact took
                written = earlier.get("written_seconds") if earlier.get("fingerprint") == result.fingerprint else None
            else:
                written = seconds
            manifest["steps"][step.name] = {
                "stage": step.stage,
                "path": str(out_path),
                "fingerprint": result.fingerprint,
                "status": result.status,
                "wall_seconds": seconds,
                "written_seconds": written,
            }
            manifest["steps"] = {n: manifest["steps"][n] for n in names if n in manifest["steps"]}
            _write_manifest(manifest_path, manifest)
    return manifest


SHIPPED = "file:"
REPOSITORY = Path(__file__).resolve().parent.parent  # where `file:` inputs are found (artifacts/pretrained/...)


def _shipped_path(source: str) -> str:
    """The path of a shipped artifact ("file:PATH", relative to the repository), or a UsageError if it is missing."""
    path = REPOSITORY / source[len(SHIPPED):]
    if not path.exists():
        raise UsageError(f"{path} is missing: this pipeline starts from an artifact shipped with the repository; run wm from a clone "
                         "of it (pip install -e .) and restore the file with git checkout.")
    return str(path)


def _input_path(steps: Sequence[Step], run_folder: Path, source: str) -> str:
    """The file a step input reads: the output of the step named `source`, or a shipped artifact ("file:PATH")."""
    return _shipped_path(source) if source.startswith(SHIPPED) else str(run_folder / _step(steps, source).out)


def _step(steps: Sequence[Step], name: str) -> Step:
    return next(step for step in steps if step.name == name)


def _write_manifest(path: Path, manifest: Mapping[str, Any]) -> None:
    temporary = path.parent / f".{path.name}.tmp"
    temporary.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(temporary, path)


def with_suffix(step: Step, k: int, out: str, inputs: Mapping[str, str], settings: Mapping[str, Any] | None = None) -> Step:
    """Step `step` as it runs in iteration k: named BASE@k, writing `out`, reading `inputs`."""
    return replace(step, name=f"{step.base}@{k}", out=out, inputs=dict(inputs), settings={**step.settings, **(settings or {})})
