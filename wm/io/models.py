"""Keras models stored inside artifacts: a group with the constructor config (JSON) and the weights.

    /model                attrs: class (e.g. "ConvVAE"), config_json (constructor arguments)
    /model/00000, ...     the weights in model order, each with its Keras path as attribute `path`

A model artifact is loadable without the data it was trained on and without pickle.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable

import numpy as np

from wm.errors import ArtifactError
from wm.io.artifact import Artifact, create_dataset


def save_variables(group: Any, variables: Iterable[Any]) -> None:
    """Store variables in order as datasets `00000`, `00001`, ... with their Keras path as an attribute."""
    for index, variable in enumerate(variables):
        dataset = create_dataset(group, f"{index:05d}", data=np.asarray(variable.numpy() if hasattr(variable, "numpy") else variable))
        dataset.attrs["path"] = str(getattr(variable, "path", getattr(variable, "name", "")))


def load_variables(group: Any, variables: list[Any], what: str) -> None:
    """Assign stored values to `variables` in order; a count or shape mismatch raises ValueError naming `what`."""
    names = sorted(group.keys())
    if len(names) != len(variables):
        raise ValueError(f"{what} holds {len(names)} arrays but the model has {len(variables)} variables")
    for name, variable in zip(names, variables):
        value = group[name][()]
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(f"{what}: array {group[name].attrs.get('path', name)} has shape {value.shape}, expected {tuple(variable.shape)}")
        variable.assign(value)


def write_model(f: Any, model: Any, group: str = "model") -> None:
    """Store `model` (its class name, get_config() and weights) under `group`."""
    g = f.create_group(group)
    g.attrs["class"] = type(model).__name__
    g.attrs["config_json"] = json.dumps(model.get_config(), sort_keys=True)
    save_variables(g, model.weights)


def model_config(artifact: Artifact, group: str = "model") -> dict[str, Any]:
    """The constructor config of the model stored in `artifact`."""
    return json.loads(artifact.file[group].attrs["config_json"])


def read_model(artifact: Artifact, build: Callable[..., Any], group: str = "model") -> Any:
    """Rebuild the model stored in `artifact` with `build(**config)` and load its weights."""
    model = build(**model_config(artifact, group))
    load_weights(artifact, model, group)
    return model


def load_weights(artifact: Artifact, model: Any, group: str = "model") -> None:
    """Load the weights stored in `artifact`'s `group` into `model`, built with the same architecture."""
    try:
        load_variables(artifact.file[group], list(model.weights), str(artifact.path))
    except ValueError as exc:
        raise ArtifactError(f"{artifact.path} does not hold weights this wm can load ({exc}).") from None
