"""Stage `train-vae`: the World Models V model, trained on the frames of a rollouts artifact.

    wm train-vae --rollouts artifacts/doom-takecover/rollouts.h5 --preset doom-takecover \
        --out artifacts/doom-takecover/vae.h5

Frames stream from the (compressed) HDF5 file in shuffled order through tf.data; a held-out set
of whole episodes measures reconstruction error and KL after every epoch. Checkpoints go to
`<out stem>.ckpt/` (every epoch and every few minutes), metrics and loss.png to `<out stem>.logs/`;
the same command after a kill resumes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

import numpy as np

from wm.config import StageConfig, option
from wm.errors import ConfigError
from wm.io.artifact import create_dataset, mark_as_image_stack
from wm.io.rollouts import check_frames
from wm.media import side_by_side
from wm.progress import log, plural
from wm.runner import Input, Output, Stage
from wm.tfsetup import PRECISIONS, tensorflow
from wm.training import build_in_precision, start_or_resume, sync_weights, train_epochs, write_training_record
from wm.worldmodels.frames import FrameStream, check_episode_count, episode_frame_indices, sequential_batches, split_episodes

STAGE_NAME = "train-vae"
STAGE_VERSION = 2  # 2: frames shuffled by pools of chunk groups


@dataclass(frozen=True)
class TrainVAEConfig(StageConfig):
    """Settings of `wm train-vae` (defaults: the paper's CarRacing VAE)."""

    latent_dim: int = option(32, "Size of z (the paper: 32 for CarRacing, 64 for DoomTakeCover).")
    epochs: int = option(10, "Passes over the training frames (the reference code: 10).")
    batch_size: int = option(100, "Frames per update (the paper: 100).")
    learning_rate: float = option(1e-4, "Adam learning rate (the paper: 0.0001).")
    kl_tolerance: float = option(0.5, "Free bits: the KL term is max(KL, kl_tolerance * latent_dim) (the paper: 0.5).")
    heldout_fraction: float = option(0.05, "Fraction of episodes held out for validation (at least one episode).")
    batches_per_epoch: Optional[int] = option(
        None, "Stop each epoch after this many batches (quick checks); default: every training frame once."
    )
    samples: int = option(16, "Held-out frames stored with their reconstructions in the artifact.")
    precision: str = option(
        "float32", "Compute precision of the updates: mixed_bfloat16 computes in bfloat16 with float32 weights (faster "
        "on CPUs with BF16 instructions; bench/precision.py); held-out metrics and the stored model stay float32.",
        choices=PRECISIONS, fingerprint="unless-default",
    )
    checkpoint_seconds: float = option(
        300.0, "Also checkpoint inside an epoch after this many seconds.", fingerprint=False
    )

    PRESETS = {
        "tiny": {"epochs": 2, "batch_size": 16, "samples": 4, "latent_dim": 8},
        "demo": {"epochs": 3, "latent_dim": 64},
        "doom-takecover": {"latent_dim": 64},
        "carracing": {"latent_dim": 32},
        "paper": {"epochs": 10},
    }

    def validate(self) -> None:
        self.require_at_least(1, "latent_dim", "epochs", "batch_size", "samples", "batches_per_epoch")
        self.require_positive("learning_rate")
        self.require_fraction("heldout_fraction")
        if self.kl_tolerance < 0:
            raise ConfigError(f"'kl_tolerance' must be 0 or more; got {self.kl_tolerance}.")


def default_out(config: TrainVAEConfig) -> str:
    return "artifacts/vae.h5"


def prepare(config: TrainVAEConfig, inputs: Mapping[str, Any]) -> TrainVAEConfig:
    """The rollouts must hold 64x64 frames, in 2 episodes or more."""
    check_frames(inputs["rollouts"], "the VAE")
    check_episode_count(inputs["rollouts"].file["episode/start"].shape[0])
    return config


def compute(config: TrainVAEConfig, inputs: Mapping[str, Any], seed: int, output: Output) -> None:
    """Train the VAE on the frames of `inputs['rollouts']` (held-out episodes measure it) and write the `vae` artifact."""
    from wm.tfsetup import keras, tensorflow
    from wm.worldmodels.vae import build_vae, make_train_step

    rollouts = inputs["rollouts"]
    starts, lengths = rollouts.file["episode/start"][:], rollouts.file["episode/length"][:]
    train_episodes, heldout_episodes = split_episodes(len(starts), config.heldout_fraction, seed)
    train_rows = episode_frame_indices(starts, lengths, train_episodes)
    heldout_rows = episode_frame_indices(starts, lengths, heldout_episodes)
    log(f"{len(train_rows)} training frames ({plural(len(train_episodes), 'episode')}), "
        f"{len(heldout_rows)} held out ({plural(len(heldout_episodes), 'episode')}).")

    tf, keras = tensorflow(), keras()
    keras.utils.set_random_seed(seed)
    model, evaluation_model = build_in_precision(lambda: build_vae(config.latent_dim), config.precision)
    optimizer = keras.optimizers.Adam(config.learning_rate)
    checkpoint, state, _ = start_or_resume(output, model, optimizer)
    train_step = make_train_step(model, optimizer, float(config.kl_tolerance), seed)
    obs = rollouts.file["obs"]
    stream = FrameStream(obs, train_rows, config.batch_size, seed)
    batches_per_epoch = min(stream.batches_per_epoch, config.batches_per_epoch or stream.batches_per_epoch)

    def batches(epoch: int, start: int):
        for frames in stream.dataset(epoch, start).take(batches_per_epoch - start):
            yield frames, int(frames.shape[0])

    state = train_epochs(
        name=STAGE_NAME, state=state, epochs=config.epochs, batches_per_epoch=batches_per_epoch,
        batches=batches, train_step=lambda frames, step: train_step(frames, tf.constant(step, tf.int64)),
        evaluate=heldout_evaluation(evaluation_model, model, obs, heldout_rows, float(config.kl_tolerance)),
        checkpoint=checkpoint, log_folder=output.log_folder,
        checkpoint_seconds=config.checkpoint_seconds,
    )
    evaluation_model = sync_weights(evaluation_model, model)
    with output.artifact(latent_dim=config.latent_dim, env_id=rollouts.attr("env_id"), rollouts_fingerprint=rollouts.fingerprint) as f:
        write_training_record(f, evaluation_model, state.history)
        write_samples(f, evaluation_model, obs, heldout_rows, config.samples)
    checkpoint.remove()
    final = state.history[-1]
    log(f"Wrote {output.path}: held-out reconstruction error {final['heldout/reconstruction']:.2f} (summed squared error "
        f"per frame), KL {final['heldout/kl']:.2f}; curves in {output.log_folder / 'loss.png'}.")


def heldout_evaluation(evaluation_model: Any, model: Any, obs: Any, rows: Any, kl_tolerance: float) -> Callable[[], dict[str, float]]:
    """The held-out metrics of the current weights: the losses of the deterministic reconstruction (z = mu), per frame."""
    from wm.worldmodels.losses import vae_loss
    from wm.worldmodels.vae import IMAGE_SHAPE, frames_to_input

    tf = tensorflow()

    @tf.function(input_signature=[tf.TensorSpec((None, *IMAGE_SHAPE), tf.uint8)], jit_compile=False)
    def evaluate_step(frames):
        x = frames_to_input(frames)
        reconstruction, mu, logvar, _ = evaluation_model(x)
        return vae_loss(x, reconstruction, mu, logvar, kl_tolerance)

    def evaluate() -> dict[str, float]:
        sync_weights(evaluation_model, model)
        totals: dict[str, float] = {}
        for batch_rows, frames in sequential_batches(obs, rows, 256):
            for key, value in evaluate_step(frames).items():
                totals[key] = totals.get(key, 0.0) + float(value) * len(batch_rows)
        return {key: value / len(rows) for key, value in totals.items()}

    return evaluate


def write_samples(f: Any, model: Any, obs: Any, heldout_rows: Any, count: int) -> None:
    """Held-out originals beside their reconstructions (image stacks viewers show), spread over the held-out episodes."""
    from wm.worldmodels.vae import frames_to_input, output_to_frames

    rows = np.unique(heldout_rows[np.linspace(0, len(heldout_rows) - 1, min(count, len(heldout_rows))).astype(int)])
    originals = obs[rows]
    reconstructions = output_to_frames(model(frames_to_input(originals))[0])
    for name, images in (("original", originals), ("reconstruction", reconstructions),
                         ("comparison", side_by_side([originals, reconstructions]))):
        mark_as_image_stack(create_dataset(f, f"samples/{name}", data=images))
    create_dataset(f, "samples/rows", data=rows)


STAGE = Stage(
    STAGE_NAME, compute, TrainVAEConfig, output_kind="vae", version=STAGE_VERSION,
    help="Train the World Models VAE (vision) on the frames of a rollouts artifact.",
    inputs={"rollouts": Input("rollouts", "Rollouts artifact whose frames the VAE learns.")},
    default_out=default_out,
    prepare=prepare,
)
