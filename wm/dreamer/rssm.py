"""The recurrent state-space model (PlaNet; Dreamer; DreamerV2's discrete latents).

    h_t     the deterministic state (GRU) [batch, deter]
    z_t     the stochastic state [batch, stoch]: S one-hot categoricals of C classes, flattened
            (DreamerV2, S = C = 32), or a diagonal Gaussian of `stoch` dimensions (Dreamer)
    a_t     an action [batch, A] (one-hot for discrete action spaces)

With DreamerV3's `unimix`, a state's categorical logits are those of the mixture
(1 - unimix) softmax + unimix / C, so samples, KLs and the state all use the mixed probabilities.
    e_t     an observation's embedding [batch, E]

    recurrent model        h_t = GRU(h_{t-1}, [z_{t-1}, a_{t-1}])
    transition predictor   p(z_t | h_t)          (the prior: all that imagination has)
    representation model   q(z_t | h_t, e_t)     (the posterior)

A state is a dict: `deter` h, `stoch` z, and the distribution's parameters (`logits` [batch, S, C], or
`mean` and `std` [batch, stoch]). Randomness is stateless: every sample takes a seed [2] int32, and
sequences fold the step index into it, so the same seed gives the same states.
"""

from __future__ import annotations

from typing import Any

from wm.dreamer.distributions import straight_through_sample, unimix_logits
from wm.dreamer.networks import PLAIN, Body, mlp
from wm.tfsetup import keras, tensorflow

tf = tensorflow()
keras = keras()

MIN_STD = 0.1  # Dreamer's floor on the Gaussian latent's standard deviation


class RSSM(keras.layers.Layer):
    """Recurrent model, transition predictor and representation model of one world model."""

    def __init__(self, latent: str, deter: int, stoch: int, classes: int, hidden: int, body: Body = PLAIN, unimix: float = 0.0,
                 **kwargs: Any):
        """`body`: the hidden layers' normalisation and activation; `unimix`: DreamerV3's uniform mix in the categoricals."""
        super().__init__(**kwargs)
        if latent not in ("categorical", "gaussian"):
            raise ValueError(f"unknown latent {latent!r}; known: categorical, gaussian")
        self.latent, self.deter, self.stoch, self.classes, self.hidden = latent, deter, stoch, classes, hidden
        self.unimix = unimix
        params = stoch * classes if latent == "categorical" else 2 * stoch

        def hidden_layer(name: str) -> Any:
            if body.norm == "none":
                return keras.layers.Dense(hidden, activation=body.activation, name=name)
            return mlp(hidden, 1, None, name, body)

        self.input_layer = hidden_layer("img_in")
        self.cell = keras.layers.GRUCell(deter, name="gru")
        self.prior_hidden = hidden_layer("img_out")
        self.prior_params = keras.layers.Dense(params, name="img_dist")
        self.posterior_hidden = hidden_layer("obs_out")
        self.posterior_params = keras.layers.Dense(params, name="obs_dist")

    @property
    def stoch_size(self) -> int:
        """Width of the flattened z."""
        return self.stoch * self.classes if self.latent == "categorical" else self.stoch

    @property
    def feature_size(self) -> int:
        """Width of a state's features [h, z]."""
        return self.deter + self.stoch_size

    def initial(self, batch: Any) -> dict[str, Any]:
        """The all-zero state of a new episode."""
        state = {"deter": tf.zeros([batch, self.deter]), "stoch": tf.zeros([batch, self.stoch_size])}
        if self.latent == "categorical":
            state["logits"] = tf.zeros([batch, self.stoch, self.classes])
        else:
            state["mean"], state["std"] = tf.zeros([batch, self.stoch]), tf.ones([batch, self.stoch])
        return state

    def features(self, state: dict[str, Any]) -> Any:
        """[h, z] [.., deter + stoch_size]."""
        return tf.concat([state["deter"], state["stoch"]], axis=-1)

    def distribution(self, state: dict[str, Any]) -> Any:
        """The parameters KL balancing compares: logits, or the (mean, std) pair."""
        return state["logits"] if self.latent == "categorical" else (state["mean"], state["std"])

    def _stochastic(self, raw: Any, seed: Any) -> dict[str, Any]:
        if self.latent == "categorical":
            logits = unimix_logits(tf.reshape(raw, [tf.shape(raw)[0], self.stoch, self.classes]), self.unimix)
            sample = straight_through_sample(logits, seed)
            return {"stoch": tf.reshape(sample, [tf.shape(raw)[0], self.stoch_size]), "logits": logits}
        mean, raw_std = tf.split(raw, 2, axis=-1)
        std = tf.nn.softplus(raw_std) + MIN_STD
        noise = tf.random.stateless_normal(tf.shape(mean), seed)
        return {"stoch": mean + std * noise, "mean": mean, "std": std}

    def img_step(self, state: dict[str, Any], action: Any, seed: Any) -> dict[str, Any]:
        """The prior state after `action` from `state`: h' = GRU(h, [z, a]), z' ~ p(z' | h')."""
        x = self.input_layer(tf.concat([state["stoch"], action], axis=-1))
        deter, _ = self.cell(x, [state["deter"]])
        prior = self._stochastic(self.prior_params(self.prior_hidden(deter)), seed)
        prior["deter"] = deter
        return prior

    def obs_step(self, state: dict[str, Any], action: Any, embed: Any, seed: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """(posterior, prior) of the next step, the posterior having seen the observation's embedding."""
        prior_seed, posterior_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        prior = self.img_step(state, action, prior_seed)
        posterior = self._stochastic(
            self.posterior_params(self.posterior_hidden(tf.concat([prior["deter"], embed], axis=-1))), posterior_seed
        )
        posterior["deter"] = prior["deter"]
        return posterior, prior

    def observe(self, embed: Any, previous_action: Any, is_first: Any, seed: Any, state: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """Posterior and prior states along sequences.

        embed [batch, time, E]; previous_action [batch, time, A] is a_{t-1}, the action that led to x_t;
        is_first [batch, time] resets the state (and the previous action) to zero where an episode
        starts. Returns (posteriors, priors), each a state dict of [batch, time, ..] tensors.
        """
        batch = tf.shape(embed)[0]
        start = self.initial(batch) if state is None else state
        keep = 1.0 - tf.cast(is_first, tf.float32)  # [batch, time]
        steps = tf.range(tf.shape(embed)[1])

        def step(carry: Any, inputs: Any) -> Any:
            posterior, _ = carry
            e, a, k, t = inputs
            k = k[:, None]
            reset = {name: value * (k if len(value.shape) == 2 else k[..., None]) for name, value in posterior.items()}
            if self.latent == "gaussian":
                reset["std"] = reset["std"] + (1.0 - k)  # the zero state's std is 1, not 0 (never sampled from)
            return self.obs_step(reset, a * k, e, tf.random.experimental.stateless_fold_in(seed, t))

        time_major = lambda x: tf.transpose(x, [1, 0] + list(range(2, len(x.shape))))  # noqa: E731
        posteriors, priors = tf.scan(
            step,
            (time_major(embed), time_major(previous_action), tf.transpose(keep), steps),
            initializer=(start, start),
        )
        batch_major = lambda s: {name: time_major(value) for name, value in s.items()}  # noqa: E731
        return batch_major(posteriors), batch_major(priors)

    def imagine(self, policy: Any, start: dict[str, Any], horizon: int, seed: Any) -> tuple[dict[str, Any], Any]:
        """Roll the transition predictor forward `horizon` steps from `start` [batch, ..] with `policy`.

        `policy(features, seed)` returns an action [batch, A]. Returns the states s_0 .. s_H (time-major,
        [H + 1, batch, ..], s_0 = start) and the actions a_0 .. a_{H-1} [H, batch, A].
        """
        states, actions = [start], []
        state = start
        for t in range(horizon):
            action_seed, step_seed = tf.unstack(tf.random.experimental.stateless_split(tf.random.experimental.stateless_fold_in(seed, t), 2))
            action = policy(tf.stop_gradient(self.features(state)), action_seed)
            state = self.img_step(state, action, step_seed)
            states.append(state)
            actions.append(action)
        stacked = {name: tf.stack([s[name] for s in states], axis=0) for name in start}
        return stacked, tf.stack(actions, axis=0)
