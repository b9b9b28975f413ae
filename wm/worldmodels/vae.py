"""The World Models convolutional VAE (Ha & Schmidhuber 2018, A.1).

    x        a frame [batch, 64, 64, 3] in [0, 1]
    mu, logvar   the posterior q(z | x) = N(mu, exp(logvar))  [batch, latent]
    z        a latent, mu + exp(logvar / 2) * eps

Encoder: 4 convolutions (32, 64, 128, 256 filters, kernel 4, stride 2, ReLU) -> 2x2x256 -> two dense
heads. Decoder: dense 1024 -> 1x1x1024 -> transposed convolutions 128k5, 64k5, 32k6 (ReLU) and 3k6
(sigmoid), stride 2. With latent 32 this has the paper's 4,348,547 parameters.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wm.tfsetup import keras, tensorflow
from wm.training import apply_if_finite

tf = tensorflow()
keras = keras()

IMAGE_SHAPE = (64, 64, 3)


def frames_to_input(frames: Any) -> Any:
    """uint8 frames [batch, 64, 64, 3] as the VAE's input x, float32 in [0, 1]."""
    return tf.cast(frames, tf.float32) / 255.0


def output_to_frames(images: Any) -> Any:
    """Decoder output in [0, 1] (a tensor or array) as uint8 frames, rounded to the nearest level."""
    return np.clip(np.round(np.asarray(images) * 255.0), 0, 255).astype(np.uint8)


@keras.saving.register_keras_serializable(package="wm")
class ConvVAE(keras.Model):
    """Encoder and decoder of the World Models VAE; `call(x)` returns (reconstruction, mu, logvar, z)."""

    def __init__(self, latent_dim: int = 32, **kwargs: Any):
        super().__init__(**kwargs)
        self.latent_dim = latent_dim
        layers = keras.layers
        self.encoder = keras.Sequential(
            [
                keras.Input(IMAGE_SHAPE),
                layers.Conv2D(32, 4, strides=2, activation="relu"),
                layers.Conv2D(64, 4, strides=2, activation="relu"),
                layers.Conv2D(128, 4, strides=2, activation="relu"),
                layers.Conv2D(256, 4, strides=2, activation="relu"),
                layers.Flatten(),
                # Output layers compute in float32 under a mixed policy (wm.tfsetup.dtype_policy): the loss needs it.
                layers.Dense(2 * latent_dim, dtype="float32"),  # [mu, logvar]
            ],
            name="encoder",
        )
        self.decoder = keras.Sequential(
            [
                keras.Input((latent_dim,)),
                layers.Dense(1024),
                layers.Reshape((1, 1, 1024)),
                layers.Conv2DTranspose(128, 5, strides=2, activation="relu"),
                layers.Conv2DTranspose(64, 5, strides=2, activation="relu"),
                layers.Conv2DTranspose(32, 6, strides=2, activation="relu"),
                layers.Conv2DTranspose(3, 6, strides=2, activation="sigmoid", dtype="float32"),
            ],
            name="decoder",
        )

    def encode(self, x: Any) -> tuple[Any, Any]:
        """(mu, logvar), each [batch, latent], for frames x [batch, 64, 64, 3] in [0, 1]."""
        mu, logvar = tf.split(self.encoder(x), 2, axis=-1)
        return mu, logvar

    def decode(self, z: Any) -> Any:
        """Frames [batch, 64, 64, 3] in [0, 1] for latents z [batch, latent]."""
        return self.decoder(z)

    def call(self, x: Any, noise: Any = None) -> tuple[Any, Any, Any, Any]:
        mu, logvar = self.encode(x)
        z = mu if noise is None else mu + tf.exp(0.5 * logvar) * tf.cast(noise, mu.dtype)  # a mixed policy casts inputs
        return self.decode(z), mu, logvar, z

    def get_config(self) -> dict[str, Any]:
        return {"latent_dim": self.latent_dim}


def build_vae(latent_dim: int) -> ConvVAE:
    """A built ConvVAE (weights created) with the given latent size."""
    model = ConvVAE(latent_dim=latent_dim)
    model(tf.zeros((1, *IMAGE_SHAPE)))
    return model


def make_train_step(model: ConvVAE, optimizer: Any, kl_tolerance: float, seed: int) -> Any:
    """The compiled update `train_step(frames uint8 [batch, 64, 64, 3], step int64) -> metrics`.

    The reparameterisation noise is drawn statelessly from (seed, step), so a resumed run repeats
    the draws of an uninterrupted one. Returns the `vae_loss` terms and `finite`.
    """
    from wm.worldmodels.losses import vae_loss

    signature = [tf.TensorSpec((None, *IMAGE_SHAPE), tf.uint8), tf.TensorSpec((), tf.int64)]

    @tf.function(input_signature=signature, jit_compile=False)
    def train_step(frames: Any, step: Any) -> dict[str, Any]:
        x = frames_to_input(frames)  # [batch, 64, 64, 3]
        noise_seed = tf.stack([tf.constant(seed, tf.int64), step])
        noise = tf.random.stateless_normal((tf.shape(x)[0], model.latent_dim), seed=noise_seed)
        with tf.GradientTape() as tape:
            reconstruction, mu, logvar, _ = model(x, noise)
            losses = vae_loss(x, reconstruction, mu, logvar, kl_tolerance)
        gradients = tape.gradient(losses["loss"], model.trainable_variables)
        finite = apply_if_finite(optimizer, losses["loss"], gradients, model.trainable_variables)
        return {**losses, "finite": finite}

    return train_step
