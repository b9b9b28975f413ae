"""Encoders, decoders and MLP heads of the Dreamer world model and actor-critic (DreamerV2, appendix).

    x       an observation: an image [batch, 64, 64, 3] uint8, or a vector [batch, D] float32
    embed   the encoder's output [batch, E]
    feat    an RSSM state's features [h, z] [batch, F]

Images: 4 convolutions of depth d, 2d, 4d, 8d (kernel 4, stride 2, ELU) -> 2x2x8d; the decoder mirrors
it with transposed convolutions (kernels 5, 5, 6, 6) and predicts the pixel means of a unit-variance
Gaussian. Vectors: MLPs. Pixels enter as x / 255 - 0.5.

DreamerV3's variants (`Body`): a normalisation (LayerNorm, or RMSNorm: LayerNorm without the mean)
before each hidden layer's activation, SiLU for ELU, and symlog vector observations (the encoder's
input, and the decoder's target: it predicts symlog(x)). With norm "none" and ELU every layer is
built exactly as before, so DreamerV2 agents keep their weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wm.dreamer.distributions import symlog
from wm.tfsetup import keras, tensorflow

tf = tensorflow()
keras = keras()

IMAGE_SHAPE = (64, 64, 3)


@dataclass(frozen=True)
class Body:
    """How hidden layers are made: `norm` "none", "layer" or "rms" before the `activation` ("elu" or "silu")."""

    norm: str = "none"
    activation: str = "elu"

    def dense(self, units: int, name: str) -> list[Any]:
        """A hidden dense layer (and its normalisation and activation layers)."""
        if self.norm == "none":
            return [keras.layers.Dense(units, activation=self.activation, name=name)]
        return [keras.layers.Dense(units, use_bias=False, name=name), self._norm(f"{name}_norm"), keras.layers.Activation(self.activation)]

    def conv(self, layer: type, filters: int, kernel: int) -> list[Any]:
        """A hidden (transposed) convolution of stride 2, normalised over its channels."""
        if self.norm == "none":
            return [layer(filters, kernel, strides=2, activation=self.activation)]
        return [layer(filters, kernel, strides=2, use_bias=False), self._norm(None), keras.layers.Activation(self.activation)]

    def _norm(self, name: str | None) -> Any:
        if self.norm == "rms":
            return keras.layers.RMSNormalization(epsilon=1e-3, name=name)
        return keras.layers.LayerNormalization(epsilon=1e-3, name=name)


PLAIN = Body()  # DreamerV2's layers


class MLP(keras.layers.Layer):
    """`layers` hidden dense layers of `units` (`Body`), then a linear layer of `output` (none when output is None).

    `zero_output` starts the output layer at zero weights (DreamerV3's reward and critic heads: they
    predict 0 until trained). Applies to inputs of any rank [.., features] (a keras.Sequential would
    fix the rank at its first call).
    """

    def __init__(self, units: int, layers: int, output: int | None, body: Body = PLAIN, zero_output: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.stack = [layer for i in range(layers) for layer in body.dense(units, f"dense{i}")]
        if output is not None:
            initial = {"kernel_initializer": "zeros"} if zero_output else {}
            self.stack.append(keras.layers.Dense(output, name="out", **initial))

    def call(self, x: Any) -> Any:
        for layer in self.stack:
            x = layer(x)
        return x


def mlp(units: int, layers: int, output: int | None, name: str, body: Body = PLAIN, zero_output: bool = False) -> MLP:
    """An `MLP` named `name`."""
    return MLP(units, layers, output, body, zero_output, name=name)


def observation_to_input(observation: Any, image: bool, use_symlog: bool = False) -> Any:
    """An observation batch as network input: images to float32 x / 255 - 0.5, vectors to float32 (symlog'd if asked)."""
    if image:
        return tf.cast(observation, tf.float32) / 255.0 - 0.5
    vector = tf.cast(observation, tf.float32)
    return symlog(vector) if use_symlog else vector


class Encoder(keras.layers.Layer):
    """x -> embed: a CNN for 64x64 images, an MLP for vectors (of symlog(x) with `use_symlog`)."""

    def __init__(self, image: bool, depth: int, units: int, layers: int, body: Body = PLAIN, use_symlog: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.image, self.use_symlog = image, use_symlog
        if image:
            self.net = keras.Sequential(
                [layer for i in range(4) for layer in body.conv(keras.layers.Conv2D, depth * 2**i, 4)] + [keras.layers.Flatten()],
                name="cnn",
            )
        else:
            self.net = mlp(units, layers, None, "mlp", body)

    def call(self, observation: Any) -> Any:
        return self.net(observation_to_input(observation, self.image, self.use_symlog))


class Decoder(keras.layers.Layer):
    """feat -> the mean of x in the network's input scale (symlog(x) with `use_symlog`): transposed CNN for images, MLP for vectors."""

    def __init__(self, image: bool, depth: int, units: int, layers: int, observation_dim: int, body: Body = PLAIN,
                 use_symlog: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.image, self.use_symlog = image, use_symlog
        if image:
            transposed = keras.layers.Conv2DTranspose
            self.net = keras.Sequential(
                [keras.layers.Dense(32 * depth), keras.layers.Reshape((1, 1, 32 * depth))]
                + body.conv(transposed, 4 * depth, 5) + body.conv(transposed, 2 * depth, 5) + body.conv(transposed, depth, 6)
                + [transposed(3, 6, strides=2)],
                name="cnn",
            )
        else:
            self.net = mlp(units, layers, observation_dim, "mlp", body)

    def call(self, feat: Any) -> Any:
        return self.net(feat)

    def log_likelihood(self, feat: Any, observation: Any) -> Any:
        """log N(x'; decoder(feat), I) per example, up to its constant: -1/2 sum (x' - mean)^2 [batch], x' the input-scale x."""
        target = observation_to_input(observation, self.image, self.use_symlog)
        squared = tf.square(self(feat) - target)
        return -0.5 * tf.reduce_sum(tf.reshape(squared, [tf.shape(squared)[0], -1]), axis=-1)
