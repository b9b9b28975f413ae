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
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from wm.dreamer import losses
from wm.dreamer.distributions import action_distribution
from wm.dreamer.networks import Decoder, Encoder, mlp
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
    gamma: float
    lambda_: float
    horizon: int
    rho: float
    eta: float
    target_every: int


class Agent(keras.Model):
    """World model (encoder, RSSM, decoder, reward and discount heads) and actor, critic, target critic."""

    def __init__(self, shape: AgentShape, learning: Learning, **kwargs: Any):
        super().__init__(**kwargs)
        self.shape, self.learning = shape, learning
        s = shape
        self.encoder = Encoder(s.image, s.cnn_depth, s.units, s.layers, name="encoder")
        self.rssm = RSSM(s.latent, s.deter, s.stoch, s.classes, s.hidden, name="rssm")
        self.decoder = Decoder(s.image, s.cnn_depth, s.units, s.layers, s.observation_dim, name="decoder")
        self.reward_head = mlp(s.units, s.layers, 1, "reward")
        self.discount_head = mlp(s.units, s.layers, 1, "discount")
        actor_outputs = s.action_dim if s.action_kind == "categorical" else 2 * s.action_dim
        self.actor = mlp(s.units, s.layers, actor_outputs, "actor")
        self.critic = mlp(s.units, s.layers, 1, "critic")
        self.target_critic = mlp(s.units, s.layers, 1, "target_critic")
        optimizer = lambda lr: keras.optimizers.Adam(lr, epsilon=1e-5, global_clipnorm=learning.grad_clip)  # noqa: E731
        self.model_optimizer = optimizer(learning.model_lr)
        self.actor_optimizer = optimizer(learning.actor_lr)
        self.critic_optimizer = optimizer(learning.critic_lr)
        self.updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="updates")
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

    def policy(self, feat: Any, seed: Any) -> Any:
        """An action sampled from the actor [batch, A] (straight-through or reparameterised)."""
        return action_distribution(self.shape.action_kind, self.actor(feat)).sample(seed=seed)

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
        reward_pred = tf.squeeze(self.reward_head(next_feat), -1)
        reward_nll = tf.reduce_mean(0.5 * tf.square(reward_pred - batch["reward"]))
        continues = 1.0 - tf.cast(batch["terminated"], tf.float32)
        discount_logit = tf.squeeze(self.discount_head(next_feat), -1)
        discount_nll = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=continues, logits=discount_logit))
        kl = losses.kl_balance(self.rssm.distribution(posterior), self.rssm.distribution(prior), self.shape.latent, learning.kl_alpha, learning.kl_free)
        loss = -image_ll + reward_nll + learning.discount_scale * discount_nll + learning.kl_scale * kl["loss"]
        metrics = {
            "model/loss": loss, "model/image_nll": -image_ll, "model/reward_nll": reward_nll,
            "model/discount_nll": discount_nll, "model/kl": kl["kl"],
        }
        return loss, metrics, posterior

    def imagine(self, start: dict[str, Any], seed: Any) -> tuple[dict[str, Any], Any]:
        """`horizon` steps of the actor in the transition predictor from `start` [N, ..]: states [H + 1, N, ..], actions [H, N, A]."""
        return self.rssm.imagine(self.policy, start, self.learning.horizon, seed)

    def behaviour_losses(self, states: dict[str, Any], actions: Any) -> tuple[Any, Any, dict[str, Any]]:
        """(actor loss, critic loss, metrics) of an imagined trajectory (states [H + 1, N, ..], actions [H, N, A])."""
        learning = self.learning
        feat = self.rssm.features(states)  # [H + 1, N, F]
        reward = tf.squeeze(self.reward_head(feat[1:]), -1)  # [H, N]
        discount = learning.gamma * tf.sigmoid(tf.squeeze(self.discount_head(feat[1:]), -1))
        target_value = tf.squeeze(self.target_critic(feat), -1)  # [H + 1, N]
        returns = losses.lambda_returns(reward, target_value, discount, learning.lambda_)
        weights = losses.trajectory_weights(discount)
        policy = action_distribution(self.shape.action_kind, self.actor(tf.stop_gradient(feat[:-1])))
        log_prob = policy.log_prob(tf.stop_gradient(actions))
        actor = losses.actor_loss(log_prob, policy.entropy(), returns, target_value[:-1], weights, learning.rho, learning.eta)
        value = tf.squeeze(self.critic(tf.stop_gradient(feat[:-1])), -1)
        critic = losses.critic_loss(value, returns, weights)
        metrics = {
            "actor/loss": actor["loss"], "actor/entropy": actor["entropy"], "actor/advantage": actor["advantage"],
            "critic/loss": critic, "critic/value": tf.reduce_mean(value), "imagine/reward": tf.reduce_mean(reward),
            "imagine/return": tf.reduce_mean(returns),
        }
        return actor["loss"], critic, metrics

    @tf.function
    def train_step(self, batch: dict[str, Any], seed: Any) -> dict[str, Any]:
        """One update of the world model, then of the actor and the critic in its imagination."""
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
            actor_loss, critic_loss, behaviour = self.behaviour_losses(states, actions)
        actor_variables, critic_variables = self.actor.trainable_variables, self.critic.trainable_variables
        self.actor_optimizer.apply_gradients(zip(tape.gradient(actor_loss, actor_variables), actor_variables))
        self.critic_optimizer.apply_gradients(zip(tape.gradient(critic_loss, critic_variables), critic_variables))
        del tape
        self.updates.assign_add(1)
        if self.updates % self.learning.target_every == 0:
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
        policy = action_distribution(self.shape.action_kind, self.actor(self.rssm.features(posterior)))
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
            reward = tf.squeeze(self.reward_head(feat), -1)
            return following, reward, tf.sigmoid(tf.squeeze(self.discount_head(feat), -1))

        action = cem_plan(step, posterior, self.shape.action_kind, self.shape.action_dim, horizon, iterations, candidates, top, plan_seed)
        return action[None], posterior


def agent_from_artifact(artifact: Any) -> Agent:
    """The trained agent of an open `dreamer` artifact."""
    shape = AgentShape(**json.loads(artifact.attr("agent_shape_json")))
    learning = Learning(**json.loads(artifact.attr("learning_json")))
    agent = Agent(shape, learning)
    load_variables(artifact.file["agent"], list(agent.weights), f"{artifact.path}")
    return agent
