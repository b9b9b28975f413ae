"""Dreams inside the MDN-RNN: thousands at once in one compiled TensorFlow loop, or one at a time.

    z      a latent [n, latent]; h, c the LSTM state [n, units]; a the MDN-RNN's action input [n, action]
    tau    the temperature (logits / tau, sigma * sqrt(tau))
    key    a dream's [2] uint32 random key; t its step

A dream starts from the recorded first frame of a randomly chosen episode (z_0 drawn from that
frame's q(z | x)) with a zero LSTM state. At step t the policy sees [z_t, c_t, h_t] and chooses
a_t; the MDN-RNN reads [z_t, a_t] and predicts z_{t+1} (sampled at temperature tau), the reward
and whether the episode ends. Rules (`DreamRules`):
- reward `survival`: +1 for every step (DoomTakeCover's reward: a real episode's return is its
  length); `head`: the MDN-RNN's reward head (CarRacing);
- done `threshold`: the episode ends when the predicted death probability exceeds the threshold
  (0.5); `sample`: it ends with that probability; `none`: only the step cap ends it;
- every dream is cut at `max_steps` (2100 for DoomTakeCover).

All randomness comes from `wm.rng` keyed by the dream's key and step, so a dream's trajectory does
not depend on the other dreams in the batch: `run_one_at_a_time` (the original code's way: one
dream, one step per call) and `run_linear` (all dreams in one `tf.while_loop`, finished dreams
dropped from the batch as they end) give the same returns.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from wm import rng
from wm.worldmodels.dream.rules import DreamRules
from wm.actions import tf_controller_env_action, tf_controller_memory_input
from wm.worldmodels.controller import ControllerLayout, features, split_params
from wm.tfsetup import tensorflow

tf = tensorflow()

STREAM_START_EPISODE, STREAM_START_Z, STREAM_COMPONENT, STREAM_NOISE, STREAM_DONE = 1, 2, 3, 4, 5


class Dream:
    """Batched dreams of one MDN-RNN under `rules`."""

    def __init__(self, mdnrnn: Any, initial_mu: np.ndarray, initial_logvar: np.ndarray, rules: DreamRules):
        self.mdnrnn, self.rules = mdnrnn, rules
        self.initial_mu = tf.constant(initial_mu, tf.float32)  # [episodes, latent]
        self.initial_sigma = tf.constant(np.exp(0.5 * np.asarray(initial_logvar)), tf.float32)
        self.latent_dim, self.units = int(mdnrnn.latent_dim), int(mdnrnn.units)
        self.temperature = tf.constant(rules.temperature, tf.float32)
        self._linear: Any = None
        self._fixed: Any = None

    # --- the pieces -------------------------------------------------------------------------------

    def start(self, keys: Any, episode: Any = None) -> Any:
        """z_0 [n, latent] for dreams with keys [n, 2]: a random recorded first frame, z drawn from its q(z | x).

        `episode` (a scalar) picks the recorded first frame instead of the key (`wm dream --episode`).
        """
        episodes = tf.shape(self.initial_mu)[0]
        if episode is None:
            u = rng.uniform(keys, 0, STREAM_START_EPISODE)
            episode = tf.minimum(tf.cast(u * tf.cast(episodes, tf.float32), tf.int32), episodes - 1)
        else:
            episode = tf.fill(tf.shape(keys)[:1], tf.cast(episode, tf.int32))
        noise = rng.normal(keys, 0, STREAM_START_Z, (self.latent_dim,))
        return tf.gather(self.initial_mu, episode) + tf.gather(self.initial_sigma, episode) * noise

    def zero_state(self, n: Any) -> tuple[Any, Any]:
        """(h, c), zeros [n, units]."""
        return tf.zeros([n, self.units]), tf.zeros([n, self.units])

    def transition(self, z: Any, h: Any, c: Any, action: Any, keys: Any, t: Any) -> tuple[Any, Any, Any, Any, Any]:
        """One dream step for every row: (z_{t+1}, h, c, reward [n], terminated [n] bool)."""
        heads, (h, c) = self.mdnrnn.step(z, action, [h, c])
        n = tf.shape(z)[0]
        if self.rules.reward == "head":
            reward = heads["reward"]
        else:
            reward = tf.ones([n])
        if self.rules.done == "threshold":
            terminated = tf.sigmoid(heads["done_logit"]) > self.rules.done_threshold
        elif self.rules.done == "sample":
            terminated = rng.uniform(keys, t, STREAM_DONE) < tf.sigmoid(heads["done_logit"] - self.rules.done_offset)
        else:
            terminated = tf.zeros([n], tf.bool)
        uniform = rng.uniform(keys, t, STREAM_COMPONENT, (self.latent_dim, self.mdnrnn.num_mixtures))
        noise = rng.normal(keys, t, STREAM_NOISE, (self.latent_dim,))
        from wm.worldmodels.mixture import sample_from_noise

        z_next = sample_from_noise(heads["logits"], heads["mu"], heads["log_sigma"], self.temperature, uniform, noise)
        return z_next, h, c, reward, terminated

    # --- many dreams to the end, in one compiled loop -----------------------------------------------

    def run(self, keys: Any, act: Callable[[Any, Any, Any, Any, Any], Any], *, record: bool = False,
            start_episode: Any = None) -> tuple[Any, ...]:
        """Run dreams with keys [n, 2] until every one has ended: (returns [n], lengths [n] int32).

        `act(z, h, c, slots, t)` gives the MDN-RNN action input [m, action] of the m dreams still
        running (`slots` are their rows in `keys`). Dreams that end leave the batch, so the cost
        follows the dreams still alive. With `record`, a third result holds every dream's latents
        [max_steps, n, latent] (z_t of the steps it lived, zeros after; for pictures of a few dreams).
        Graph code: call it inside a tf.function.
        """
        n = tf.shape(keys)[0]
        z = self.start(keys, start_episode)
        h, c = self.zero_state(n)
        max_steps = self.rules.max_steps
        frames = tf.TensorArray(tf.float32, size=0, dynamic_size=True, element_shape=[None, self.latent_dim])

        def body(t, slots, z, h, c, row_keys, returns, lengths, frames):
            if record:
                frames = frames.write(t, tf.scatter_nd(slots[:, None], z, [n, self.latent_dim]))
            action = act(z, h, c, slots, t)
            z, h, c, reward, terminated = self.transition(z, h, c, action, row_keys, t)
            returns = tf.tensor_scatter_nd_add(returns, slots[:, None], reward)
            t = t + 1
            ended = terminated | (t >= max_steps)
            finished = tf.boolean_mask(slots, ended)
            lengths = tf.tensor_scatter_nd_update(lengths, finished[:, None], tf.fill(tf.shape(finished), t))
            keep = tf.where(~ended)[:, 0]
            gather = lambda x: tf.gather(x, keep)  # noqa: E731
            return t, gather(slots), gather(z), gather(h), gather(c), gather(row_keys), returns, lengths, frames

        loop_vars = (tf.constant(0), tf.range(n), z, h, c, keys, tf.zeros([n]), tf.zeros([n], tf.int32), frames)
        batch = tf.TensorShape([None])
        invariants = (
            tf.TensorShape([]), batch, tf.TensorShape([None, self.latent_dim]), tf.TensorShape([None, self.units]),
            tf.TensorShape([None, self.units]), tf.TensorShape([None, 2]), batch, batch, tf.TensorShape(None),
        )
        result = tf.while_loop(lambda t, slots, *rest: tf.size(slots) > 0, body, loop_vars, shape_invariants=invariants)
        if record:
            return result[6], result[7], result[8].stack()
        return result[6], result[7]

    def run_actions(self, keys: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Dreams driven by fixed action sequences: actions [n, max_steps, action] (MDN-RNN inputs), keys [n, 2].

        Dream i takes actions[i, t] at step t whatever it sees (a random process or a constant action).
        Returns (returns [n], lengths [n]).
        """
        if self._fixed is None:
            spec = [tf.TensorSpec([None, 2], tf.uint32), tf.TensorSpec([None, None, None], tf.float32)]

            @tf.function(input_signature=spec, jit_compile=False)
            def run_fixed(keys, table):
                return self.run(keys, lambda z, h, c, slots, t: tf.gather(table[:, t], slots))

            self._fixed = run_fixed
        returns, lengths = self._fixed(tf.constant(keys, tf.uint32), tf.constant(actions, tf.float32))
        return returns.numpy(), lengths.numpy()

    def run_linear(self, layout: ControllerLayout, params: np.ndarray, candidate: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Dream with linear controllers: params [P, num_params], dream i driven by candidate[i], keys [n, 2].

        Returns (returns [n], lengths [n]). Every candidate of a CMA-ES generation runs in this one call.
        """
        if self._linear is None:
            self._linear = self._compile_linear(layout)
        weights, bias = zip(*(split_params(layout, p) for p in np.asarray(params)))
        returns, lengths = self._linear(
            tf.constant(np.stack(weights)), tf.constant(np.stack(bias)), tf.constant(candidate, tf.int32), tf.constant(keys, tf.uint32)
        )
        return returns.numpy(), lengths.numpy()

    def _compile_linear(self, layout: ControllerLayout) -> Any:
        spec = [
            tf.TensorSpec([None, layout.input_dim, layout.outputs], tf.float32),
            tf.TensorSpec([None, layout.outputs], tf.float32),
            tf.TensorSpec([None], tf.int32),
            tf.TensorSpec([None, 2], tf.uint32),
        ]

        @tf.function(input_signature=spec, jit_compile=False)
        def run_linear(weights, bias, candidate, keys):
            population = tf.shape(weights)[0]
            # All candidates' outputs in one matmul [m, inputs] x [inputs, P * outputs]; each dream keeps its own.
            flat = tf.reshape(tf.transpose(weights, [1, 0, 2]), [layout.input_dim, -1])

            def act(z, h, c, slots, t):
                x = features(layout, z, h, c, concat=tf.concat)
                every = tf.reshape(tf.matmul(x, flat), [-1, population, layout.outputs])
                own = tf.gather(candidate, slots)
                raw = tf.tanh(tf.gather(every, own, batch_dims=1) + tf.gather(bias, own))
                return tf_controller_memory_input(layout, tf_controller_env_action(layout, raw))

            return self.run(keys, act)

        return run_linear

    # --- the reference: one dream at a time, one step per call -------------------------------------

    def run_one_at_a_time(self, layout: ControllerLayout, params: np.ndarray, candidate: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Same as `run_linear`, but dream after dream, step after step, as the original code did."""
        step = self._compile_single_step(layout)
        returns = np.zeros(len(keys), np.float32)
        lengths = np.zeros(len(keys), np.int32)
        for i, key in enumerate(np.asarray(keys, np.uint32)):
            weights, bias = split_params(layout, np.asarray(params)[candidate[i]])
            weights, bias, key = tf.constant(weights), tf.constant(bias), tf.constant(key[None])
            z = self.start(key)
            h, c = self.zero_state(1)
            for t in range(self.rules.max_steps):
                z, h, c, reward, terminated = step(z, h, c, weights, bias, key, tf.constant(t))
                returns[i] += float(reward[0])
                if bool(terminated[0]):
                    break
            lengths[i] = t + 1
        return returns, lengths

    def _compile_single_step(self, layout: ControllerLayout) -> Any:
        @tf.function(jit_compile=False)
        def step(z, h, c, weights, bias, key, t):
            raw = tf.tanh(tf.matmul(features(layout, z, h, c, concat=tf.concat), weights) + bias)
            return self.transition(z, h, c, tf_controller_memory_input(layout, tf_controller_env_action(layout, raw)), key, t)

        return step


class DreamVector:
    """n dreams stepped together, each restarting from a new recorded first frame when it ends (for PPO).

    Slot i's k-th dream uses the key fold_in(base_keys[i], k), so every dream is reproducible. The
    state (`state()`, `set_state()`) is plain arrays, for checkpoints.
    """

    def __init__(self, dream: Dream, base_keys: np.ndarray):
        self.dream = dream
        n = len(base_keys)
        self.base_keys = tf.constant(base_keys, tf.uint32)
        self.episode = tf.zeros([n], tf.int32)
        self.t = tf.zeros([n], tf.int32)
        self.z = dream.start(rng.fold_in(self.base_keys, self.episode))
        self.h, self.c = dream.zero_state(n)
        self._step = tf.function(self._step_graph, jit_compile=False)

    def _step_graph(self, z, h, c, t, episode, base_keys, action):
        dream = self.dream
        z_next, h, c, reward, terminated = dream.transition(z, h, c, action, rng.fold_in(base_keys, episode), t)
        t = t + 1
        truncated = (t >= dream.rules.max_steps) & ~terminated
        ended = terminated | truncated
        final = (z_next, h, c)
        episode = episode + tf.cast(ended, tf.int32)
        restart = dream.start(rng.fold_in(base_keys, episode))
        zeros = tf.zeros_like(h)
        column = ended[:, None]
        z_next, h, c = tf.where(column, restart, z_next), tf.where(column, zeros, h), tf.where(column, zeros, c)
        return z_next, h, c, tf.where(ended, 0, t), episode, reward, terminated, truncated, final

    def step(self, action: Any) -> tuple[Any, Any, Any, tuple[Any, Any, Any]]:
        """Step every dream with MDN-RNN action inputs [n, action]: (reward, terminated, truncated, final (z, h, c)).

        `final` is the state each dream reached before a restart (for bootstrapping a truncated one).
        """
        (self.z, self.h, self.c, self.t, self.episode, reward, terminated, truncated, final) = self._step(
            self.z, self.h, self.c, self.t, self.episode, self.base_keys, action
        )
        return reward, terminated, truncated, final

    def state(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name).numpy() for name in ("z", "h", "c", "t", "episode", "base_keys")}

    def set_state(self, arrays: dict[str, np.ndarray]) -> None:
        for name, dtype in (("z", tf.float32), ("h", tf.float32), ("c", tf.float32), ("t", tf.int32), ("episode", tf.int32), ("base_keys", tf.uint32)):
            setattr(self, name, tf.constant(arrays[name], dtype))
