"""Stage `train-mdnrnn`: the World Models M model, trained on sequence windows of a latents artifact.

    wm train-mdnrnn --latents artifacts/doom-takecover/latents.h5 --preset doom-takecover \
        --out artifacts/doom-takecover/mdnrnn.h5

Symbols: z_t a latent sampled afresh every batch from the stored (mu, sigma) of frame t; a_t the
action taken on frame t (one-hot when discrete); done_t whether the episode terminated after a_t.
The LSTM reads [z_t, a_t] and predicts z_{t+1} (a mixture of K Gaussians per latent dimension),
and optionally r_t and done_t. Held-out episodes are scored after every epoch: the negative
log-likelihood per latent dimension next to the copy baseline z_{t+1} ~ N(z_t, s^2) (s fitted on
the held-out deltas themselves, the best such baseline can do), and for the done head precision,
recall and ROC AUC.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from wm.config import StageConfig, option
from wm.errors import ArtifactError
from wm.io.artifact import create_dataset
from wm.io.models import load_weights
from wm.progress import log, plural
from wm.runner import Input, Output, Stage
from wm.tfsetup import PRECISIONS, tensorflow
from wm.training import apply_if_finite, build_in_precision, start_or_resume, sync_weights, train_epochs, write_training_record
from wm.worldmodels.frames import check_episode_count, split_episodes
from wm.worldmodels.sequences import WindowReader, WindowStream

STAGE_NAME = "train-mdnrnn"
STAGE_VERSION = 2
EVALUATION_EPISODES_PER_BATCH = 16


@dataclass(frozen=True)
class TrainMDNRNNConfig(StageConfig):
    """Settings of `wm train-mdnrnn` (defaults: the paper's CarRacing MDN-RNN)."""

    units: int = option(256, "LSTM units (the paper: 256 for CarRacing, 512 for DoomTakeCover).")
    num_mixtures: int = option(5, "Gaussians per latent dimension (the paper: 5).")
    reward_head: bool = option(False, "Also predict the reward r_t.")
    done_head: bool = option(False, "Also predict done_t, the episode terminating after a_t (DoomTakeCover's death).")
    done_weight: float = option(10.0, "Weight of a done example in the done loss (the reference code: 10; deaths are rare).")
    sequence_length: int = option(
        200,
        "Steps per training window. The paper used 1000 (the `paper` preset); 200 wastes less padding on short "
        "random episodes on a CPU.",
    )
    epochs: int = option(40, "Passes over the training steps.")
    batch_size: int = option(100, "Windows per update (the paper: 100).")
    learning_rate: float = option(1e-3, "Adam learning rate (the paper: 0.001).")
    grad_clip: float = option(1.0, "Gradients are clipped to [-grad_clip, grad_clip] elementwise (the paper: 1.0).")
    heldout_fraction: float = option(0.05, "Fraction of episodes held out for validation (at least one episode).")
    checkpoint_seconds: float = option(300.0, "Also checkpoint inside an epoch after this many seconds.", fingerprint=False)
    precision: str = option(
        "float32", "Compute precision of the updates: mixed_bfloat16 computes the LSTM in bfloat16 with float32 weights "
        "and float32 heads (bench/precision.py); held-out metrics and the stored model stay float32.",
        choices=PRECISIONS, fingerprint="unless-default",
    )

    PRESETS = {
        "tiny": {"units": 16, "epochs": 2, "batch_size": 4, "sequence_length": 16, "done_head": True, "reward_head": True},
        "demo": {"units": 512, "done_head": True, "epochs": 30, "batch_size": 20},
        "doom-takecover": {"units": 512, "done_head": True},
        "carracing": {"units": 256},
        "paper": {"sequence_length": 1000},
    }

    def validate(self) -> None:
        self.require_at_least(1, "units", "num_mixtures", "sequence_length", "epochs", "batch_size")
        self.require_positive("learning_rate", "grad_clip", "done_weight")
        self.require_fraction("heldout_fraction")


def default_out(config: TrainMDNRNNConfig) -> str:
    return "artifacts/mdnrnn.h5"


def action_encoding(action_space_json: str, path: Path) -> tuple[int, bool]:
    """(action input size, discrete?) for an action space: one-hot size n for Discrete(n), the flat size for Box."""
    space = json.loads(action_space_json)
    if space.get("type") == "Discrete":
        return int(space["n"]), True
    if space.get("type") == "Box":
        return int(math.prod(space["shape"])), False
    raise ArtifactError(f"{path} has an action space ({space.get('type')}) the MDN-RNN cannot take; it needs Discrete or Box.")


def check_episodes(lengths, path: Path) -> None:
    """The MDN-RNN learns from transitions z_t -> z_{t+1}: every episode needs at least 2 steps."""
    short = np.flatnonzero(lengths < 2)
    if len(lengths) == 0:
        raise ArtifactError(f"{path} holds no episodes; there is nothing to train on.")
    if len(short):
        raise ArtifactError(
            f"{path} has {len(short)} episode(s) of fewer than 2 steps (the first is episode {int(short[0])}); the MDN-RNN "
            "learns from transitions z_t -> z_(t+1), so record episodes of at least 2 steps."
        )


def prepare(config: TrainMDNRNNConfig, inputs: Mapping[str, Any]) -> TrainMDNRNNConfig:
    """The latents need a Discrete or Box action space and 2 episodes or more of 2 steps or more; --init the same VAE and architecture."""
    latents, init = inputs["latents"], inputs["init"]
    action_encoding(latents.attr("action_space_json"), latents.path)
    check_episodes(latents.file["episode/length"][:], latents.path)
    check_episode_count(latents.file["episode/length"].shape[0])
    if init is not None:
        if init.attr("vae_fingerprint") != latents.attr("vae_fingerprint"):
            raise ArtifactError(f"{init.path} was trained on latents of another VAE than {latents.path}; "
                                "--init needs an MDN-RNN of the same VAE.")
        trained = init.config
        different = [name for name in ("units", "num_mixtures", "reward_head", "done_head") if trained.get(name) != getattr(config, name)]
        if different:
            name = different[0]
            raise ArtifactError(f"{init.path} has {name} = {trained.get(name)!r} but this run asks for {getattr(config, name)!r}; "
                                "--init needs the same architecture.")
    return config


def compute(config: TrainMDNRNNConfig, inputs: Mapping[str, Any], seed: int, output: Output) -> None:
    """Train the MDN-RNN on windows of `inputs['latents']` (from `inputs['init']`'s weights if given); write the `mdnrnn` artifact."""
    from wm.tfsetup import keras, tensorflow

    latents = inputs["latents"]
    action_dim, discrete = action_encoding(latents.attr("action_space_json"), latents.path)
    lengths = latents.file["episode/length"][:]
    train_episodes, heldout_episodes = split_episodes(len(lengths), config.heldout_fraction, seed)
    log(f"{int(lengths[train_episodes].sum())} training steps ({plural(len(train_episodes), 'episode')}), "
        f"{int(lengths[heldout_episodes].sum())} held out ({plural(len(heldout_episodes), 'episode')}).")
    tf, keras = tensorflow(), keras()
    keras.utils.set_random_seed(seed)
    model, evaluation_model = build_models(config, int(latents.attr("latent_dim")), action_dim)
    if inputs["init"] is not None:
        load_weights(inputs["init"], model)  # a checkpoint of this run, if there is one, replaces them below
        log(f"Starting from the weights of {inputs['init'].path}.")
    optimizer = keras.optimizers.Adam(config.learning_rate, clipvalue=config.grad_clip)
    checkpoint, state, _ = start_or_resume(output, model, optimizer)
    train_step, evaluate_step = make_steps(config, model, evaluation_model, optimizer, seed)
    reader = WindowReader(latents.file, action_dim, discrete)
    stream = WindowStream(reader, train_episodes, config.sequence_length, config.batch_size, seed)

    def batches(epoch: int, start: int):
        for batch in stream.batches(epoch, start):
            yield as_tensors(batch), batch.steps

    def evaluate() -> dict:
        sync_weights(evaluation_model, model)
        return heldout_metrics(config, evaluate_step, reader, heldout_episodes, lengths, int(latents.attr("latent_dim")))

    state = train_epochs(
        name=STAGE_NAME, state=state, epochs=config.epochs, batches_per_epoch=stream.batches_per_epoch,
        batches=batches, train_step=lambda tensors, step: train_step(*tensors, tf.constant(step, tf.int64)),
        evaluate=evaluate, checkpoint=checkpoint,
        log_folder=output.log_folder, checkpoint_seconds=config.checkpoint_seconds, unit="steps",
    )
    starts = latents.file["episode/start"][:].tolist()
    with output.artifact(latent_dim=int(latents.attr("latent_dim")), action_dim=action_dim, discrete_actions=discrete,
                         env_id=latents.attr("env_id"), action_space_json=latents.attr("action_space_json"),
                         vae_fingerprint=latents.attr("vae_fingerprint"), latents_fingerprint=latents.fingerprint) as f:
        write_training_record(f, sync_weights(evaluation_model, model), state.history)
        create_dataset(f, "initial/mu", data=latents.file["mu"][starts])
        create_dataset(f, "initial/logvar", data=latents.file["logvar"][starts])
        create_dataset(f, "initial/heldout", data=np.isin(np.arange(len(starts)), heldout_episodes))
    checkpoint.remove()
    final = state.history[-1]
    message = (f"Wrote {output.path}: held-out NLL {final['heldout/nll']:.3f} per latent dimension "
               f"(copy baseline {final['heldout/copy_baseline_nll']:.3f})")
    if config.done_head:
        message += f", done head ROC AUC {final['heldout/done_auc']:.3f}"
    log(message + f"; curves in {output.log_folder / 'loss.png'}.")


def build_models(config: TrainMDNRNNConfig, latent_dim: int, action_dim: int) -> tuple[Any, Any]:
    """(model to train, float32 model to evaluate and store) in the configured precision."""
    from wm.worldmodels.mdnrnn import build_mdnrnn

    return build_in_precision(lambda: build_mdnrnn(
        latent_dim=latent_dim, action_dim=action_dim, units=config.units, num_mixtures=config.num_mixtures,
        reward_head=config.reward_head, done_head=config.done_head, done_weight=config.done_weight,
    ), config.precision)


def as_tensors(batch: Any) -> tuple:
    """A window batch as the compiled steps take it."""
    return (batch.mu, batch.logvar, batch.action, batch.reward, batch.done, batch.valid, batch.has_next)


def make_steps(config: TrainMDNRNNConfig, model: Any, evaluation_model: Any, optimizer: Any, seed: int) -> tuple[Any, Any]:
    """The compiled update (a fresh z sample from q(z | x) every batch) and the held-out step (one fixed sample).

    The loss: the mixture NLL of z_(t+1) (the paper's equation for the MDN-RNN), plus the weighted
    done loss and the reward MSE when those heads exist.
    """
    from wm.worldmodels.losses import done_loss, masked_mean, mixture_nll

    tf = tensorflow()
    float_spec = lambda rank: tf.TensorSpec((None,) * rank, tf.float32)  # noqa: E731
    batch_signature = [float_spec(3), float_spec(3), float_spec(3), float_spec(2), float_spec(2), float_spec(2), float_spec(2)]
    done_weight = float(config.done_weight)

    def losses(network, mu, logvar, action, reward, done, valid, has_next, noise_seed):
        noise = tf.random.stateless_normal(tf.shape(mu), seed=noise_seed)
        z = mu + tf.exp(0.5 * logvar) * noise  # [batch, time + 1, latent]: a fresh sample every batch
        heads, _ = network(z[:, :-1], action)
        nll, nll_per_dimension = mixture_nll(z[:, 1:], heads["logits"], heads["mu"], heads["log_sigma"], has_next)
        values = {"loss": nll, "nll": nll, "nll_per_dimension": nll_per_dimension}
        if config.done_head:
            values["done_loss"] = done_loss(heads["done_logit"], done, valid, done_weight)
            values["loss"] += values["done_loss"]
        if config.reward_head:
            values["reward_mse"] = masked_mean(tf.square(heads["reward"] - reward), valid)
            values["loss"] += values["reward_mse"]
        return values, heads, z

    @tf.function(input_signature=batch_signature + [tf.TensorSpec((), tf.int64)], jit_compile=False)
    def train_step(mu, logvar, action, reward, done, valid, has_next, step):
        with tf.GradientTape() as tape:
            values, _, _ = losses(model, mu, logvar, action, reward, done, valid, has_next, tf.stack([tf.constant(seed, tf.int64), step]))
        gradients = tape.gradient(values["loss"], model.trainable_variables)
        finite = apply_if_finite(optimizer, values["loss"], gradients, model.trainable_variables)
        return {**values, "finite": finite}

    @tf.function(input_signature=batch_signature, jit_compile=False)
    def evaluate_step(mu, logvar, action, reward, done, valid, has_next):
        values, heads, z = losses(evaluation_model, mu, logvar, action, reward, done, valid, has_next, tf.constant([seed, -1], tf.int64))
        nll_sum = values["nll_per_dimension"] * tf.reduce_sum(has_next)  # [latent], summed over transitions
        delta_squares = tf.reduce_sum(tf.square(z[:, 1:] - z[:, :-1]) * has_next[..., None], axis=[0, 1])
        done_probability = tf.sigmoid(heads["done_logit"]) if config.done_head else tf.zeros_like(done)
        reward_error = tf.reduce_sum(tf.square(heads["reward"] - reward) * valid) if config.reward_head else tf.constant(0.0)
        return nll_sum, delta_squares, done_probability, reward_error

    return train_step, evaluate_step


def heldout_metrics(config: TrainMDNRNNConfig, evaluate_step: Any, reader: Any, episodes: Any, lengths: Any, latent_dim: int) -> dict:
    """Whole held-out episodes from a zero state, with one fixed z sample: NLL per dimension against the copy
    baseline (z_(t+1) ~ N(z_t, var of the steps)), the done head's ROC AUC, precision and recall, the reward MSE."""
    from wm.worldmodels.losses import precision_recall, roc_auc

    nll_sum, delta_squares = np.zeros(latent_dim), np.zeros(latent_dim)
    transitions, steps, reward_error = 0.0, 0.0, 0.0
    probabilities, labels = [], []
    for begin in range(0, len(episodes), EVALUATION_EPISODES_PER_BATCH):
        group = episodes[begin : begin + EVALUATION_EPISODES_PER_BATCH]
        batch = reader.read([(int(e), 0, int(lengths[e])) for e in group], int(lengths[group].max()))
        nll, deltas, probability, error = evaluate_step(*as_tensors(batch))
        nll_sum += nll.numpy()
        delta_squares += deltas.numpy()
        transitions += float(batch.has_next.sum())
        steps += float(batch.valid.sum())
        reward_error += float(error)
        mask = batch.valid.astype(bool)
        probabilities.append(probability.numpy()[mask])
        labels.append(batch.done[mask])
    per_dimension = nll_sum / transitions
    copy_variance = delta_squares / transitions  # the copy baseline's variance per dimension
    copy_per_dimension = 0.5 * np.log(2 * np.pi * np.e * copy_variance)
    result = {
        "nll": float(per_dimension.mean()), "nll_per_dimension": per_dimension.tolist(),
        "copy_baseline_nll": float(copy_per_dimension.mean()), "copy_baseline_nll_per_dimension": copy_per_dimension.tolist(),
    }
    if config.done_head:
        scores, truth = np.concatenate(probabilities), np.concatenate(labels)
        precision, recall = precision_recall(scores, truth)
        result.update(done_auc=roc_auc(scores, truth), done_precision=precision, done_recall=recall)
    if config.reward_head:
        result["reward_mse"] = reward_error / steps
    return result


STAGE = Stage(
    STAGE_NAME, compute, TrainMDNRNNConfig, output_kind="mdnrnn", version=STAGE_VERSION,
    help="Train the World Models MDN-RNN (memory) on sequence windows of a latents artifact.",
    inputs={
        "latents": Input("latents", "Latents artifact (wm encode) whose sequences M learns."),
        "init": Input("mdnrnn", "MDN-RNN artifact of the same VAE and architecture whose weights start the training (the iterative "
                                "procedure: continue M on old and new data instead of starting again).", optional=True),
    },
    default_out=default_out,
    prepare=prepare,
)
