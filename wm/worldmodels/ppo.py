"""PPO (Schulman et al. 2017) for a controller trained inside the dream, as in the seed document on
PPO with a learned world model: an actor-critic on the controller's input x = [z, h] (or [z, c, h]),
by default with that document's actor widths 256-256-128-64 (its critic's attention layer is left
out: the input is one vector, not a sequence).

Symbols (per step t of one dream):
    r_t       reward; d_t = 1 if the dream ended after step t (then s_{t+1} is the next dream's start)
    V(s)      the critic's value
    delta_t   = r_t + gamma (1 - d_t) V(s_{t+1}) - V(s_t)
    A_t       generalised advantage estimate (Schulman et al. 2016): delta_t + gamma lambda (1 - d_t) A_{t+1}
    rho_t     = pi(a_t | s_t) / pi_old(a_t | s_t), the probability ratio
    L_clip    = -E[min(rho_t A_t, clip(rho_t, 1 - eps, 1 + eps) A_t)]   (the clipped surrogate, eps = 0.2)

The policy acts in the controller's raw output space, so that its actions become environment
actions exactly as the linear controller's do (`wm.worldmodels.controller`): for a discrete action space
a categorical over the actions (index i is sent as the raw output i - 1 for DoomTakeCover's thirds,
or as a one-hot for argmax); for a Box a diagonal Gaussian u ~ N(mean, std), clipped to [-1, 1].
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from wm import rng
from wm.actions import tf_controller_env_action, tf_controller_memory_input
from wm.errors import Interrupted
from wm.progress import Progress, log
from wm.tfsetup import keras, tensorflow
from wm.training import MetricsLog, apply_if_finite, check_finite, plot_learning_curve, start_or_resume
from wm.worldmodels.controller import features

PPO_DREAMS = 5  # seed purpose of PPO's dreams and minibatch orders (distinct from CMA-ES's, wm.worldmodels.cmaes)

tf = tensorflow()
keras = keras()


def gae(rewards: np.ndarray, values: np.ndarray, dones: np.ndarray, last_values: np.ndarray, gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Advantages and value targets [T, n] from rewards, values V(s_t), dones [T, n] and V(s_T) [n]."""
    steps = rewards.shape[0]
    advantages = np.zeros_like(rewards, dtype=np.float64)
    next_advantage = np.zeros(rewards.shape[1:], np.float64)
    next_value = np.asarray(last_values, np.float64)
    for t in reversed(range(steps)):
        alive = 1.0 - dones[t]
        delta = rewards[t] + gamma * alive * next_value - values[t]
        next_advantage = delta + gamma * lam * alive * next_advantage
        advantages[t] = next_advantage
        next_value = values[t]
    return advantages.astype(np.float32), (advantages + values).astype(np.float32)


def clipped_surrogate(log_prob: Any, old_log_prob: Any, advantages: Any, clip: float) -> Any:
    """L_clip: the negated mean of min(rho A, clip(rho, 1 - eps, 1 + eps) A)."""
    ratio = tf.exp(log_prob - old_log_prob)
    return -tf.reduce_mean(tf.minimum(ratio * advantages, tf.clip_by_value(ratio, 1.0 - clip, 1.0 + clip) * advantages))


@keras.saving.register_keras_serializable(package="wm")
class ActorCritic(keras.Model):
    """Separate actor and critic MLPs (tanh layers of the given widths) on the controller's input x [batch, inputs]."""

    def __init__(self, input_dim: int, actions: int, discrete: bool, hidden: tuple[int, ...] = (256, 256, 128, 64), **kwargs: Any):
        super().__init__(**kwargs)
        self.input_dim, self.actions, self.discrete, self.hidden = input_dim, actions, discrete, tuple(int(h) for h in hidden)

        def mlp(outputs: int, name: str, scale: float) -> Any:
            layers = [keras.Input((input_dim,))]
            layers += [keras.layers.Dense(width, activation="tanh", kernel_initializer=keras.initializers.Orthogonal(math.sqrt(2))) for width in self.hidden]
            layers.append(keras.layers.Dense(outputs, kernel_initializer=keras.initializers.Orthogonal(scale)))
            return keras.Sequential(layers, name=name)

        self.actor = mlp(actions, "actor", 0.01)
        self.critic = mlp(1, "critic", 1.0)
        self.log_std = None if discrete else self.add_weight(shape=(actions,), initializer=keras.initializers.Constant(-0.5), name="log_std")

    def call(self, x: Any) -> tuple[Any, Any]:
        """(actor output [batch, actions]: logits or Gaussian means, value [batch])."""
        return self.actor(x), tf.squeeze(self.critic(x), -1)

    def log_prob_entropy(self, output: Any, action: Any) -> tuple[Any, Any]:
        """log pi(a | s) [batch] and the entropy [batch] of the policy for actor outputs `output`."""
        if self.discrete:
            log_p = tf.nn.log_softmax(output)
            chosen = tf.reduce_sum(tf.one_hot(tf.cast(action, tf.int32), self.actions) * log_p, axis=-1)
            return chosen, -tf.reduce_sum(tf.exp(log_p) * log_p, axis=-1)
        std = tf.exp(self.log_std)
        standardized = (action - output) / std
        log_prob = tf.reduce_sum(-0.5 * tf.square(standardized) - self.log_std - 0.5 * math.log(2 * math.pi), axis=-1)
        entropy = tf.reduce_sum(self.log_std + 0.5 * math.log(2 * math.pi * math.e)) * tf.ones_like(log_prob)
        return log_prob, entropy

    def sample(self, output: Any, seed: Any) -> Any:
        """An action per row: an index [batch] (discrete) or u [batch, actions] (continuous, before clipping)."""
        if self.discrete:
            return tf.random.stateless_categorical(output, 1, seed, dtype=tf.int32)[:, 0]
        return output + tf.exp(self.log_std) * tf.random.stateless_normal(tf.shape(output), seed)

    def mode(self, output: Any) -> Any:
        """The most likely action: argmax index, or the Gaussian mean."""
        return tf.argmax(output, axis=-1, output_type=tf.int32) if self.discrete else output

    def get_config(self) -> dict[str, Any]:
        return {"input_dim": self.input_dim, "actions": self.actions, "discrete": self.discrete, "hidden": list(self.hidden)}


def build_actor_critic(**config: Any) -> ActorCritic:
    """A built ActorCritic (weights created) from its config."""
    model = ActorCritic(**config)
    model(tf.zeros((1, config["input_dim"])))
    return model


def raw_output(layout: Any, model: ActorCritic, action: Any) -> Any:
    """A policy action as the controller's raw output [batch, outputs], which the layout maps to the environment."""
    if not model.discrete:
        return tf.clip_by_value(action, -1.0, 1.0)
    if layout.action_map == "thirds":
        return tf.cast(action, tf.float32)[:, None] - 1.0
    return tf.one_hot(action, layout.outputs)


def train_ppo(setting: Any, output: Any) -> tuple[list, np.ndarray, dict]:
    """Run (or resume) PPO inside the dream; returns the history, no real seeds, and the actor-critic to store.

    Every iteration steps `ppo_dreams` dreams together for `ppo_steps` steps (a dream that ends
    restarts from a new first frame), then makes `ppo_epochs` passes of minibatch updates of the
    clipped surrogate, the value loss and the entropy bonus over those samples.
    """
    from wm.worldmodels.dream.batched import DreamVector

    config, layout, seed = setting.config, setting.layout, setting.seed
    keras.utils.set_random_seed(seed)
    discrete = layout.discrete
    model = build_actor_critic(input_dim=layout.input_dim, actions=layout.action_dim if discrete else layout.outputs,
                               discrete=discrete, hidden=config.ppo_layers_tuple())
    optimizer = keras.optimizers.Adam(config.ppo_learning_rate, clipnorm=0.5)
    checkpoint, state, saved = start_or_resume(output, model, optimizer)
    dreams = DreamVector(setting.dream, rng.keys_from_seeds(seed, [(PPO_DREAMS, i) for i in range(config.ppo_dreams)]))
    running_return = np.zeros(config.ppo_dreams)
    if state.epoch:
        saved = dict(saved)
        running_return = saved.pop("running_return")
        dreams.set_state(saved)
        log(f"Resuming from {checkpoint.path}: iteration {state.epoch + 1}.")

    @tf.function(jit_compile=False)
    def act(z, h, c, sample_seed):
        x = features(layout, z, h, c, concat=tf.concat)
        output, value = model(x)
        action = model.sample(output, sample_seed)
        log_prob, _ = model.log_prob_entropy(output, action)
        model_input = tf_controller_memory_input(layout, tf_controller_env_action(layout, raw_output(layout, model, action)))
        return x, action, log_prob, value, model_input

    @tf.function(jit_compile=False)
    def value_of(z, h, c):
        return model(features(layout, z, h, c, concat=tf.concat))[1]

    @tf.function(jit_compile=False)
    def update(x, action, old_log_prob, advantages, targets):
        with tf.GradientTape() as tape:
            output, value = model(x)
            log_prob, entropy = model.log_prob_entropy(output, action)
            policy_loss = clipped_surrogate(log_prob, old_log_prob, advantages, config.ppo_clip)
            value_loss = 0.5 * tf.reduce_mean(tf.square(value - targets))
            entropy = tf.reduce_mean(entropy)
            loss = policy_loss + config.value_coef * value_loss - config.entropy_coef * entropy
        gradients = tape.gradient(loss, model.trainable_variables)
        finite = apply_if_finite(optimizer, loss, gradients, model.trainable_variables)
        ratio = tf.exp(log_prob - old_log_prob)
        return {
            "loss": loss, "policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy,
            "approx_kl": tf.reduce_mean(old_log_prob - log_prob),
            "clip_fraction": tf.reduce_mean(tf.cast(tf.abs(ratio - 1.0) > config.ppo_clip, tf.float32)), "finite": finite,
        }

    metrics = MetricsLog(output.log_folder)
    samples = config.ppo_dreams * config.ppo_steps
    minibatch = min(config.ppo_minibatch, samples)
    progress = Progress(config.ppo_iterations, description="train-controller ppo", unit="it", initial=state.epoch, secondary_unit="steps")
    try:
        for iteration in range(state.epoch, config.ppo_iterations):
            started = time.monotonic()
            buffers: dict[str, list] = {name: [] for name in ("x", "action", "log_prob", "value", "reward", "done")}
            finished_returns, finished_lengths = [], []
            for t in range(config.ppo_steps):
                sample_seed = tf.constant([seed, iteration * config.ppo_steps + t], tf.int64)
                x, action, log_prob, value, model_input = act(dreams.z, dreams.h, dreams.c, sample_seed)
                length_before = dreams.t.numpy() + 1
                reward, terminated, truncated, final = dreams.step(model_input)
                reward, terminated, truncated = reward.numpy().astype(np.float64), terminated.numpy(), truncated.numpy()
                ended = terminated | truncated
                running_return += reward
                finished_returns += running_return[ended].tolist()
                finished_lengths += length_before[ended].tolist()
                running_return[ended] = 0.0
                target_reward = reward.copy()
                if truncated.any():  # cut by the step cap, not ended by the model: bootstrap with V(s_final)
                    target_reward += config.gamma * truncated * value_of(*final).numpy()
                for name, item in (("x", x), ("action", action), ("log_prob", log_prob), ("value", value)):
                    buffers[name].append(item.numpy())
                buffers["reward"].append(target_reward)
                buffers["done"].append(ended.astype(np.float64))
            last_value = value_of(dreams.z, dreams.h, dreams.c).numpy()
            values = np.stack(buffers["value"]).astype(np.float64)
            advantages, targets = gae(np.stack(buffers["reward"]), values, np.stack(buffers["done"]), last_value, config.gamma, config.gae_lambda)
            flat = {
                "x": np.concatenate(buffers["x"]), "action": np.concatenate(buffers["action"]),
                "log_prob": np.concatenate(buffers["log_prob"]), "advantages": advantages.reshape(-1), "targets": targets.reshape(-1),
            }
            flat["advantages"] = (flat["advantages"] - flat["advantages"].mean()) / (flat["advantages"].std() + 1e-8)
            sums: dict[str, float] = {}
            updates = 0
            for epoch in range(config.ppo_epochs):
                order = rng.generator(seed, PPO_DREAMS, iteration, epoch).permutation(samples)
                for begin in range(0, samples - minibatch + 1, minibatch):
                    rows = order[begin : begin + minibatch]
                    result = update(*(tf.constant(flat[name][rows]) for name in ("x", "action", "log_prob", "advantages", "targets")))
                    result = {key: value.numpy() for key, value in result.items()}
                    check_finite(result, name="train-controller", where=f"PPO iteration {iteration + 1}", checkpoint_folder=checkpoint.folder,
                                 advice="lower the learning rate or change the seed, and start over with --force")
                    for key, value in result.items():
                        sums[key] = sums.get(key, 0.0) + float(value)
                    updates += 1
            row: dict[str, Any] = {"iteration": iteration + 1, "seconds": time.monotonic() - started}
            row.update({f"ppo/{key}": total / max(updates, 1) for key, total in sums.items()})
            if finished_returns:
                row.update({"dream/return": float(np.mean(finished_returns)), "dream/length": float(np.mean(finished_lengths)),
                            "dream/episodes": len(finished_returns)})
            state.history.append(row)
            state.epoch = iteration + 1
            state.step += updates
            checkpoint.save(state.to_dict(), {**dreams.state(), "running_return": running_return})
            metrics.write(row, iteration + 1)
            plot_learning_curve(state.history, output.log_folder / "learning.png", "PPO in the dream", "iteration")
            progress.update(1, secondary=samples, postfix=f"dream return {row.get('dream/return', float('nan')):.1f}")
    except KeyboardInterrupt:
        raise Interrupted(
            f"Interrupted: {state.epoch} of {config.ppo_iterations} iterations are done and checkpointed in {checkpoint.folder}; "
            "run the same command again to resume."
        ) from None
    finally:
        progress.close()
    return state.history, np.zeros(0, np.uint32), {"model": model}
