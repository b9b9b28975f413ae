"""Stage `encode`: every frame of a rollouts artifact through a trained VAE, as a `latents` artifact.

    wm encode --rollouts artifacts/doom-takecover/rollouts.h5 --vae artifacts/doom-takecover/vae.h5 \
        --out artifacts/doom-takecover/latents.h5

Stores mu and logvar of q(z | x) for every frame (not a sample: the MDN-RNN stage draws a fresh z
from them every batch), with the actions, rewards, terminations, truncations and the episode index
carried over unchanged, so the latents are step-aligned exactly as the rollouts were.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from wm.config import StageConfig, config_to_json, option
from wm.errors import ArtifactError, Interrupted
from wm.stage import Stage, StageResult, log, prepare_output

STAGE_NAME = "encode"
STAGE_VERSION = 1
READ_ROWS = 1024  # frames read from disk at a time


@dataclass(frozen=True)
class EncodeConfig(StageConfig):
    """Settings of `wm encode`."""

    batch_size: int = option(256, "Frames encoded per batch (does not change the result).", fingerprint=False)
    compression: str = option("lzf", "Compression of the latent arrays: lzf, gzip or none.", choices=("lzf", "gzip", "none"))

    PRESETS = {"tiny": {"batch_size": 32}, "demo": {}, "paper": {}}

    def validate(self) -> None:
        self.require_at_least(1, "batch_size")


def default_out(config: EncodeConfig) -> str:
    return "artifacts/latents.h5"


def run(
    config: EncodeConfig,
    *,
    out: str | Path,
    seed: int,
    inputs: Mapping[str, str | Path],
    force: bool = False,
) -> StageResult:
    """Encode `inputs['rollouts']` with `inputs['vae']` into the latents artifact `out`."""
    import numpy as np

    from wm.data.frames import sequential_batches
    from wm.io.artifact import open_artifact, write_root_attributes, writing_artifact
    from wm.io.models import read_model
    from wm.io.rollouts import check_frames, chunk_rows, compression_options
    from wm.progress import Progress

    out = Path(out)
    with open_artifact(inputs["rollouts"], "rollouts") as rollouts, open_artifact(inputs["vae"], "vae") as vae_artifact:
        check_frames(rollouts, f"the VAE in {vae_artifact.path}")
        if rollouts.file["reward"].shape[0] == 0:
            raise ArtifactError(f"{rollouts.path} holds no steps; there is nothing to encode.")
        refs = [rollouts.input_ref("rollouts"), vae_artifact.input_ref("vae")]
        fingerprint, up_to_date = prepare_output(STAGE_NAME, STAGE_VERSION, config, refs, seed, out, force)
        if up_to_date:
            return StageResult(out, fingerprint, "up-to-date")
        log(f"wm {STAGE_NAME}, config: {config_to_json(config)}")
        from wm.models.vae import build_vae, frames_to_input
        from wm.tfsetup import tensorflow

        tf = tensorflow()
        vae = read_model(vae_artifact, build_vae)
        latent_dim = vae.latent_dim

        @tf.function(input_signature=[tf.TensorSpec((None, 64, 64, 3), tf.uint8)], jit_compile=False)
        def encode(frames):
            return vae.encode(frames_to_input(frames))

        source = rollouts.file
        steps = source["reward"].shape[0]
        try:
            with writing_artifact(out) as f:
                write_root_attributes(
                    f, kind="latents", stage=STAGE_NAME, seed=seed, config_json=config_to_json(config), inputs=refs,
                    fingerprint=fingerprint,
                    extra={
                        "latent_dim": latent_dim,
                        "env_id": rollouts.attr("env_id"),
                        "action_space_json": rollouts.attr("action_space_json"),
                        "observation_space_json": rollouts.attr("observation_space_json"),
                        "vae_fingerprint": vae_artifact.fingerprint,
                        "rollouts_fingerprint": rollouts.fingerprint,
                    },
                )
                options = compression_options(config.compression)
                latent_chunks = (min(steps, chunk_rows((latent_dim,), 4)), latent_dim)
                for name in ("mu", "logvar"):
                    f.create_dataset(name, shape=(steps, latent_dim), dtype=np.float32, chunks=latent_chunks, **options)
                for name in ("action", "reward", "terminated", "truncated"):
                    data = source[name]
                    chunks = (min(steps, data.chunks[0]), *data.shape[1:])
                    f.create_dataset(name, shape=data.shape, dtype=data.dtype, chunks=chunks, **options)
                    for begin in range(0, steps, 65536):  # step arrays are small, but still read in slices
                        f[name][begin : begin + 65536] = data[begin : begin + 65536]
                for name in ("start", "length", "seed", "return"):
                    f.create_dataset(f"episode/{name}", data=source[f"episode/{name}"][:])

                def blocks():
                    for _, frames in sequential_batches(source["obs"], np.arange(steps), READ_ROWS):
                        yield frames

                frames_dataset = tf.data.Dataset.from_generator(
                    blocks, output_signature=tf.TensorSpec((None, 64, 64, 3), tf.uint8)
                ).unbatch().batch(config.batch_size).prefetch(4)
                progress = Progress(steps, description="encode", unit="frames")
                row = 0
                try:
                    for frames in frames_dataset:
                        mu, logvar = encode(frames)
                        n = int(frames.shape[0])
                        f["mu"][row : row + n] = mu.numpy()
                        f["logvar"][row : row + n] = logvar.numpy()
                        row += n
                        progress.update(n)
                finally:
                    progress.close()
        except KeyboardInterrupt:
            raise Interrupted(f"Interrupted: {out} was not written; run the same command again.") from None
    log(f"Wrote {out}: mu and logvar ({latent_dim} dimensions) for {steps} frames.")
    return StageResult(out, fingerprint, "written")


STAGE = Stage(
    name=STAGE_NAME,
    run=run,
    config_class=EncodeConfig,
    output_kind="latents",
    version=STAGE_VERSION,
    help="Encode every frame of a rollouts artifact with a trained VAE (mu, logvar per frame).",
    inputs={"rollouts": "rollouts", "vae": "vae"},
    default_out=default_out,
)
