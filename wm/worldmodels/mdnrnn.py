"""The World Models MDN-RNN (Ha & Schmidhuber 2018, A.2): P(z_{t+1}, done_t | z_t, a_t, h_t).

    z        a VAE latent [.., latent]
    a        an action, one-hot for discrete action spaces [.., action]
    h, c     the LSTM hidden and cell state [.., units]
    K        mixture components per latent dimension (5)

An LSTM reads [z_t, a_t]; from its output a dense head gives, for every latent dimension
separately, K mixture logits, means and log standard deviations of z_{t+1}. Optional heads give
the reward r_t and the logit of done_t (the episode ending after a_t). With latent 32, 3 actions,
256 units and no extra heads this has the paper's 422,368 parameters.
"""

from __future__ import annotations

from typing import Any

from wm.worldmodels import mixture
from wm.tfsetup import keras, tensorflow

tf = tensorflow()
keras = keras()


@keras.saving.register_keras_serializable(package="wm")
class MDNRNN(keras.Model):
    """LSTM + mixture-density head (+ optional reward and done heads)."""

    def __init__(
        self,
        latent_dim: int,
        action_dim: int,
        units: int = 256,
        num_mixtures: int = 5,
        reward_head: bool = False,
        done_head: bool = False,
        done_weight: float = 1.0,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.latent_dim, self.action_dim, self.units = latent_dim, action_dim, units
        self.num_mixtures, self.reward_head, self.done_head = num_mixtures, reward_head, done_head
        # The weight deaths had in the done head's loss: it multiplies the head's odds, so the unweighted
        # probability is sigmoid(logit - log(done_weight)) (`calibrated_done_probability`).
        self.done_weight = float(done_weight)
        self.lstm = keras.layers.LSTM(units, return_sequences=True, return_state=True, name="lstm")
        # The heads compute in float32 even under a mixed policy (wm.tfsetup.dtype_policy): the mixture's means
        # and log-likelihood need float32's precision.
        self.mdn = keras.layers.Dense(latent_dim * 3 * num_mixtures, name="mdn", dtype="float32")
        self.reward = keras.layers.Dense(1, name="reward", dtype="float32") if reward_head else None
        self.done = keras.layers.Dense(1, name="done", dtype="float32") if done_head else None

    def _heads(self, output: Any) -> dict[str, Any]:
        logits, mu, log_sigma = mixture.split_params(self.mdn(output), self.num_mixtures)
        heads = {"logits": logits, "mu": mu, "log_sigma": log_sigma}
        if self.reward is not None:
            heads["reward"] = tf.squeeze(self.reward(output), -1)
        if self.done is not None:
            heads["done_logit"] = tf.squeeze(self.done(output), -1)
        return heads

    def call(self, z: Any, action: Any, initial_state: Any = None) -> tuple[dict[str, Any], list[Any]]:
        """Run over sequences: z [batch, time, latent], action [batch, time, action].

        Returns the heads (mixture params [batch, time, latent, K], reward and done_logit
        [batch, time]) and the final LSTM state [h, c].
        """
        output, h, c = self.lstm(tf.concat([z, action], axis=-1), initial_state=initial_state)
        return self._heads(output), [h, c]

    def step(self, z: Any, action: Any, state: list[Any]) -> tuple[dict[str, Any], list[Any]]:
        """One step for a batch of dreams: z [batch, latent], action [batch, action], state [h, c]."""
        output, new_state = self.lstm.cell(tf.concat([z, action], axis=-1), state)
        return self._heads(output), list(new_state)

    def initial_state(self, batch: int) -> list[Any]:
        """Zero [h, c] for `batch` sequences."""
        return [tf.zeros((batch, self.units)), tf.zeros((batch, self.units))]

    def get_config(self) -> dict[str, Any]:
        return {
            "latent_dim": self.latent_dim,
            "action_dim": self.action_dim,
            "units": self.units,
            "num_mixtures": self.num_mixtures,
            "reward_head": self.reward_head,
            "done_head": self.done_head,
            "done_weight": self.done_weight,
        }

    def calibrated_done_probability(self, done_logit: Any) -> Any:
        """P(done) without the training weight w of deaths: sigmoid(logit - log w).

        Training with positive examples weighted w makes the optimal logit log(w p / (1 - p)) for a true
        probability p, so subtracting log w recovers p (tested in tests/test_losses.py).
        """
        return tf.sigmoid(done_logit - tf.math.log(tf.constant(self.done_weight, done_logit.dtype)))


def build_mdnrnn(**config: Any) -> MDNRNN:
    """A built MDNRNN (weights created) from its config."""
    model = MDNRNN(**config)
    model(tf.zeros((1, 1, config["latent_dim"])), tf.zeros((1, 1, config["action_dim"])))
    return model
