"""Encoders, decoders and MLP heads of the Dreamer world model and actor-critic (DreamerV2, appendix).

    x       an observation: an image [batch, 64, 64, 3] uint8, or a vector [batch, D] float32
    embed   the encoder's output [batch, E]
    feat    an RSSM state's features [h, z] [batch, F]

Images: 4 convolutions of depth d, 2d, 4d, 8d (kernel 4, stride 2, ELU) -> 2x2x8d; the decoder mirrors
it with transposed convolutions (kernels 5, 5, 6, 6) and predicts the pixel means of a unit-variance
Gaussian. Vectors: MLPs. Pixels enter as x / 255 - 0.5.
"""

from __future__ import annotations

from typing import Any

from wm.tfsetup import keras, tensorflow

tf = tensorflow()
keras = keras()

IMAGE_SHAPE = (64, 64, 3)


class MLP(keras.layers.Layer):
    """`layers` dense ELU layers of `units`, then a linear layer of `output` (none when output is None).

    Applies to inputs of any rank [.., features] (a keras.Sequential would fix the rank at its first call).
    """

    def __init__(self, units: int, layers: int, output: int | None, **kwargs: Any):
        super().__init__(**kwargs)
        self.stack = [keras.layers.Dense(units, activation="elu", name=f"dense{i}") for i in range(layers)]
        if output is not None:
            self.stack.append(keras.layers.Dense(output, name="out"))

    def call(self, x: Any) -> Any:
        for layer in self.stack:
            x = layer(x)
        return x


def mlp(units: int, layers: int, output: int | None, name: str) -> MLP:
    """An `MLP` named `name`."""
    return MLP(units, layers, output, name=name)


def observation_to_input(observation: Any, image: bool) -> Any:
    """An observation batch as network input: images to float32 x / 255 - 0.5, vectors to float32."""
    if image:
        return tf.cast(observation, tf.float32) / 255.0 - 0.5
    return tf.cast(observation, tf.float32)


class Encoder(keras.layers.Layer):
    """x -> embed: a CNN for 64x64 images, an MLP for vectors."""

    def __init__(self, image: bool, depth: int, units: int, layers: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.image = image
        if image:
            self.net = keras.Sequential(
                [keras.layers.Conv2D(depth * 2**i, 4, strides=2, activation="elu") for i in range(4)]
                + [keras.layers.Flatten()],
                name="cnn",
            )
        else:
            self.net = mlp(units, layers, None, "mlp")

    def call(self, observation: Any) -> Any:
        return self.net(observation_to_input(observation, self.image))


class Decoder(keras.layers.Layer):
    """feat -> the mean of x (in the network's input scale): transposed CNN for images, MLP for vectors."""

    def __init__(self, image: bool, depth: int, units: int, layers: int, observation_dim: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.image = image
        if image:
            self.net = keras.Sequential(
                [
                    keras.layers.Dense(32 * depth),
                    keras.layers.Reshape((1, 1, 32 * depth)),
                    keras.layers.Conv2DTranspose(4 * depth, 5, strides=2, activation="elu"),
                    keras.layers.Conv2DTranspose(2 * depth, 5, strides=2, activation="elu"),
                    keras.layers.Conv2DTranspose(depth, 6, strides=2, activation="elu"),
                    keras.layers.Conv2DTranspose(3, 6, strides=2),
                ],
                name="cnn",
            )
        else:
            self.net = mlp(units, layers, observation_dim, "mlp")

    def call(self, feat: Any) -> Any:
        return self.net(feat)

    def log_likelihood(self, feat: Any, observation: Any) -> Any:
        """log N(x; decoder(feat), I) per example, up to its constant: -1/2 sum (x - mean)^2 [batch]."""
        target = observation_to_input(observation, self.image)
        squared = tf.square(self(feat) - target)
        return -0.5 * tf.reduce_sum(tf.reshape(squared, [tf.shape(squared)[0], -1]), axis=-1)
