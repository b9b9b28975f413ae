"""The one resumable-state mechanism of every training loop (docs/architecture.md, "Checkpoints").

A run's checkpoint is `<out stem>.ckpt/checkpoint.h5` beside its output: the run's fingerprint,
its state as JSON (counters, history), the tracked variables (Keras weights and optimizer slots,
assigned in place on load) and any further arrays (CMA-ES fitnesses, the dreams in progress of a
PPO run). It is written atomically, so a kill while saving keeps the previous one, and it is tied
to the fingerprint: a checkpoint of other settings is refused unless --force, which discards it.
No pickle: everything is JSON or HDF5 datasets.

    checkpoint = output.checkpoint().track(model=model.weights, optimizer=optimizer.variables)
    saved = checkpoint.load()          # None, or (state, arrays) with the variables assigned
    checkpoint.save(state, arrays)     # after every epoch / generation / iteration
    checkpoint.remove()                # once the artifact is written
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from wm.errors import OutputExistsError
from wm.io.artifact import create_dataset, open_h5, writing_artifact
from wm.io.models import load_variables, save_variables

CHECKPOINT_FILE = "checkpoint.h5"


class Checkpoint:
    """The resumable state of one run in `folder/checkpoint.h5`, tied to the run's fingerprint."""

    def __init__(self, folder: Path, fingerprint: str, *, force: bool):
        self.folder, self.fingerprint, self.force = Path(folder), fingerprint, force
        self.path = self.folder / CHECKPOINT_FILE
        self.groups: dict[str, Any] = {}

    def track(self, **groups: Iterable[Any]) -> "Checkpoint":
        """Register groups of variables (name -> variables in a fixed order) that are saved and restored in place."""
        self.groups.update(groups)
        return self

    def load(self) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
        """The saved (state, arrays), with every tracked variable assigned; None when there is nothing to resume.

        A checkpoint of another run (fingerprint) or one that cannot be read is refused with one
        sentence, unless --force, which discards it.
        """
        if not self.path.exists():
            return None
        try:
            with open_h5(self.path) as f:
                found = f.attrs.get("fingerprint")
                found = found.decode() if isinstance(found, bytes) else found
                if found != self.fingerprint:
                    return self._discard(f"{self.folder} holds an unfinished training run with other settings or inputs; run that "
                                         "command again to resume it, or pass --force to discard it.")
                for name, variables in self.groups.items():
                    load_variables(f["variables"][name], list(variables), f"checkpoint {self.path}")
                state = json.loads(f.attrs["state_json"])
                arrays = {name: f["arrays"][name][()] for name in f.get("arrays", {})}
        except (OSError, KeyError, ValueError) as exc:
            return self._discard(f"{self.path} cannot be resumed ({exc}); pass --force to discard it and start again.")
        return state, arrays

    def _discard(self, refusal: str) -> None:
        if not self.force:
            raise OutputExistsError(refusal)
        shutil.rmtree(self.folder)
        return None

    def save(self, state: Mapping[str, Any], arrays: Mapping[str, Any] | None = None) -> None:
        """Write the state (JSON), the tracked variables and `arrays` atomically (a full disk keeps the previous checkpoint)."""
        created = not self.folder.exists()
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            self._write(state, arrays)
        except BaseException:
            if created and not any(self.folder.iterdir()):
                self.folder.rmdir()  # no empty folder is left behind by a failed first save
            raise

    def _write(self, state: Mapping[str, Any], arrays: Mapping[str, Any] | None) -> None:
        with writing_artifact(self.path) as f:
            f.attrs["fingerprint"] = self.fingerprint
            f.attrs["state_json"] = json.dumps(state)
            for name, variables in self.groups.items():
                save_variables(f.create_group(f"variables/{name}"), variables)
            for name, values in (arrays or {}).items():
                create_dataset(f, f"arrays/{name}", data=np.asarray(values))

    def remove(self) -> None:
        """Delete the checkpoint folder (the run's artifact is written)."""
        shutil.rmtree(self.folder, ignore_errors=True)
