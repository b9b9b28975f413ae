"""The learned world model a controller acts in: the VAE (V) and MDN-RNN (M), with the recorded first frames.

Loaded from a VAE and an MDN-RNN artifact (checked to be a pair: the MDN-RNN learned the latents of
that VAE), or from a controller artifact, which carries copies of both so that it can be evaluated,
rolled out and dreamed with on its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wm.errors import ArtifactError
from wm.io.artifact import create_dataset, open_artifact
from wm.io.models import read_model


@dataclass
class WorldModel:
    """V and M (Keras models), the recorded first-frame latents, and where they came from."""

    mdnrnn: Any
    vae: Any | None  # None when only the dream's numbers are needed, not frames
    initial_mu: np.ndarray  # [episodes, latent]: the first frame of every recorded episode
    initial_logvar: np.ndarray
    env_id: str
    action_space_json: str
    vae_fingerprint: str
    mdnrnn_fingerprint: str

    @property
    def latent_dim(self) -> int:
        return int(self.mdnrnn.latent_dim)

    @property
    def units(self) -> int:
        return int(self.mdnrnn.units)

    @property
    def discrete_actions(self) -> bool:
        """Whether actions are discrete (the MDN-RNN reads them one-hot)."""
        return json.loads(self.action_space_json).get("type") == "Discrete"


def check_pair(vae: Any, mdnrnn: Any) -> None:
    """Raise ArtifactError unless the MDN-RNN artifact was trained on latents made by this VAE artifact."""
    if mdnrnn.attr("vae_fingerprint") != vae.fingerprint:
        raise ArtifactError(
            f"{mdnrnn.path} was trained on latents made by another VAE (fingerprint {mdnrnn.attr('vae_fingerprint')}) "
            f"than {vae.path} ({vae.fingerprint}); give the VAE whose latents it learned."
        )


def _from_artifacts(vae_artifact: Any | None, mdnrnn_artifact: Any, source: Any, vae_group: str, mdnrnn_group: str,
                    vae_fingerprint: str, mdnrnn_fingerprint: str) -> WorldModel:
    from wm.worldmodels.mdnrnn import build_mdnrnn
    from wm.worldmodels.vae import build_vae

    return WorldModel(
        mdnrnn=read_model(mdnrnn_artifact, build_mdnrnn, mdnrnn_group),
        vae=read_model(vae_artifact, build_vae, vae_group) if vae_artifact is not None else None,
        initial_mu=source.file["initial/mu"][:].astype(np.float32),
        initial_logvar=source.file["initial/logvar"][:].astype(np.float32),
        env_id=source.attr("env_id"),
        action_space_json=source.attr("action_space_json"),
        vae_fingerprint=vae_fingerprint,
        mdnrnn_fingerprint=mdnrnn_fingerprint,
    )


def load_world_model(vae_path: str | Path, mdnrnn_path: str | Path, *, with_vae: bool = True) -> WorldModel:
    """V and M from their artifacts, after checking that they belong together."""
    with open_artifact(vae_path, "vae") as vae, open_artifact(mdnrnn_path, "mdnrnn") as mdnrnn:
        return world_model_of_pair(vae, mdnrnn, with_vae=with_vae)


def world_model_of_pair(vae: Any, mdnrnn: Any, *, with_vae: bool = True) -> WorldModel:
    """V and M from their open artifacts, after checking that they belong together."""
    check_pair(vae, mdnrnn)
    return _from_artifacts(vae if with_vae else None, mdnrnn, mdnrnn, "model", "model", vae.fingerprint, mdnrnn.fingerprint)


def embed_world_model(f: Any, vae: Any, mdnrnn: Any) -> None:
    """Copy V (group `vae`), M (group `mdnrnn`) and the first-frame latents (`initial/*`) into an open artifact."""
    vae.file.copy(vae.file["model"], f, "vae")
    mdnrnn.file.copy(mdnrnn.file["model"], f, "mdnrnn")
    for name in ("mu", "logvar"):
        create_dataset(f, f"initial/{name}", data=mdnrnn.file[f"initial/{name}"][:])
    f.attrs["vae_fingerprint"] = vae.fingerprint
    f.attrs["mdnrnn_fingerprint"] = mdnrnn.fingerprint


def world_model_of(artifact: Any, *, with_vae: bool = True) -> WorldModel:
    """The V and M embedded in a controller artifact."""
    if "vae" not in artifact.file or "mdnrnn" not in artifact.file:
        raise ArtifactError(f"{artifact.path} does not carry the VAE and MDN-RNN it was trained with; train it again.")
    return _from_artifacts(
        artifact if with_vae else None, artifact, artifact, "vae", "mdnrnn",
        artifact.attr("vae_fingerprint"), artifact.attr("mdnrnn_fingerprint"),
    )
