"""What the training loops share: the epoch loop, resume, the non-finite guard, metrics and loss curves.

Folders beside an output `X/name.h5`:
    X/name.ckpt/checkpoint.h5   weights, optimizer state, counters and history of the unfinished run
                                (`wm.checkpoint`); removed once the artifact is written
    X/name.logs/metrics.jsonl   one JSON line per epoch, keys `split/name`
    X/name.logs/tensorboard/    the same scalars for TensorBoard
    X/name.logs/loss.png        the curves

A checkpoint is written at the end of every epoch and every `checkpoint_seconds` inside one. The
batch order of an epoch and every random draw are functions of (seed, epoch, step), so a run
resumed from a checkpoint continues exactly where the killed one was.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from wm.errors import Interrupted, TrainingDiverged
from wm.io.artifact import create_dataset
from wm.io.models import write_model
from wm.progress import Progress, log
from wm.tfsetup import dtype_policy, tensorflow


@dataclass
class TrainingState:
    """Counters and history of a training run (everything besides the variables)."""

    epoch: int = 0  # completed epochs
    batch: int = 0  # batches done in the current epoch
    step: int = 0  # optimizer updates in total
    sums: dict[str, float] = field(default_factory=dict)  # metric sums of the current epoch
    count: int = 0  # batches in those sums
    history: list[dict[str, float]] = field(default_factory=list)  # one row per completed epoch

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def start_or_resume(output: Any, model: Any, optimizer: Any) -> tuple[Any, TrainingState, dict[str, np.ndarray]]:
    """The checkpoint (tracking `model` and `optimizer`), state and saved arrays of the run writing `output`.

    Builds the optimizer first, so that its slot variables exist to be restored.
    """
    optimizer.build(model.trainable_variables)
    checkpoint = output.checkpoint().track(model=model.weights, optimizer=optimizer.variables)
    saved = checkpoint.load()
    if saved is None:
        return checkpoint, TrainingState(), {}
    state = TrainingState(**saved[0])
    log(f"Resuming from {checkpoint.path}: epoch {state.epoch + 1}, batch {state.batch + 1}.")
    return checkpoint, state, saved[1]


# Keys of a history row that describe the epoch rather than measure the model: no final_* attribute, no TensorBoard scalar.
RECORD_KEYS = ("epoch", "seconds", "items")


def write_training_record(f: Any, model: Any, history: list[Mapping[str, Any]]) -> None:
    """Store a trained model and its history in an open artifact: the `model` group, `history/*`
    datasets, and the root attributes `history_json` and `final_<split>_<name>` (scalars of the last epoch)."""
    write_model(f, model)
    for key, values in history_arrays(history).items():
        create_dataset(f, f"history/{key.replace('/', '_')}", data=values)
    f.attrs["history_json"] = json.dumps(history)
    for key, value in history[-1].items():
        if key not in RECORD_KEYS and np.isscalar(value):
            f.attrs[f"final_{key.replace('/', '_')}"] = value


class MetricsLog:
    """metrics.jsonl and TensorBoard scalars in the run's log folder."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._writer: Any = None

    def write(self, row: Mapping[str, float], step: int) -> None:
        with open(self.folder / "metrics.jsonl", "a") as handle:
            handle.write(json.dumps({"step": step, **row}) + "\n")

        tf = tensorflow()
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.folder / "tensorboard"))
        with self._writer.as_default():
            for key, value in row.items():
                if key not in RECORD_KEYS and np.isscalar(value) and np.isfinite(value):
                    tf.summary.scalar(key, value, step=step)
        self._writer.flush()


def plot_history(history: list[Mapping[str, float]], path: Path, title: str) -> None:
    """One panel per metric name, train and held-out curves over epochs, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({key.split("/", 1)[1] for row in history for key, value in row.items() if "/" in key and np.isscalar(value)})
    if not names:
        return
    columns = min(4, len(names))
    rows = -(-len(names) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.2 * rows), squeeze=False)
    for axis in axes.flat[len(names) :]:
        axis.set_visible(False)
    epochs = [row["epoch"] for row in history]
    for axis, name in zip(axes.flat, names):
        for split in ("train", "heldout"):
            values = [row.get(f"{split}/{name}", np.nan) for row in history]
            if np.isfinite(values).any():
                axis.plot(epochs, values, marker="o", markersize=3, label=split)
        axis.set_title(name)
        axis.set_xlabel("epoch")
        if axis.get_lines():
            axis.legend()
    fig.suptitle(title)
    fig.tight_layout()
    temporary = path.parent / f".{path.name}.tmp.png"
    fig.savefig(temporary, dpi=90)
    plt.close(fig)
    os.replace(temporary, path)


def train_epochs(
    *,
    name: str,
    state: TrainingState,
    epochs: int,
    batches_per_epoch: int,
    batches: Callable[[int, int], Iterator[tuple[Any, int]]],
    train_step: Callable[[Any, int], Mapping[str, Any]],
    evaluate: Callable[[], Mapping[str, float]],
    checkpoint: Any,
    log_folder: Path,
    checkpoint_seconds: float,
    unit: str = "frames",
) -> TrainingState:
    """The epoch loop shared by the training stages.

    `batches(epoch, start)` yields (batch, items) from batch `start` of `epoch`;
    `train_step(batch, step)` applies one update unless a loss or gradient is not finite and returns
    scalar metrics including `finite` (bool); `evaluate()` returns held-out metrics. Stops with
    TrainingDiverged (last good checkpoint kept) if `finite` is false, with Interrupted on Ctrl-C.
    `checkpoint` (`wm.checkpoint.Checkpoint`) tracks the model's and optimizer's variables.
    """
    metrics = MetricsLog(log_folder)
    progress = Progress(
        epochs * batches_per_epoch, description=name, unit="batch",
        initial=state.epoch * batches_per_epoch + state.batch, secondary_unit=unit,
    )
    last_save = time.monotonic()
    try:
        for epoch in range(state.epoch, epochs):
            epoch_start, epoch_items = time.monotonic(), 0
            for batch, items in batches(epoch, state.batch):
                values = {key: np.asarray(value, dtype=np.float64) for key, value in train_step(batch, state.step).items()}
                check_finite(values, name=name, where=f"epoch {epoch + 1}, batch {state.batch + 1}", checkpoint_folder=checkpoint.folder,
                             advice="check the input data, or lower the learning rate and start over with --force")
                for key, value in values.items():  # scalars, or vectors such as a loss per latent dimension
                    state.sums[key] = (np.asarray(state.sums.get(key, 0.0)) + value).tolist()
                state.count += 1
                state.batch += 1
                state.step += 1
                epoch_items += items
                progress.update(1, secondary=items, postfix=f"epoch {epoch + 1}/{epochs}, loss {float(values['loss']):.4g}")
                if time.monotonic() - last_save >= checkpoint_seconds:
                    checkpoint.save(state.to_dict())
                    last_save = time.monotonic()
            # seconds and items (frames or steps): the epoch's updates and checkpoints in this process (after a resume,
            # only its part of the epoch), without the held-out evaluation
            row: dict[str, Any] = {"epoch": epoch + 1, "seconds": time.monotonic() - epoch_start, "items": epoch_items}
            row.update({f"train/{key}": (np.asarray(total) / max(state.count, 1)).tolist() for key, total in state.sums.items()})
            row.update({f"heldout/{key}": value for key, value in evaluate().items()})
            state.history.append(row)
            state.epoch, state.batch, state.sums, state.count = epoch + 1, 0, {}, 0
            checkpoint.save(state.to_dict())
            last_save = time.monotonic()
            metrics.write(row, state.step)
            plot_history(state.history, Path(log_folder) / "loss.png", name)
            summary = ", ".join(f"{key} {value:.4g}" for key, value in row.items() if key != "epoch" and np.isscalar(value))
            progress.write(f"{name} epoch {epoch + 1}/{epochs}: {summary}")
    except KeyboardInterrupt:
        raise Interrupted(
            f"Interrupted: {state.epoch} of {epochs} epochs are done and checkpointed in {checkpoint.folder}; "
            "run the same command again to resume."
        ) from None
    finally:
        progress.close()
    return state


def check_finite(values: dict[str, Any], *, name: str, where: str, checkpoint_folder: Path, advice: str) -> None:
    """The one guard against non-finite training (every training loop calls it after an update).

    `values` are the update's metrics, with `finite` (False when the loss or a gradient was not
    finite, so the update was not applied) if the step reports it; `finite` is removed. Raises
    TrainingDiverged naming the metrics that are not finite, and the checkpoint folder only if it exists.
    """
    finite = bool(np.all(values.pop("finite", True)))
    bad = [key for key, value in values.items() if not np.isfinite(np.asarray(value, dtype=np.float64)).all()]
    if finite and not bad:
        return
    kept = (f"the last good checkpoint is kept in {checkpoint_folder}" if Path(checkpoint_folder).is_dir()
            else "no checkpoint had been written yet")
    raise TrainingDiverged(f"{name}: {', '.join(bad) or 'a gradient'} became NaN or infinite at {where}; training stopped and {kept} ({advice}).")


def build_in_precision(build: Callable[[], Any], precision: str) -> tuple[Any, Any]:
    """(model to train, float32 model to evaluate and store), both from `build()`.

    Under "mixed_bfloat16" the trained model computes in bfloat16 with float32 weights; the second
    model is a float32 twin that `sync_weights` fills with its weights, so that held-out metrics and
    the stored model are those every later stage uses. Under "float32" both are the same model.
    """
    with dtype_policy(precision):
        model = build()
    if precision == "float32":
        return model, model
    with dtype_policy("float32"):
        return model, build()


def sync_weights(evaluation_model: Any, model: Any) -> Any:
    """Copy `model`'s weights into its float32 twin (nothing if they are one model); returns the twin."""
    if evaluation_model is not model:
        evaluation_model.set_weights(model.get_weights())
    return evaluation_model


def apply_if_finite(optimizer: Any, loss: Any, gradients: list[Any], variables: list[Any]) -> Any:
    """Inside a tf.function: apply the update only if the loss and every gradient are finite.

    Returns the boolean tensor `finite`; a non-finite step changes no weight, so the weights (and
    every checkpoint) stay those of the last good step.
    """
    tf = tensorflow()
    finite = tf.math.is_finite(loss) & tf.math.is_finite(tf.linalg.global_norm(gradients))

    def apply() -> Any:
        optimizer.apply_gradients(zip(gradients, variables))
        return tf.constant(True)

    tf.cond(finite, apply, lambda: tf.constant(False))
    return finite


def history_arrays(history: list[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """The per-epoch history as one float64 array per key: [epochs] for scalars, [epochs, n] for vectors.

    A scalar measured only in some rows (a score taken every few generations) is NaN in the others.
    """
    keys = sorted({key for row in history for key in row})
    return {key: np.array([row.get(key, np.nan) for row in history], dtype=np.float64) for key in keys}


def plot_learning_curve(history: list[Mapping[str, Any]], path: Path, title: str, x_key: str) -> None:
    """Population best / mean / worst (or dream returns), with the mean parameters' dream and real scores."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [row[x_key] for row in history]
    fig, axis = plt.subplots(figsize=(8, 4.5))

    def column(key: str) -> np.ndarray:
        return np.array([row.get(key, np.nan) for row in history], dtype=np.float64)

    if "population/mean" in history[0]:
        axis.fill_between(x, column("population/worst"), column("population/best"), alpha=0.2, label="population worst..best")
        axis.plot(x, column("population/mean"), label="population mean")
    for key, label, style in (
        ("dream/return", "dream return", "-"),
        ("mean_params/dream_return", "mean parameters in the dream", "o--"),
        ("mean_params/real_return", "mean parameters in the real environment", "s-"),
    ):
        values = column(key)
        if np.isfinite(values).any():
            keep = np.isfinite(values)
            axis.plot(np.asarray(x)[keep], values[keep], style, label=label)
    real_std = column("mean_params/real_return_std")
    if np.isfinite(real_std).any():
        keep = np.isfinite(real_std)
        mean = column("mean_params/real_return")[keep]
        axis.fill_between(np.asarray(x)[keep], mean - real_std[keep], mean + real_std[keep], alpha=0.15, color="C3")
    axis.set_xlabel(x_key)
    axis.set_ylabel("return")
    axis.set_title(title)
    axis.legend(fontsize=8, loc="best")
    axis.grid(alpha=0.3)
    fig.tight_layout()
    temporary = path.parent / f".{path.name}.tmp.png"
    fig.savefig(temporary, dpi=90)
    plt.close(fig)
    os.replace(temporary, path)
