"""The stage runner: every stage's artifact lifecycle, written once (docs/architecture.md, "The stage contract").

A stage is a `Stage` spec: its name, its inputs (declared once: kind, help, optional), its config
class, its output kind and version, and a `compute(config, inputs, seed, output)` core. The CLI
and `wm run` both call `run_stage`, which does everything around the core:

    1. refuse an output that is a folder or one of the inputs; create the output's folder;
    2. take the output's lock (`wm.io.lock`): a second run on the same output stops here, before
       any file is touched;
    3. open and validate every input by kind (`wm.io.artifact.open_artifact`);
    4. `prepare(config, inputs)`: the stage's checks of its inputs against each other and the
       config, and config values derived from them (an environment's step cap), before hashing;
    5. the fingerprint, and the up-to-date check (the output holds this result already: done);
    6. print the resolved config, run the core, and turn Ctrl-C into `Interrupted`;
    7. exit codes: every failure the user can act on is a `WMError` carrying its code.

The core writes through its `Output`: `output.artifact(**attributes)` is the HDF5 file to fill
(root attributes written, moved into place atomically when the block ends), `output.checkpoint()`
is the run's resumable state and `output.log_folder` its metrics and plots.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from wm import interrupts
from wm.checkpoint import Checkpoint
from wm.config import config_to_json
from wm.errors import ArtifactError, DiskFull, Interrupted, OutputExistsError, UsageError, WMError, WorkerError
from wm.io.artifact import (
    check_output,
    commit,
    compute_fingerprint,
    ensure_writable_folder,
    open_artifact,
    write_root_attributes,
    writing_artifact,
)
from wm.io.integrity import find_damage
from wm.io.lock import OutputLock
from wm.progress import log


@dataclass(frozen=True)
class Input:
    """One declared input of a stage: the artifact kind(s) it takes, its --help text, and whether it may be left out."""

    kind: str | tuple[str, ...]
    help: str
    optional: bool = False


@dataclass(frozen=True)
class StageResult:
    """What a stage run produced: the output path, its fingerprint and whether work was done."""

    out: Path
    fingerprint: str
    status: str  # "written" or "up-to-date"


@dataclass(frozen=True)
class Stage:
    """A stage spec, from which both its CLI command and its `wm run` steps are generated.

    `compute(config, inputs, seed, output)` is the core: `inputs` maps each declared input name to
    its open, validated `Artifact` (None for an optional input left out). `prepare(config, inputs)`
    checks that the inputs fit each other and the config (raising a WMError) and returns the config
    with the values derived from them. The version is part of every fingerprint: bump it when the
    output changes for the same config. `artifact=False` marks a stage whose output is a picture or
    a video (`wm dream`): it has no fingerprint and is never up to date.
    """

    name: str
    compute: Callable[..., None]
    config_class: type
    output_kind: str
    version: int
    help: str
    inputs: Mapping[str, Input] = field(default_factory=dict)
    default_out: Callable[[Any], str] | None = None
    prepare: Callable[[Any, Mapping[str, Any]], Any] | None = None
    # side_outputs(config, inputs, seed, output): files asked for by options outside the fingerprint (`wm evaluate
    # --video`), written after the core and also when the artifact is up to date.
    side_outputs: Callable[..., None] | None = None
    artifact: bool = True


@dataclass
class Output:
    """What a stage's core writes: the output path, and the identity every artifact of this run carries."""

    path: Path
    stage: Stage
    config: Any
    seed: int
    refs: list
    fingerprint: str
    force: bool

    def write_root_attributes(self, f: Any, kind: str | None = None, **extra: Any) -> None:
        """Write the root attributes of this run's artifact (and kind-specific `extra` ones) into an open file.

        `kind` is the stage's output kind unless a second file of the run has another (the Dreamer replay).
        """
        write_root_attributes(f, kind=kind or self.stage.output_kind, stage=self.stage.name, seed=self.seed, config_json=config_to_json(self.config),
                              inputs=self.refs, fingerprint=self.fingerprint, extra=extra)

    @contextlib.contextmanager
    def artifact(self, *, streamed: bool = False, **extra: Any) -> Iterator[Any]:
        """The output artifact to fill, root attributes written; sealed and moved into place when the block ends without error.

        `streamed`: written in place rather than in memory, for arrays too large for memory (`wm.io.artifact.writing_artifact`).
        """
        with writing_artifact(self.path, streamed=streamed) as f:
            self.write_root_attributes(f, **extra)
            yield f

    def commit(self, temporary: Path, written: tuple[int, int]) -> None:
        """Move a complete file this run wrote (`written`: its device and inode) into place as the output."""
        commit(temporary, self.path, written)

    @property
    def checkpoint_folder(self) -> Path:
        return self.path.parent / f"{self.path.stem}.ckpt"

    @property
    def log_folder(self) -> Path:
        return self.path.parent / f"{self.path.stem}.logs"

    def checkpoint(self) -> Any:
        """The run's resumable state (`wm.checkpoint.Checkpoint`), tied to this fingerprint; --force discards another run's."""
        return Checkpoint(self.checkpoint_folder, self.fingerprint, force=self.force)


def run_stage(
    stage: Stage, config: Any, *, out: str | Path, seed: int, inputs: Mapping[str, Any], force: bool = False, rerun: bool = False
) -> StageResult:
    """Run `stage` into `out`: the one way the CLI and `wm run` both use (see the module docstring).

    `inputs` maps input names to paths (None or absent for an optional input left out). `force`
    replaces an output (or unfinished run) made with other settings; `rerun` also redoes an
    up-to-date output, which is kept until the new one is complete.
    """
    out = Path(out)
    _check_paths(stage, out, inputs)
    ensure_writable_folder(out)
    output = Output(out, stage, config, seed, [], "", force or rerun)
    had_logs = output.log_folder.exists()
    with OutputLock(out, force=force or rerun), contextlib.ExitStack() as stack:
        try:
            opened = _open_inputs(stage, inputs, stack)
            with _one_sentence_failures(opened, out):
                if stage.prepare is not None:
                    config = output.config = stage.prepare(config, opened)
                output.refs = [artifact.input_ref(name) for name, artifact in opened.items() if artifact is not None]
                status = "up-to-date" if _up_to_date(stage, output, rerun) else "written"
                if status == "written":
                    log(f"wm {stage.name}, seed {seed}, config: {_config_json(config)}")
                    try:
                        stage.compute(config, opened, seed, output)
                    except KeyboardInterrupt:
                        raise Interrupted(f"Interrupted: {out} was not written; run the same command again.") from None
                    finally:
                        interrupts.clear()
                if stage.side_outputs is not None:
                    stage.side_outputs(config, opened, seed, output)
            return StageResult(out, output.fingerprint, status)
        except BaseException:
            if not had_logs and output.log_folder.is_dir() and not (output.log_folder / "metrics.jsonl").exists():
                shutil.rmtree(output.log_folder, ignore_errors=True)  # a failed run's empty log folder
            raise


def _config_json(config: Any) -> str:
    return config_to_json(config)


def _check_paths(stage: Stage, out: Path, inputs: Mapping[str, Any]) -> None:
    """Refuse an output that is a folder or the same file as one of the inputs, and unknown inputs."""
    for name, path in inputs.items():
        if name not in stage.inputs:
            raise UsageError(f"{stage.name} has no input '{name}'; its inputs: {', '.join(stage.inputs) or 'none'}.")
        if path is not None and _same_file(Path(path), out):
            raise UsageError(f"--out {out} is the --{name.replace('_', '-')} input; write the output to another file.")
    if out.is_dir():
        raise UsageError(f"Output path {out} is a folder; give a file name.")


def _same_file(a: Path, b: Path) -> bool:
    """True if `a` and `b` name the same file (also through links)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return a.samefile(b)
    except OSError:
        return False


def _open_inputs(stage: Stage, inputs: Mapping[str, Any], stack: contextlib.ExitStack) -> dict[str, Any]:
    """Every declared input, opened and validated by kind (None for an optional input left out)."""
    opened: dict[str, Any] = {}
    for name, spec in stage.inputs.items():
        path = inputs.get(name)
        if path is None:
            if not spec.optional:
                raise UsageError(f"{stage.name} needs --{name.replace('_', '-')} ({spec.help})")
            opened[name] = None
            continue
        opened[name] = stack.enter_context(open_artifact(path, spec.kind))
    return opened


@contextlib.contextmanager
def _one_sentence_failures(opened: Mapping[str, Any], out: Path) -> Iterator[None]:
    """Unexpected errors that are the input's or the disk's fault, as one sentence instead of a traceback.

    A full disk that a writer's space check did not foresee (another program filled it) is `DiskFull`.
    Otherwise every input is read whole: a damaged one is named.

    Opening an input checks its structure and float data (`wm.io.integrity.check_sealed`); the
    bytes of its other arrays (frames, actions) are only verified, by their checksums, as a stage
    reads them, so a damaged frame surfaces mid-run as an h5py or TensorFlow error.
    """
    try:
        yield
    except Exception as exc:
        if isinstance(exc, WMError) and not isinstance(exc, WorkerError):  # already one sentence (a worker's may hide damage)
            raise
        if isinstance(exc, OSError) and (exc.errno == errno.ENOSPC or "No space left on device" in str(exc)):
            raise DiskFull(f"No space left on the disk of {out.parent} while writing {out.name}; free some space and run "
                           "the same command again.") from None
        for artifact in opened.values():
            damage = artifact is not None and find_damage(artifact.file, artifact.path)
            if damage:
                raise ArtifactError(damage) from None
        raise


def _up_to_date(stage: Stage, output: Output, rerun: bool) -> bool:
    """Fingerprint the run; True if the output already holds exactly this result (and `rerun` is not set).

    An output that holds another result is refused unless --force (`wm.io.artifact.check_output`).
    """
    if not stage.artifact:
        if output.path.exists() and not output.force:
            raise OutputExistsError(f"{output.path} already exists; pass --force to replace it or choose another --out.")
        return False
    output.fingerprint = compute_fingerprint(stage.name, stage.version, output.config.fingerprint_dict(), output.refs, output.seed)
    if check_output(output.path, output.fingerprint, force=output.force) and not rerun:
        log(f"{output.path} is up to date (fingerprint {output.fingerprint}); nothing to do.")
        return True
    return False
