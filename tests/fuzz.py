"""Damaged-input fuzzing: mutate artifacts of every kind and check that each command reading them fails cleanly.

A mutation is one of: delete or corrupt an attribute; delete a dataset, or change its dtype or shape;
write NaN into float data; truncate the file at a random offset; flip random bytes. Each mutant is
given to every command that reads its kind, run in-process through click's CliRunner. A command
handles a mutant when it exits non-zero with one sentence (`Error: ...` naming the mutant) and no
traceback, or when it succeeds with exactly the output it gives for the undamaged file: the damage
is in bytes it never reads (a frame chunk `wm inspect` does not open), which checksums report when,
and only when, something reads them. Those runs are counted apart as "unaffected".

Byte flips that land in unused space leave the file's contents exactly as they were (every attribute
and array reads back equal); such a flip is drawn again, and the redraws are counted and reported.
"""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import h5py
import numpy as np

MUTATIONS = ("delete attribute", "corrupt attribute", "delete dataset", "change dtype", "change shape", "write NaN",
             "truncate", "flip bytes")


def _objects(f: h5py.File) -> list[tuple[str, object]]:
    found: list[tuple[str, object]] = [("/", f)]
    f.visititems(lambda name, item: found.append((name, item)))
    return found


def _datasets(f: h5py.File) -> list[str]:
    return [name for name, item in _objects(f) if isinstance(item, h5py.Dataset)]


def _attributes(f: h5py.File) -> list[tuple[str, str]]:
    return [(name, key) for name, item in _objects(f) for key in item.attrs]


def _corrupt_value(value: object, rng: random.Random) -> object:
    """A value of another type, or the same type with another content."""
    if isinstance(value, (str, bytes)):
        return rng.choice(["{not json", "", 7, np.float64(np.nan), "x" * 3])
    if isinstance(value, (bool, np.bool_)):
        return "yes"
    if np.ndim(value) == 0:
        return rng.choice(["seven", np.float64(np.nan), value + 1, -1])
    return np.asarray(value).ravel()[:1].astype(np.float64) + 0.5


def _recreate(f: h5py.File, name: str, data: np.ndarray) -> None:
    del f[name]
    f.create_dataset(name, data=data)


def _other_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype({"f": np.int32, "u": np.float32, "i": np.float32, "b": np.uint8}.get(dtype.kind, np.float32))


def _reshaped(data: np.ndarray, rng: random.Random) -> np.ndarray:
    if data.ndim == 0 or data.shape[0] == 0:
        return np.zeros((2, 2), data.dtype)
    return rng.choice([data[:-1], data[..., None], np.concatenate([data, data[:1]])])


def mutate(source: Path, target: Path, mutation: str, rng: random.Random) -> str:
    """Write a mutated copy of `source` to `target`; returns what was done."""
    shutil.copyfile(source, target)
    if mutation in ("truncate", "flip bytes"):
        size = target.stat().st_size
        with open(target, "r+b") as handle:
            if mutation == "truncate":
                offset = rng.randrange(size)
                handle.truncate(offset)
                return f"truncated at byte {offset} of {size}"
            offsets = sorted(rng.randrange(size) for _ in range(rng.choice((1, 1, 1, 2, 4, 8))))
            for offset in offsets:
                handle.seek(offset)
                byte = handle.read(1)[0]
                handle.seek(offset)
                handle.write(bytes([byte ^ rng.randrange(1, 256)]))
            return f"flipped bytes at {offsets}"
    with h5py.File(target, "r+") as f:
        if mutation in ("delete attribute", "corrupt attribute"):
            name, key = rng.choice(_attributes(f))
            item = f if name == "/" else f[name]
            if mutation == "delete attribute":
                del item.attrs[key]
                return f"deleted attribute {key!r} of {name!r}"
            value = _corrupt_value(item.attrs[key], rng)
            item.attrs[key] = value
            return f"set attribute {key!r} of {name!r} to {value!r}"
        if mutation == "delete dataset":
            name = rng.choice(_datasets(f))
            del f[name]
            return f"deleted dataset {name!r}"
        if mutation == "write NaN":
            name = rng.choice([n for n in _datasets(f) if f[n].dtype.kind == "f" and np.isfinite(f[n][()]).any()])
            data = f[name][()]
            data.reshape(-1)[rng.choice(np.flatnonzero(np.isfinite(data)))] = np.nan  # a finite value becomes NaN
            f[name][...] = data
            return f"wrote NaN into {name!r}"
        name = rng.choice(_datasets(f))
        data = f[name][()]
        new = data.astype(_other_dtype(data.dtype)) if mutation == "change dtype" else _reshaped(np.asarray(data), rng)
        _recreate(f, name, new)
        return f"{mutation}: {name!r} from {data.dtype}{np.shape(data)} to {new.dtype}{new.shape}"


def contents(path: Path) -> object:
    """Every attribute and array of a file, as read by h5py (None if the file cannot be read whole)."""
    try:
        with h5py.File(path, "r") as f:
            return [(name, sorted((k, repr(v)) for k, v in item.attrs.items()),
                     item[()].tobytes() if isinstance(item, h5py.Dataset) else None) for name, item in _objects(f)]
    except Exception:  # any failure to read means the flip changed something a reader sees
        return None


@dataclass
class Outcome:
    """What one kind's fuzzing found."""

    kind: str
    tried: int = 0
    handled: int = 0  # failed cleanly, or unaffected
    unaffected: int = 0  # succeeded with the undamaged file's exact output
    redrawn: int = 0
    failures: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)  # what the user saw, one per mutant and reader


def fuzz_kind(kind: str, source: Path, readers: dict[str, Callable[[Path, Path], list[str]]], folder: Path,
              mutations_per_type: int, seed: int, mutant_name: str = "mutant.h5") -> Outcome:
    """Apply `mutations_per_type` of each mutation to `source`; run every reader on each mutant.

    `readers` maps a label to `args(mutant, out)`, the wm command line that reads the mutant.
    """
    from click.testing import CliRunner

    from wm.cli import cli

    rng = random.Random(seed)
    outcome = Outcome(kind)
    original = contents(source)
    runner = CliRunner()
    folder.mkdir(parents=True, exist_ok=True)
    mutant = folder / mutant_name
    baselines: dict[str, tuple] = {}

    def baseline(label: str) -> tuple:
        """The reader's output for the undamaged file under the mutant's name (made when first needed)."""
        if label not in baselines:
            shutil.copyfile(source, mutant)
            baselines[label] = _run(runner, cli, readers[label], mutant, folder / "out")
            assert baselines[label][0] == 0, f"{kind} / {label} fails on the undamaged file: {baselines[label][2].output[-500:]}"
        return baselines[label]

    for mutation in MUTATIONS:
        for _ in range(mutations_per_type):
            what = mutate(source, mutant, mutation, rng)
            while mutation == "flip bytes" and contents(mutant) == original:
                outcome.redrawn += 1
                what = mutate(source, mutant, mutation, rng)
            for label, args in readers.items():
                exit_code, output, result = _run(runner, cli, args, mutant, folder / "out")
                outcome.tried += 1
                if exit_code == 0 and _same_after_baseline(mutant, lambda: baseline(label)[1], output):
                    outcome.handled += 1
                    outcome.unaffected += 1
                    outcome.messages.append(f"{label} / {what}: unaffected (the same output as for the undamaged file)")
                    continue
                problem = _problem(result, mutant)
                if problem is None:
                    outcome.handled += 1
                    outcome.messages.append(f"{label} / {what}: {result.output.splitlines()[-1]}")
                else:
                    outcome.failures.append(f"{kind} / {label} / {what}: {problem}")
    return outcome


def _same_after_baseline(mutant: Path, make_baseline: Callable[[], object], output: object) -> bool:
    """True if `output` equals the undamaged file's (the mutant is set aside while the baseline runs)."""
    kept = mutant.with_name(mutant.name + ".kept")
    shutil.move(mutant, kept)
    try:
        return make_baseline() == output
    finally:
        shutil.move(kept, mutant)


def _run(runner: object, cli: object, args: Callable[[Path, Path], list[str]], mutant: Path, out: Path) -> tuple:
    """(exit code, what the run produced, the click result): its terminal output without timings, and its output files' arrays."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    result = runner.invoke(cli, args(mutant, out))
    lines = [line for line in result.output.splitlines() if not any(word in line for word in ("elapsed", "/s", " s ", "min;"))]
    files = []
    for path in sorted(out.rglob("*")):
        if path.is_file():
            files.append((path.name, _arrays(path) if path.suffix == ".h5" else path.read_bytes()))
    return result.exit_code, (lines, files), result


def _arrays(path: Path) -> object:
    """The datasets of an output artifact (its attributes hold times and dates)."""
    with h5py.File(path, "r") as f:
        return [(name, item[()].tobytes()) for name, item in _objects(f) if isinstance(item, h5py.Dataset)]


def _problem(result: object, mutant: Path) -> str | None:
    """Why a command's handling of a mutant is not clean (None when it is)."""
    if result.exit_code == 0:
        return "exit code 0"
    if not isinstance(result.exception, SystemExit):
        return f"traceback: {type(result.exception).__name__}: {result.exception}"
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    if len(errors) != 1:
        return f"{len(errors)} error lines in: {result.output[-300:]!r}"
    if "Traceback" in result.output:
        return "a traceback in the output"
    if mutant.name not in errors[0]:
        return f"the error does not name the file: {errors[0]}"
    return None
