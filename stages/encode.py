"""Stage `encode`: every frame of a rollouts artifact through a trained VAE, as a `latents` artifact.

    wm encode --rollouts artifacts/doom-takecover/rollouts.h5 --vae artifacts/doom-takecover/vae.h5 \
        --out artifacts/doom-takecover/latents.h5

Stores mu and logvar of q(z | x) for every frame (not a sample: the MDN-RNN stage draws a fresh z
from them every batch), with the actions, rewards, terminations, truncations and the episode index
carried over unchanged, so the latents are step-aligned exactly as the rollouts were.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from wm.config import StageConfig, option
from wm.errors import ArtifactError
from wm.io.artifact import SEAL_BYTES, create_dataset, ensure_space
from wm.io.models import read_model
from wm.io.rollouts import STEP_DATASETS, check_frames, chunk_rows, compression_option, compression_options
from wm.progress import Progress, log
from wm.runner import Input, Output, Stage
from wm.tfsetup import tensorflow
from wm.worldmodels.frames import sequential_batches

STAGE_NAME = "encode"
STAGE_VERSION = 1
READ_ROWS = 1024  # frames read from disk at a time


@dataclass(frozen=True)
class EncodeConfig(StageConfig):
    """Settings of `wm encode`."""

    batch_size: int = option(256, "Frames encoded per batch (does not change the result).", fingerprint=False)
    compression: str = compression_option("the latent and step arrays")

    PRESETS = {"tiny": {"batch_size": 32}, "demo": {}, "paper": {}}

    def validate(self) -> None:
        self.require_at_least(1, "batch_size")


def default_out(config: EncodeConfig) -> str:
    return "artifacts/latents.h5"


def prepare(config: EncodeConfig, inputs: Mapping[str, Any]) -> EncodeConfig:
    """The rollouts must hold 64x64 frames, and some."""
    rollouts = inputs["rollouts"]
    check_frames(rollouts, f"the VAE in {inputs['vae'].path}")
    if rollouts.file["reward"].shape[0] == 0:
        raise ArtifactError(f"{rollouts.path} holds no steps; there is nothing to encode.")
    return config


def compute(config: EncodeConfig, inputs: Mapping[str, Any], seed: int, output: Output) -> None:
    """Encode every frame of `inputs['rollouts']` with `inputs['vae']`; write mu, logvar and the step arrays as `latents`."""
    from wm.worldmodels.vae import build_vae

    rollouts, vae_artifact = inputs["rollouts"], inputs["vae"]
    vae = read_model(vae_artifact, build_vae)
    latent_dim, source = vae.latent_dim, rollouts.file
    steps = source["reward"].shape[0]
    attributes = {
        "latent_dim": latent_dim, "env_id": rollouts.attr("env_id"), "action_space_json": rollouts.attr("action_space_json"),
        "observation_space_json": rollouts.attr("observation_space_json"), "vae_fingerprint": vae_artifact.fingerprint,
        "rollouts_fingerprint": rollouts.fingerprint,
    }
    step_bytes = 2 * 4 * latent_dim + sum(source[name].dtype.itemsize * int(np.prod(source[name].shape[1:])) for name in STEP_DATASETS[1:])
    ensure_space(output.path.parent, steps * step_bytes + SEAL_BYTES, f"the latents of {steps} frames")
    with output.artifact(streamed=True, **attributes) as f:
        options = compression_options(config.compression)
        latent_chunks = (min(steps, chunk_rows((latent_dim,), 4)), latent_dim)
        for name in ("mu", "logvar"):
            create_dataset(f, name, shape=(steps, latent_dim), dtype=np.float32, chunks=latent_chunks, **options)
        for name in ("action", "reward", "terminated", "truncated"):
            data = source[name]
            chunks = (min(steps, data.chunks[0]), *data.shape[1:])
            create_dataset(f, name, shape=data.shape, dtype=data.dtype, chunks=chunks, **options)
            for begin in range(0, steps, 65536):  # step arrays are small, but still read in slices
                f[name][begin : begin + 65536] = data[begin : begin + 65536]
        for name in ("start", "length", "seed", "return"):
            create_dataset(f, f"episode/{name}", data=source[f"episode/{name}"][:])
        encode_frames(vae, source["obs"], f["mu"], f["logvar"], config.batch_size)
    log(f"Wrote {output.path}: mu and logvar ({latent_dim} dimensions) for {steps} frames.")


def encode_frames(vae: Any, obs: Any, mu_out: Any, logvar_out: Any, batch_size: int) -> None:
    """mu and logvar of q(z | x) for every frame of `obs`, streamed from disk in blocks and written row by row."""
    from wm.worldmodels.vae import frames_to_input

    tf = tensorflow()
    steps = obs.shape[0]

    @tf.function(input_signature=[tf.TensorSpec((None, 64, 64, 3), tf.uint8)], jit_compile=False)
    def encode(frames):
        return vae.encode(frames_to_input(frames))

    def blocks():
        for _, frames in sequential_batches(obs, np.arange(steps), READ_ROWS):
            yield frames

    frames_dataset = tf.data.Dataset.from_generator(
        blocks, output_signature=tf.TensorSpec((None, 64, 64, 3), tf.uint8)
    ).unbatch().batch(batch_size).prefetch(4)
    progress = Progress(steps, description="encode", unit="frames")
    row = 0
    try:
        for frames in frames_dataset:
            mu, logvar = encode(frames)
            n = int(frames.shape[0])
            mu_out[row : row + n] = mu.numpy()
            logvar_out[row : row + n] = logvar.numpy()
            row += n
            progress.update(n)
    finally:
        progress.close()


STAGE = Stage(
    STAGE_NAME, compute, EncodeConfig, output_kind="latents", version=STAGE_VERSION,
    help="Encode every frame of a rollouts artifact with a trained VAE (mu, logvar per frame).",
    inputs={"rollouts": Input("rollouts", "Rollouts artifact whose frames are encoded."),
            "vae": Input("vae", "Trained VAE artifact (wm train-vae).")},
    default_out=default_out,
    prepare=prepare,
)
