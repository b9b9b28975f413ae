"""The stage contract (DESIGN.md §2): declared inputs + a frozen config + a seed -> one artifact.

A `Stage` is the small spec from which both the CLI command and the pipeline runner are generated.
Stage functions never import click; they raise `WMError`s for anything the user can fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping


@dataclass(frozen=True)
class StageResult:
    """What a stage run produced: the artifact path, its fingerprint and whether work was done."""

    out: Path
    fingerprint: str
    status: str  # "written" or "up-to-date"


@dataclass(frozen=True)
class Stage:
    """A stage: its name, function, config class, input kinds, output kind and version.

    `run(config, *, out, seed, inputs, force) -> StageResult`; `inputs` maps each declared input
    name to a path. `default_out(config)` gives the output path used when --out is not given.
    The version is part of every fingerprint: bump it when the stage's output changes for the
    same config.
    """

    name: str
    run: Callable[..., StageResult]
    config_class: type
    output_kind: str
    version: int
    help: str
    inputs: Mapping[str, str] = field(default_factory=dict)  # input name -> artifact kind
    default_out: Callable[[Any], str] | None = None
    optional_inputs: tuple[str, ...] = ()  # inputs that may be left out (passed as None)
    input_help: Mapping[str, str] = field(default_factory=dict)  # --help text of an input, if not "Input KIND artifact."


def plural(count: int, noun: str) -> str:
    """'1 episode', '3 episodes'."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def log(message: str) -> None:
    """A stage's progress line, on stderr (stdout stays free for results)."""
    import sys

    print(message, file=sys.stderr, flush=True)


def run_stage(
    stage: Stage, config: Any, *, out: str | Path, seed: int, inputs: Mapping[str, Any], force: bool = False, rerun: bool = False
) -> StageResult:
    """Run `stage` the one way the CLI and `wm run` both use: checks, the output lock, then the stage.

    `inputs` maps input names to paths (None for an optional input left out). `force` replaces an
    output (or unfinished run) made with other settings; `rerun` also redoes an up-to-date output,
    which is kept until the new one is complete. An output that is one of the inputs is refused,
    and a second run on the same output stops with one sentence (`wm.io.lock`).
    """
    import os

    from wm.errors import UsageError
    from wm.io.artifact import ensure_writable_folder
    from wm.io.lock import OutputLock

    out = Path(out)
    for name, path in inputs.items():
        if path is not None and _same_file(Path(path), out):
            raise UsageError(f"--out {out} is the --{name.replace('_', '-')} input; write the output to another file.")
    if out.is_dir():
        raise UsageError(f"Output path {out} is a folder; give a file name.")
    ensure_writable_folder(out)
    log_folder = out.parent / f"{out.stem}.logs"
    had_logs = log_folder.exists()
    with OutputLock(out, force=force or rerun):
        try:
            if not (rerun and out.exists()):
                return stage.run(config, out=out, seed=seed, inputs=inputs, force=force)
            kept = out.parent / f".{out.name}.previous"
            os.replace(out, kept)
            try:
                result = stage.run(config, out=out, seed=seed, inputs=inputs, force=True)
            except BaseException:
                os.replace(kept, out)
                raise
            kept.unlink()
            return result
        except BaseException:
            if not had_logs:
                _remove_if_empty(log_folder)
            raise


def _same_file(a: Path, b: Path) -> bool:
    """True if `a` and `b` name the same file (also through links)."""
    import os

    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return a.samefile(b)
    except OSError:
        return False


def _remove_if_empty(folder: Path) -> None:
    """Delete a log folder a failed run created if it holds no metrics (nothing worth keeping)."""
    import shutil

    if folder.is_dir() and not (folder / "metrics.jsonl").exists():
        shutil.rmtree(folder, ignore_errors=True)


def prepare_output(
    stage: str, version: int, config: Any, inputs: list[Any], seed: int, out: Path, force: bool
) -> tuple[str, bool]:
    """The run's fingerprint, and whether `out` already holds exactly this result (nothing to do).

    Raises OutputExistsError if `out` holds another result and `force` is not set.
    """
    from wm.io.artifact import check_output, compute_fingerprint

    fingerprint = compute_fingerprint(stage, version, config.fingerprint_dict(), inputs, seed)
    up_to_date = check_output(Path(out), fingerprint, force=force)
    if up_to_date:
        log(f"{out} is up to date (fingerprint {fingerprint}); nothing to do.")
    return fingerprint, up_to_date
