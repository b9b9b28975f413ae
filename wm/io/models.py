"""Keras models stored inside artifacts: a group with the constructor config (JSON) and the weights.

    /model                attrs: class (e.g. "ConvVAE"), config_json (constructor arguments)
    /model/00000, ...     the weights in model order, each with its Keras path as attribute `path`

A model artifact is loadable without the data it was trained on and without pickle.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from wm.errors import ArtifactError
from wm.io.artifact import Artifact


def write_model(f: Any, model: Any, group: str = "model") -> None:
    """Store `model` (its class name, get_config() and weights) under `group`."""
    from wm.training import save_variables

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
    from wm.training import load_variables

    try:
        load_variables(artifact.file[group], list(model.weights), str(artifact.path))
    except ValueError as exc:
        raise ArtifactError(f"{artifact.path} does not hold weights this wm can load ({exc}).") from None
