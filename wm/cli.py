"""The `wm` command: one click group; stage commands are generated from their `Stage` specs.

Every stage command takes one option per config field (its help text is the field's), plus
`--config`, `--set`, `--preset`, `--seed`, `--out` and `--force`. Nothing here imports TensorFlow:
`wm --help` and `wm <command> --help` stay fast. Errors the user can fix print one sentence to
stderr and exit with the error's code (1 runtime failure, 2 bad input, 130 interrupted).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any, Callable

import click

from wm import __version__, interrupts
from wm.config import coerce_value, field_default, field_types, resolve_config, unwrap_optional
from wm.errors import WMError
from wm.export.to_minari import export_minari
from wm.io.inspect import describe, format_description
from wm.pipelines import RECIPES
from wm.recipe import run_pipeline
from wm.runner import run_stage
from wm.stages import all_stages


def _fail(error: WMError) -> None:
    click.echo(f"Error: {error}", err=True)
    sys.exit(error.exit_code)


def _guarded(action: Callable[[], Any]) -> Any:
    try:
        return action()
    except WMError as error:
        _fail(error)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="wm")
@click.option("--verbose", is_flag=True, help="Show TensorFlow's own log lines too (the same as WM_TF_LOG=1).")
def cli(verbose: bool) -> None:
    """wm: learned world models (World Models, Dreamer, PlaNet) reproduced end to end.

    Each stage reads and writes self-describing HDF5 artifacts; `wm inspect FILE` shows one.
    """
    if verbose:
        import os

        os.environ["WM_TF_LOG"] = "1"  # read by wm.tfsetup, here and in worker processes


def _click_type(config_class: type, field: dataclasses.Field) -> Any:
    base, _ = unwrap_optional(field_types(config_class)[field.name])
    if field.metadata.get("choices"):
        return click.Choice([str(c) for c in field.metadata["choices"]])
    return {int: click.INT, float: click.FLOAT, bool: click.BOOL}.get(base, click.STRING)


def _default_text(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        return "none" if field.default is None else str(field.default)
    return json.dumps(field_default(field))


def _stage_command(stage: Any) -> click.Command:
    config_class = stage.config_class
    fields = dataclasses.fields(config_class)

    def callback(**kwargs: Any) -> None:
        def action() -> None:
            explicit = {}
            for field in fields:
                value = kwargs.pop(field.name)
                if value is not None:
                    explicit[field.name] = coerce_value(config_class, field.name, value, from_text=True)
            config = resolve_config(
                config_class,
                preset=kwargs.pop("preset"),
                config_file=kwargs.pop("config_path"),
                sets=kwargs.pop("set_items"),
                explicit=explicit,
            )
            out = kwargs.pop("out") or (stage.default_out(config) if stage.default_out else None)
            if out is None:
                raise click.UsageError("--out is required.")
            inputs = {name: kwargs.pop(name) for name in stage.inputs}
            run_stage(stage, config, out=out, seed=kwargs.pop("seed"), inputs=inputs, force=kwargs.pop("force"))

        _guarded(action)

    params: list[click.Parameter] = []
    for name, spec in stage.inputs.items():
        params.append(click.Option([f"--{name.replace('_', '-')}", name], required=not spec.optional, type=click.Path(), help=spec.help))
    for field in fields:
        flag = field.metadata.get("flag")
        if flag:  # "--on/--off": the default is shown as the flag that gives it
            default = flag.split("/")[0 if field.default else 1]
            params.append(click.Option([flag, field.name], default=None, help=f"{field.metadata['help']} [default: {default}]"))
            continue
        help_text = f"{field.metadata['help']} [default: {_default_text(field)}]"
        params.append(
            click.Option(
                [f"--{field.name.replace('_', '-')}", field.name],
                type=_click_type(config_class, field),
                default=None,
                help=help_text,
            )
        )
    presets = ", ".join(config_class.PRESETS) or "none"
    params += [
        click.Option(
            ["--out", "out"], type=click.Path(), default=None,
            help="Output file (.gif or .mp4)." if stage.output_kind == "media" else "Output artifact path (.h5).",
        ),
        click.Option(["--seed", "seed"], type=int, default=0, show_default=True, help="Random seed of the run."),
        click.Option(["--preset", "preset"], default=None, help=f"Named settings: {presets}."),
        click.Option(["--config", "config_path"], type=click.Path(), default=None, help="YAML or TOML file of config overrides."),
        click.Option(["--set", "set_items"], multiple=True, metavar="KEY=VALUE", help="Override one config value (repeatable)."),
        click.Option(["--force", "force"], is_flag=True, help="Replace an output (or unfinished run) made with other settings."),
    ]
    return click.Command(stage.name, callback=callback, params=params, help=stage.help, short_help=stage.help)


def _register_stages() -> None:
    for stage in all_stages():
        cli.add_command(_stage_command(stage))


@cli.command("inspect")
@click.argument("path", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def inspect_command(path: str, as_json: bool) -> None:
    """Show an artifact: kind, provenance, datasets and a per-kind summary."""

    def action() -> None:
        description = describe(path)
        click.echo(json.dumps(description, indent=2) if as_json else format_description(description))

    _guarded(action)


@cli.group("export")
def export_group() -> None:
    """Export artifacts to other formats."""


@export_group.command("minari")
@click.argument("rollouts", type=click.Path())
@click.option("--dataset-id", required=True, help="Minari dataset id, e.g. wm/doom-takecover-random-v0.")
@click.option("--force", is_flag=True, help="Replace a local Minari dataset with the same id.")
def export_minari_command(rollouts: str, dataset_id: str, force: bool) -> None:
    """Write a rollouts artifact as a Minari dataset (images stored losslessly)."""

    def action() -> None:
        path = export_minari(rollouts, dataset_id, force=force)
        click.echo(f"Wrote Minari dataset {dataset_id} to {path}; load it with minari.load_dataset({dataset_id!r}).")

    _guarded(action)


@cli.command("run")
@click.argument("pipeline")
@click.option("--preset", default=None, help="Named settings of the recipe (each recipe's presets are listed above).")
@click.option("--out", "out", type=click.Path(), default=None, help="Run folder [default: artifacts/PIPELINE/PRESET].")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed of every stage.")
@click.option("--config", "config_path", type=click.Path(), default=None, help="YAML or TOML file of {step: {key: value}} overrides.")
@click.option("--set", "set_items", multiple=True, metavar="STEP.KEY=VALUE", help="Override one setting of one step (repeatable; STEP@k for iteration k only, 'STEP@*' for every iteration).")
@click.option("--iterations", type=int, default=0, show_default=True,
              help="Rounds of the paper's iterative procedure after the first pass: rollouts with the current controller, M (and V) retrained on all data, C retrained, evaluated.")
@click.option("--retrain-vae", is_flag=True, help="In each iteration retrain V on all data too (default: only M and C).")
@click.option("--from-stage", default=None, help="Start at this step (the earlier steps' outputs must exist).")
@click.option("--to-stage", default=None, help="Stop after this step.")
@click.option("--force", is_flag=True, help="Rerun steps even if their output is up to date, and replace files other commands wrote there.")
def run_command(pipeline: str, preset: str | None, out: str | None, seed: int, config_path: str | None, set_items: tuple[str, ...],
                iterations: int, retrain_vae: bool, from_stage: str | None, to_stage: str | None, force: bool) -> None:
    """Run a pipeline recipe's stages in order (see the recipes below; generated from wm.pipelines)."""

    def action() -> None:
        manifest = run_pipeline(
            pipeline, preset=preset, out=out, seed=seed, force=force, sets=set_items, config_file=config_path,
            iterations=iterations, retrain_vae=retrain_vae, from_stage=from_stage, to_stage=to_stage,
        )
        for name, step in manifest["steps"].items():
            written = step.get("written_seconds")
            took = f" (written in {written:.1f} s)" if step["status"] == "up-to-date" and written is not None else ""
            click.echo(f"{name:<20} {step['status']:<11} {step['wall_seconds']:>8.1f} s  {step['path']}{took}")
        for name, step in manifest["steps"].items():
            if step["stage"] == "fidelity":
                from wm.worldmodels.fidelity import fidelity_report

                click.echo(f"{name}: {fidelity_report(step['path'])}")
        for name, step in manifest["steps"].items():
            if step["stage"] == "evaluate":
                from wm.io.inspect import evaluation_sentence

                click.echo(f"{name}: {evaluation_sentence(step['path'])}")

    _guarded(action)


def _recipes_help() -> str:
    """`wm run --help`: every recipe with its steps, presets and description."""
    lines = ["Run a pipeline recipe's stages in order, skipping those whose output is up to date; ends by printing each "
             "fidelity table and evaluation.", "", "\b", "Recipes:"]
    for recipe in RECIPES.values():
        lines += [f"  {recipe.name}: {' -> '.join(step.name for step in recipe.steps)}",
                  f"      presets: {', '.join(recipe.presets)}", f"      {recipe.help}"]
    return "\n".join(lines)


run_command.help = _recipes_help()
_register_stages()


def main() -> None:
    """Console-script entry point; SIGTERM stops work the way Ctrl-C does (finished work is kept), SIGUSR1 dumps the stacks."""
    interrupts.install()
    cli(prog_name="wm")
