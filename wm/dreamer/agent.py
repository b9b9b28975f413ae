"""A Dreamer agent: the RSSM world model and the actor-critic learned in its imagination (DreamerV2).

A training batch holds sequence windows from the replay, batch-major [B, L, ..]:

    obs              x_t, the observation on which action[t] was chosen
    action           a_t [B, L, A] (one-hot for discrete action spaces, in [-1, 1] for bounded ones)
    previous_action  a_{t-1}, zero where an episode starts
    reward           r_t, returned after a_t
    terminated       whether the episode ended after a_t (continue = 1 - terminated)
    is_first         x_t starts an episode (the state is reset before it)
    has_next         x_{t+1} is in the window and in the same episode

The reward and discount heads are trained on the state after each transition, s_{t+1}: its posterior
where x_{t+1} is in the window, otherwise its prior (the observation after an episode's last action
is not stored, as in rollouts). Imagination starts from every posterior state of the batch.

DreamerV3's robustness pieces are options of the same agent (docs/architecture.md, "Dreamer"):
`AgentShape.symlog`, `twohot_bins`, `norm`, `activation`, `unimix`; `Learning.kl_mode`,
`return_norm`, `slow_critic_rate`. Each off gives DreamerV2's computation exactly.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from wm.dreamer import losses
from wm.dreamer.distributions import action_distribution, twohot_bins, twohot_loss, twohot_mean
from wm.dreamer.networks import Body, Decoder, Encoder, mlp
from wm.dreamer.rssm import RSSM
from wm.io.models import load_variables
from wm.tfsetup import keras, tensorflow

tf = tensorflow()
keras = keras()


@dataclasses.dataclass(frozen=True)
class AgentShape:
    """What the networks are built for; fixed for the life of an agent (resuming checks it).

    No defaults here: the sizes come from `TrainDreamerConfig` (stages/train_dreamer.py), their one source.
    """

    image: bool  # 64x64x3 images (CNN), else vectors (MLP)
    observation_dim: int  # vector width (0 for images)
    action_dim: int
    action_kind: str  # "categorical" (one-hot) or "bounded" ([-1, 1] per dimension)
    latent: str
    deter: int
    stoch: int
    classes: int
    hidden: int
    units: int
    layers: int
    cnn_depth: int
    action_repeat: int  # frames each action is held for (the networks do not depend on it; acting does)
    symlog: bool  # DreamerV3: vector observations enter, and are predicted, as symlog(x)
    twohot_bins: int  # DreamerV3: reward head and critic as two-hot over this many symexp bins (0: a Gaussian mean, MSE)
    norm: str  # "none", "layer" or "rms" before each hidden activation
    activation: str  # "elu" (DreamerV2) or "silu" (DreamerV3)
    unimix: float  # uniform mix in the categorical latents and the discrete actor (DreamerV3: 0.01)


@dataclasses.dataclass(frozen=True)
class Learning:
    """The learning rules; their values come from `TrainDreamerConfig` (stages/train_dreamer.py), their one source."""

    model_lr: float
    actor_lr: float
    critic_lr: float
    grad_clip: float
    kl_alpha: float
    kl_free: float
    kl_scale: float
    discount_scale: float
    terminal_weight: float  # the discount loss's weight on terminations against 1 on other steps (1: plain)
    gamma: float
    lambda_: float
    horizon: int
    rho: float
    eta: float
    target_every: int
    kl_mode: str  # "balance" (DreamerV2) or "free-bits" (DreamerV3, with kl_dyn_scale and kl_rep_scale)
    kl_dyn_scale: float
    kl_rep_scale: float
    return_norm: str  # "none" or "percentile" (DreamerV3)
    return_low: float
    return_high: float
    return_rate: float
    slow_critic_rate: float  # 0: hard target copies every target_every updates; > 0: an EMA critic that regularises (DreamerV3)
    slow_critic_reg: float
    replay_value_scale: float  # > 0: the critic also learns lambda-returns along the replay's windows (DreamerV3's later versions: 0.3)


# Fields added with the DreamerV3 options, --action-repeat and --terminal-weight, and the values under which agents written before them were trained.
BEFORE_V3_SHAPE = {"action_repeat": 1, "symlog": False, "twohot_bins": 0, "norm": "none", "activation": "elu", "unimix": 0.0}
BEFORE_V3_LEARNING = {"kl_mode": "balance", "kl_dyn_scale": 0.5, "kl_rep_scale": 0.1, "return_norm": "none", "return_low": 5.0,
                      "return_high": 95.0, "return_rate": 0.01, "slow_critic_rate": 0.0, "slow_critic_reg": 1.0,
                      "replay_value_scale": 0.0, "terminal_weight": 1.0}

# What the replay value loss reads of a training batch (`Agent.behaviour_losses`' `replay`).
REPLAY_VALUE_KEYS = ("reward", "terminated", "has_next")


class Agent(keras.Model):
    """World model (encoder, RSSM, decoder, reward and discount heads) and actor, critic, target critic."""

    def __init__(self, shape: AgentShape, learning: Learning, xla: bool = False, **kwargs: Any):
        """`xla` compiles the whole update with XLA (`train_step`); acting is compiled as usual."""
        super().__init__(**kwargs)
        self.shape, self.learning = shape, learning
        s = shape
        body = Body(s.norm, s.activation)
        self.encoder = Encoder(s.image, s.cnn_depth, s.units, s.layers, body, s.symlog, name="encoder")
        self.rssm = RSSM(s.latent, s.deter, s.stoch, s.classes, s.hidden, body, s.unimix, name="rssm")
        self.decoder = Decoder(s.image, s.cnn_depth, s.units, s.layers, s.observation_dim, body, s.symlog, name="decoder")
        # Two-hot heads start at zero weights (DreamerV3): their first predictions are exactly 0.
        self.bins = twohot_bins(s.twohot_bins) if s.twohot_bins else None
        scalar = dict(output=s.twohot_bins or 1, body=body, zero_output=bool(s.twohot_bins))
        self.reward_head = mlp(s.units, s.layers, name="reward", **scalar)
        self.discount_head = mlp(s.units, s.layers, 1, "discount", body)
        actor_outputs = s.action_dim if s.action_kind == "categorical" else 2 * s.action_dim
        self.actor = mlp(s.units, s.layers, actor_outputs, "actor", body)
        self.critic = mlp(s.units, s.layers, name="critic", **scalar)
        self.target_critic = mlp(s.units, s.layers, name="target_critic", **scalar)
        optimizer = lambda lr: keras.optimizers.Adam(lr, epsilon=1e-5, global_clipnorm=learning.grad_clip)  # noqa: E731
        self.model_optimizer = optimizer(learning.model_lr)
        self.actor_optimizer = optimizer(learning.actor_lr)
        self.critic_optimizer = optimizer(learning.critic_lr)
        self.updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="updates")
        # DreamerV3's return normalisation: EMAs of the imagined returns' low and high percentiles.
        self.return_range = [tf.Variable(0.0, trainable=False, name=name) for name in ("return_low", "return_high")]
        self.train_step = tf.function(self._update, jit_compile=xla)
        self._build_all()

    def _build_all(self) -> None:
        """Create every weight (and optimizer slot), so that checkpoints restore into a fresh agent."""
        s = self.shape
        observation = tf.zeros([1, 1, 64, 64, 3], tf.uint8) if s.image else tf.zeros([1, 1, s.observation_dim])
        embed = self.encoder(tf.reshape(observation, [1] + observation.shape[2:].as_list()))
        posterior, _ = self.rssm.observe(embed[:, None], tf.zeros([1, 1, s.action_dim]), tf.ones([1, 1], tf.bool), tf.constant([0, 0]))
        feat = self.rssm.features({k: v[:, 0] for k, v in posterior.items()})
        for head in (self.decoder, self.reward_head, self.discount_head, self.actor, self.critic, self.target_critic):
            head(feat)
        self.model_optimizer.build(self.world_model_variables)
        self.actor_optimizer.build(self.actor.trainable_variables)
        self.critic_optimizer.build(self.critic.trainable_variables)
        self.copy_target()

    @property
    def world_model_variables(self) -> list[Any]:
        """The variables the world-model loss trains."""
        parts = (self.encoder, self.rssm, self.decoder, self.reward_head, self.discount_head)
        return [v for part in parts for v in part.trainable_variables]

    def copy_target(self) -> None:
        """Hard copy of the critic into the target critic."""
        for target, source in zip(self.target_critic.variables, self.critic.variables):
            target.assign(source)

    def update_slow_critic(self, rate: float) -> None:
        """The slow critic moves `rate` of the way to the critic: slow <- (1 - rate) slow + rate critic (DreamerV3: 0.02)."""
        for target, source in zip(self.target_critic.variables, self.critic.variables):
            target.assign((1.0 - rate) * target + rate * source)

    def scalar(self, head: Any, feat: Any) -> Any:
        """A scalar head's prediction [..] (reward or value): the two-hot expectation, or the plain output."""
        if self.bins is not None:
            return twohot_mean(head(feat), self.bins)
        return tf.squeeze(head(feat), -1)

    def action_distribution(self, feat: Any) -> Any:
        """The actor's distribution over actions at states `feat`."""
        return action_distribution(self.shape.action_kind, self.actor(feat), self.shape.unimix)

    def policy(self, feat: Any, seed: Any) -> Any:
        """An action sampled from the actor [batch, A] (straight-through or reparameterised)."""
        return self.action_distribution(feat).sample(seed=seed)

    def world_model_loss(self, batch: dict[str, Any], seed: Any) -> tuple[Any, dict[str, Any], dict[str, Any]]:
        """The world-model loss (DreamerV2 eq. 2): -ln p(x | s) - ln p(r | s') - ln p(gamma | s') + KL balancing.

        Returns (loss, metrics, posterior states [B, L, ..]).
        """
        learning = self.learning
        observe_seed, next_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        obs = batch["obs"]
        b, length = tf.shape(obs)[0], tf.shape(obs)[1]
        flat = lambda x: tf.reshape(x, tf.concat([[b * length], tf.shape(x)[2:]], 0))  # noqa: E731
        embed = tf.reshape(self.encoder(flat(obs)), [b, length, -1])  # [B, L, E]
        posterior, prior = self.rssm.observe(embed, batch["previous_action"], batch["is_first"], observe_seed)
        feat = self.rssm.features(posterior)  # [B, L, F]

        image_ll = tf.reduce_mean(self.decoder.log_likelihood(flat(feat), flat(obs)))
        # s_{t+1}: the prior after a_t from the posterior s_t, replaced by the posterior where x_{t+1} is known.
        flat_posterior = {k: flat(v) for k, v in posterior.items()}
        after = self.rssm.features(self.rssm.img_step(flat_posterior, flat(batch["action"]), next_seed))
        after = tf.reshape(after, [b, length, -1])
        shifted = tf.concat([feat[:, 1:], feat[:, -1:]], axis=1)
        next_feat = tf.where(batch["has_next"][..., None], shifted, after)
        if self.bins is not None:
            reward_nll = tf.reduce_mean(twohot_loss(self.reward_head(next_feat), batch["reward"], self.bins))
        else:
            reward_pred = tf.squeeze(self.reward_head(next_feat), -1)
            reward_nll = tf.reduce_mean(0.5 * tf.square(reward_pred - batch["reward"]))
        discount_logit = tf.squeeze(self.discount_head(next_feat), -1)
        discount_nll = losses.continue_loss(discount_logit, batch["terminated"], learning.terminal_weight)
        q, p = self.rssm.distribution(posterior), self.rssm.distribution(prior)
        if learning.kl_mode == "free-bits":
            kl = losses.kl_free_bits(q, p, self.shape.latent, learning.kl_dyn_scale, learning.kl_rep_scale, learning.kl_free)
            kl_loss = kl["loss"]
        else:
            kl = losses.kl_balance(q, p, self.shape.latent, learning.kl_alpha, learning.kl_free)
            kl_loss = learning.kl_scale * kl["loss"]
        loss = -image_ll + reward_nll + learning.discount_scale * discount_nll + kl_loss
        metrics = {
            "model/loss": loss, "model/image_nll": -image_ll, "model/reward_nll": reward_nll,
            "model/discount_nll": discount_nll, "model/kl": kl["kl"],
        }
        return loss, metrics, posterior

    def imagine(self, start: dict[str, Any], seed: Any) -> tuple[dict[str, Any], Any]:
        """`horizon` steps of the actor in the transition predictor from `start` [N, ..]: states [H + 1, N, ..], actions [H, N, A]."""
        return self.rssm.imagine(self.policy, start, self.learning.horizon, seed)

    def behaviour_losses(self, states: dict[str, Any], actions: Any, replay: dict[str, Any] | None = None) -> tuple[Any, Any, dict[str, Any]]:
        """(actor loss, critic loss, metrics) of an imagined trajectory (states [H + 1, N, ..], actions [H, N, A]).

        With `replay` (the batch's reward, terminated and has_next [B, L], whose posterior states are the N = B L
        starts) and `Learning.replay_value_scale` > 0, the critic also learns the replay's own lambda-returns.
        """
        learning = self.learning
        feat = self.rssm.features(states)  # [H + 1, N, F]
        reward = self.scalar(self.reward_head, feat[1:])  # [H, N]
        discount = learning.gamma * tf.sigmoid(tf.squeeze(self.discount_head(feat[1:]), -1))
        slow = learning.slow_critic_rate > 0
        # DreamerV2 bootstraps from the target critic; DreamerV3 from the critic itself, its slow copy only regularising it.
        # Without dynamics backpropagation no gradient reaches feat, so the critic's one pass serves its loss too.
        critic_out = self.critic(feat) if slow and learning.rho == 1.0 else None
        if critic_out is not None:
            bootstrap = twohot_mean(critic_out, self.bins) if self.bins is not None else tf.squeeze(critic_out, -1)
        else:
            bootstrap = self.scalar(self.critic if slow else self.target_critic, feat)  # [H + 1, N]
        returns = losses.lambda_returns(reward, bootstrap, discount, learning.lambda_)
        weights = losses.trajectory_weights(discount)
        scale = None
        if learning.return_norm == "percentile":
            low, high = losses.update_return_range(*self.return_range, returns, learning.return_rate, learning.return_low, learning.return_high)
            self.return_range[0].assign(low)
            self.return_range[1].assign(high)
            scale = losses.return_scale(low, high)
        policy = self.action_distribution(tf.stop_gradient(feat[:-1]))
        log_prob = policy.log_prob(tf.stop_gradient(actions))
        actor = losses.actor_loss(log_prob, policy.entropy(), returns, bootstrap[:-1], weights, learning.rho, learning.eta, scale)
        critic_in = tf.stop_gradient(feat[:-1])
        slow_value = tf.stop_gradient(self.scalar(self.target_critic, critic_in)) if slow else None
        out = critic_out[:-1] if critic_out is not None else self.critic(critic_in)
        value = twohot_mean(out, self.bins) if self.bins is not None else tf.squeeze(out, -1)
        critic = self._critic_regression(out, returns, weights, slow_value)
        replay_metrics = {}
        if replay is not None and learning.replay_value_scale > 0:
            # The starts feat[0] are the replay's posterior states: their imagined returns bootstrap real sequences, whose
            # rewards and episode ends then reach the critic however far beyond the imagination horizon they lie.
            replay_loss, replay_returns = self._replay_value_loss(replay, out[0], returns[0], slow_value)
            critic += learning.replay_value_scale * replay_loss
            replay_metrics = {"critic/replay_loss": replay_loss, "critic/replay_return": tf.reduce_mean(replay_returns)}
        metrics = {
            "actor/loss": actor["loss"], "actor/entropy": actor["entropy"], "actor/advantage": actor["advantage"],
            "critic/loss": critic, "critic/value": tf.reduce_mean(value), "imagine/reward": tf.reduce_mean(reward),
            "imagine/return": tf.reduce_mean(returns),
        }
        if scale is not None:
            metrics["imagine/return_scale"] = scale
        metrics.update(replay_metrics)
        return actor["loss"], critic, metrics

    def _critic_regression(self, out: Any, targets: Any, weights: Any, slow_value: Any) -> Any:
        """The critic's weighted loss on `targets` from its outputs `out` [.., K or 1]: two-hot or MSE, with the slow critic's regulariser."""
        reg = self.learning.slow_critic_reg
        if self.bins is not None:
            return losses.twohot_critic_loss(out, targets, weights, self.bins, slow_value, reg)
        return losses.critic_loss(tf.squeeze(out, -1), targets, weights, slow_value, reg)

    def _replay_value_loss(self, replay: dict[str, Any], start_out: Any, start_returns: Any, slow_value: Any) -> tuple[Any, Any]:
        """The critic's loss on the replay's lambda-returns (`losses.replay_lambda_returns`) and those returns [B, L].

        start_out: the critic's output at the starts [N, ..]; start_returns: their imagined lambda-returns [N];
        slow_value: the slow critic's values over the imagination [H, N] (or None).
        """
        learning = self.learning
        b, length = tf.shape(replay["reward"])[0], replay["reward"].shape[1]
        window = lambda x: tf.reshape(x, tf.concat([[b, length], tf.shape(x)[1:]], 0))  # noqa: E731 [N, ..] -> [B, L, ..]
        returns, weights = losses.replay_lambda_returns(
            replay["reward"], replay["terminated"], replay["has_next"], window(tf.stop_gradient(start_returns)), learning.gamma, learning.lambda_)
        slow = window(slow_value[0]) if slow_value is not None else None
        return self._critic_regression(window(start_out), returns, weights, slow), returns

    def _update(self, batch: dict[str, Any], seed: Any) -> dict[str, Any]:
        """One update of the world model, then of the actor and the critic in its imagination (compiled as `train_step`)."""
        model_seed, imagine_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        with tf.GradientTape() as tape:
            model_loss, metrics, posterior = self.world_model_loss(batch, model_seed)
        variables = self.world_model_variables
        self.model_optimizer.apply_gradients(zip(tape.gradient(model_loss, variables), variables))

        start = {k: tf.stop_gradient(tf.reshape(v, tf.concat([[-1], tf.shape(v)[2:]], 0))) for k, v in posterior.items()}
        # Pure REINFORCE (rho = 1) needs no gradient through the imagined dynamics: imagining outside the
        # tape saves the backward pass through H steps of the RSSM (most of an update's time).
        dynamics_backprop = self.learning.rho < 1.0
        if not dynamics_backprop:
            states, actions = tf.nest.map_structure(tf.stop_gradient, self.imagine(start, imagine_seed))
        with tf.GradientTape(persistent=True) as tape:
            if dynamics_backprop:
                states, actions = self.imagine(start, imagine_seed)
            replay = {k: batch[k] for k in REPLAY_VALUE_KEYS}
            actor_loss, critic_loss, behaviour = self.behaviour_losses(states, actions, replay)
        actor_variables, critic_variables = self.actor.trainable_variables, self.critic.trainable_variables
        self.actor_optimizer.apply_gradients(zip(tape.gradient(actor_loss, actor_variables), actor_variables))
        self.critic_optimizer.apply_gradients(zip(tape.gradient(critic_loss, critic_variables), critic_variables))
        del tape
        self.updates.assign_add(1)
        if self.learning.slow_critic_rate > 0:
            self.update_slow_critic(self.learning.slow_critic_rate)
        elif self.updates % self.learning.target_every == 0:
            self.copy_target()
        metrics.update(behaviour)
        return metrics

    @tf.function
    def act(self, observation: Any, state: dict[str, Any], previous_action: Any, seed: Any, explore: bool) -> tuple[Any, dict[str, Any]]:
        """The actor's action for observations [batch, ..] after `previous_action`, and the new posterior.

        `explore` samples from the policy; otherwise its mode (evaluation). Actions are in the agent's
        form (one-hot, or [-1, 1]); `dreamer_env_action` turns them into the environment's.
        """
        posterior_seed, action_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        posterior, _ = self.rssm.obs_step(state, previous_action, self.encoder(observation), posterior_seed)
        policy = self.action_distribution(self.rssm.features(posterior))
        action = policy.sample(seed=action_seed) if explore else policy.mode()
        return action, posterior

    @tf.function
    def plan(self, observation: Any, state: dict[str, Any], previous_action: Any, seed: Any, horizon: int, iterations: int,
             candidates: int, top: int) -> tuple[Any, dict[str, Any]]:
        """PlaNet's action for observations [1, ..]: the cross-entropy method over the RSSM (`wm.dreamer.planner`)."""
        from wm.dreamer.planner import cem_plan

        posterior_seed, plan_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        posterior, _ = self.rssm.obs_step(state, previous_action, self.encoder(observation), posterior_seed)

        def step(states: dict[str, Any], actions: Any, step_seed: Any) -> tuple[dict[str, Any], Any, Any]:
            following = self.rssm.img_step(states, actions, step_seed)
            feat = self.rssm.features(following)
            reward = self.scalar(self.reward_head, feat)
            return following, reward, tf.sigmoid(tf.squeeze(self.discount_head(feat), -1))

        action = cem_plan(step, posterior, self.shape.action_kind, self.shape.action_dim, horizon, iterations, candidates, top, plan_seed)
        return action[None], posterior


def agent_from_artifact(artifact: Any) -> Agent:
    """The trained agent of an open `dreamer` artifact."""
    shape = AgentShape(**{**BEFORE_V3_SHAPE, **json.loads(artifact.attr("agent_shape_json"))})
    learning = Learning(**{**BEFORE_V3_LEARNING, **json.loads(artifact.attr("learning_json"))})
    agent = Agent(shape, learning)
    load_variables(artifact.file["agent"], list(agent.weights), f"{artifact.path}")
    return agent
