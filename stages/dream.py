"""Command `dream`: a picture of what the World Models V + M imagine, as a GIF or MP4.

    wm dream --vae vae.h5 --mdnrnn mdnrnn.h5 --out dream.gif --temperature 1.15
    wm dream --vae vae.h5 --mdnrnn mdnrnn.h5 --compare rollouts.h5 --episode 3 --out compare.gif
    wm dream --dreamer dreamer.h5 --compare rollouts.h5 --out imagined.gif

Dreamer (`--dreamer`): a recorded episode (from --compare, default the agent's replay) next to what
the RSSM makes of it: the posterior's reconstruction while it watches the first `context` frames,
then the open-loop imagination of the same actions through the transition predictor, decoded.

Symbols: z a VAE latent, h the MDN-RNN state, tau the temperature.
Dream: the very dream `wm train-controller` trains in: the same code (`wm.worldmodels.dream.batched.Dream`), the
same random streams and the same rules (with --controller, the rules it was trained with). Dream
`--dream-index i` of seed s uses the key of (s, i) (`view_keys`), so `Dream.run_linear` with that
key gives the same return. It starts from a recorded first frame chosen by the key (or
`--episode`); the environment's random process or the controller acts; the MDN-RNN samples z_{t+1}
at temperature tau; every z is decoded by the VAE. Compare: for a recorded episode, three columns
per frame: the real frame, the VAE reconstruction, and the MDN-RNN's one-step prediction (z_t
sampled from the mixture given the encoded history up to t - 1, decoded).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from wm.actions import dreamer_model_action, memory_inputs
from wm.config import StageConfig, option
from wm.envs import check_frames_per_step, default_max_steps, frames_per_step
from wm.envs.policies import RANDOM_POLICIES
from wm.errors import ArtifactError, ConfigError, UsageError
from wm.io.artifact import open_artifact
from wm.io.models import read_model
from wm.io.rollouts import RolloutsReader, check_frames
from wm.media import check_media_path, labelled_columns, upscale, write_video
from wm.progress import log
from wm.rng import keys_from_seeds
from wm.runner import Input, Output, Stage
from wm.tfsetup import tensorflow

STAGE_NAME = "dream"
STAGE_VERSION = 2
DREAM_VIEW = 31  # seed purpose of the dreams this command shows


@dataclass(frozen=True)
class DreamConfig(StageConfig):
    """Settings of `wm dream`."""

    temperature: Optional[float] = option(
        None, "Temperature tau of the MDN-RNN's sampling (logits / tau, sigma * sqrt(tau)); default: the controller's training temperature, else 1.0.")
    steps: int = option(300, "Frames shown: the first this many of the dream (or of the compared episode).")
    episode: Optional[int] = option(
        None,
        "Recorded episode whose first frame starts the dream (default: the one the dream's key picks, as in training), or "
        "which --compare shows (default: the first episode held out from the MDN-RNN's training).",
    )
    dream_index: int = option(0, "Which dream of this seed to show: dream i of seed s always uses the same random key.")
    policy: str = option(
        "random", "Acting policy inside the dream (random = the environment's random process); with --controller, the controller acts.",
        choices=RANDOM_POLICIES,
    )
    sample_done: Optional[bool] = option(None, "End the dream with the predicted death probability (default: the controller's rule, else the threshold).")
    done_threshold: Optional[float] = option(None, "The dream ends when the predicted done probability exceeds this (default: the controller's, else 0.5).")
    max_steps: Optional[int] = option(None, "Step cap of the dream; default: the controller's, else the environment's.")
    context: int = option(5, "Dreamer: frames the RSSM observes before it imagines the rest of the episode open-loop.")
    fps: float = option(20.0, "Frames per second of the output.")
    scale: int = option(3, "Each 64x64 frame is enlarged by this factor.")

    PRESETS = {"tiny": {"steps": 10, "scale": 1}, "demo": {"steps": 300}, "paper": {"temperature": 1.15}}

    def validate(self) -> None:
        from wm.worldmodels.dream.rules import check_temperature

        check_temperature(self.temperature)
        self.require_at_least(1, "steps", "scale", "context", "max_steps")
        self.require_at_least(0, "episode", "dream_index")
        self.require_positive("fps")
        if self.done_threshold is not None:
            self.require_fraction("done_threshold")


def default_out(config: DreamConfig) -> str:
    return "artifacts/dream.gif"


def check_rollouts_fit(rollouts, mdnrnn) -> None:
    """Raise ArtifactError unless a rollouts file comes from the MDN-RNN's environment and action space."""
    check_frames(rollouts, "the VAE")
    if rollouts.attr("action_space_json") != mdnrnn.attr("action_space_json"):
        raise ArtifactError(
            f"{rollouts.path} has the action space {rollouts.attr('action_space_json')}, but {mdnrnn.path} was trained "
            f"on {mdnrnn.attr('action_space_json')}; compare with rollouts of the same environment."
        )
    if rollouts.attr("env_id") != mdnrnn.attr("env_id"):
        raise ArtifactError(
            f"{rollouts.path} was recorded in {rollouts.attr('env_id')}, but {mdnrnn.path} models {mdnrnn.attr('env_id')}."
        )


def prepare(config: DreamConfig, inputs: Mapping[str, Any]) -> DreamConfig:
    """A Dreamer agent, or a V + M pair (with a compared recording or a controller that fit them); the compared episode by default."""
    if inputs["dreamer"] is not None:
        import json

        dreamer, compare = inputs["dreamer"], inputs["compare"]
        if not json.loads(dreamer.attr("agent_shape_json"))["image"]:
            raise ArtifactError(f"{dreamer.path} observes vectors, not images; there is nothing to decode into a picture.")
        if compare is not None:
            check_frames_per_step(compare, frames_per_step(dreamer), str(compare.path), str(dreamer.path),
                                  "; compare it with its own replay instead.")
        return config
    vae, mdnrnn, compare, controller = inputs["vae"], inputs["mdnrnn"], inputs["compare"], inputs["controller"]
    if vae is None or mdnrnn is None:
        raise UsageError("Give --vae and --mdnrnn (World Models), or --dreamer (a Dreamer agent).")
    from wm.worldmodels.dream.world import check_pair

    check_pair(vae, mdnrnn)
    if compare is not None:
        check_rollouts_fit(compare, mdnrnn)
    if controller is not None:
        from wm.worldmodels.controller_artifact import check_controller_fits

        check_controller_fits(controller, vae=vae, mdnrnn=mdnrnn)
    if config.episode is None and compare is not None:
        heldout = mdnrnn.file["initial/heldout"][:]
        config = dataclasses.replace(config, episode=int(heldout.argmax()) if heldout.any() else 0)
    return config


def compute(config: DreamConfig, inputs: Mapping[str, Any], seed: int, output: Output) -> None:
    """Write the dream (or, with --compare, the comparison) of the V + M pair, or the Dreamer agent's view, to the GIF/MP4."""
    check_media_path(output.path)
    if inputs["dreamer"] is not None:
        _dreamer_video(config, output.path, seed, inputs)
        return
    from wm.worldmodels.mdnrnn import build_mdnrnn
    from wm.worldmodels.vae import build_vae

    mdn_artifact, controller_artifact = inputs["mdnrnn"], inputs["controller"]
    vae, mdnrnn = read_model(inputs["vae"], build_vae), read_model(mdn_artifact, build_mdnrnn)
    controller = trained_rules = None  # (layout, actor) of the controller acting in the dream, and its training rules
    if controller_artifact is not None:
        from wm.worldmodels.controller_artifact import actor_of, dream_rules_of, layout_of

        controller, trained_rules = (layout_of(controller_artifact), actor_of(controller_artifact)), dream_rules_of(controller_artifact)
    if inputs["compare"] is None:
        frames, length, rules = _dream(config, seed, mdn_artifact, mdnrnn, controller, trained_rules)
        video = upscale(_decode(vae, frames[: config.steps]), config.scale)
        start = f"episode {config.episode}'s first frame" if config.episode is not None else "the first frame its key picked"
        ending = "ended by the model" if length < rules.max_steps else f"cut at the step cap {rules.max_steps}"
        what = (f"dream {config.dream_index} of seed {seed}: {length} steps ({ending}, return {frames_return(length, rules)}) from {start}, "
                f"{'the controller' if controller is not None else 'the ' + config.policy + ' policy'} acting under {rules}"
                + (f"; the first {config.steps} frames shown" if length > config.steps else ""))
    else:
        video, what = _compare(config, seed, inputs["compare"], mdn_artifact, vae, mdnrnn, trained_rules)
    write_video(video, output.path, config.fps)
    log(f"Wrote {output.path}: {what}.")


def _decode(vae: Any, z: Any) -> Any:
    """Frames [T, 64, 64, 3] uint8 of latents [T, latent], decoded by the VAE in blocks."""
    from wm.worldmodels.vae import output_to_frames

    tf = tensorflow()
    images = [vae.decode(tf.constant(z[i : i + 256])).numpy() for i in range(0, len(z), 256)]
    return output_to_frames(np.concatenate(images))


def _compare(config: DreamConfig, seed: int, rollouts: Any, mdn_artifact: Any, vae: Any, mdnrnn: Any, trained_rules: Any) -> tuple[Any, str]:
    """Real | VAE | MDN-RNN one-step prediction | the dream of the same actions from the same first frame, and its description."""
    from wm.worldmodels import mixture
    from wm.worldmodels.dream.batched import Dream
    from wm.worldmodels.vae import frames_to_input

    tf = tensorflow()
    action_dim, discrete = int(mdn_artifact.attr("action_dim")), bool(mdn_artifact.attr("discrete_actions"))
    temperature = tf.constant(config.temperature if config.temperature is not None else 1.0, tf.float32)
    reader = RolloutsReader(rollouts)
    if config.episode >= reader.num_episodes:
        raise ConfigError(f"'episode' is {config.episode}, but {rollouts.path} has {reader.num_episodes} episodes.")
    episode = reader.episode(config.episode)
    steps = min(config.steps, episode.length)
    real = episode.obs[:steps]
    mu, logvar = vae.encode(frames_to_input(real))
    actions = memory_inputs(episode.action[:steps], action_dim, discrete)
    heads, _ = mdnrnn(mu[None], tf.constant(actions[None]))
    predicted = mixture.sample(heads["logits"][0], heads["mu"][0], heads["log_sigma"][0], temperature, tf.constant([seed, 0], tf.int64))
    gray = np.full((1, 64, 64, 3), 128, np.uint8)
    prediction_frames = np.concatenate([gray, _decode(vae, predicted.numpy()[:-1])])
    # The dream of the same actions from the same first frame, under the dream's rules, until it ends.
    rules = dataclasses.replace(_view_rules(config, mdn_artifact, mdnrnn, trained_rules), max_steps=steps)
    dream_latents, dream_length = _run_dream(Dream(mdnrnn, mu.numpy()[:1], logvar.numpy()[:1], rules), seed, config.dream_index,
                                             None, lambda z, h, c, slots, t: tf.gather(tf.constant(actions[None])[:, t], slots))
    dream_frames = np.concatenate([_decode(vae, dream_latents), np.repeat(gray, steps - dream_length, axis=0)])
    video = labelled_columns([real, _decode(vae, mu.numpy()), prediction_frames, dream_frames], ["real", "VAE", "MDN-RNN", "dream"], config.scale)
    died = f"it ended after {dream_length} steps" if dream_length < steps else f"it was still going at step {steps}"
    return video, (f"{steps} steps of episode {config.episode} of {rollouts.path} (it lasted {episode.length}): real | VAE reconstruction | "
                   f"MDN-RNN one-step prediction | the dream of the same actions from the same first frame under {rules} ({died})")


def view_keys(seed: int, indices: list[int]) -> Any:
    """The random keys [n, 2] of dreams `indices` of `wm dream --seed seed --dream-index i`."""
    return keys_from_seeds(seed, [(DREAM_VIEW, i) for i in indices])


def frames_return(length: int, rules: Any) -> str:
    """The return of a shown dream, where the rules make it the length (survival reward)."""
    return str(length) if rules.reward == "survival" else "from the reward head"


def _dream(config: DreamConfig, seed: int, mdn_artifact: Any, mdnrnn: Any, controller: Any, trained_rules: Any) -> tuple[Any, int, Any]:
    """Latents [T, latent] of one dream, its length and its rules: the batched dream of training, for one key.

    `controller` (layout, actor) acts if given, with the rules it was trained with (options given here win);
    otherwise the environment's random process (`config.policy`) acts.
    """
    from wm.worldmodels.dream.batched import Dream

    tf = tensorflow()
    initial_mu = mdn_artifact.file["initial/mu"][:]
    if config.episode is not None and config.episode >= initial_mu.shape[0]:
        raise ConfigError(f"'episode' is {config.episode}, but {mdn_artifact.path} recorded {initial_mu.shape[0]} first frames.")
    env_id = mdn_artifact.attr("env_id")
    rules = _view_rules(config, mdn_artifact, mdnrnn, trained_rules)
    dream = Dream(mdnrnn, initial_mu, mdn_artifact.file["initial/logvar"][:], rules)
    if controller is not None:
        from wm.actions import tf_controller_env_action, tf_controller_memory_input
        from wm.worldmodels.controller import features

        layout, actor = controller

        def act(z, h, c, slots, t):  # the controller sees [z, (c), h] of the state before M reads z
            return tf_controller_memory_input(layout, tf_controller_env_action(layout, actor(features(layout, z, h, c, concat=tf.concat))))
    else:
        from wm.envs.policies import PolicySpec
        from wm.envs.spaces import space_from_json
        from wm.worldmodels.dream.actions import policy_action_table

        table = tf.constant(policy_action_table(
            PolicySpec(config.policy), env_id, space_from_json(mdn_artifact.attr("action_space_json")), seed, [config.dream_index],
            rules.max_steps, int(mdn_artifact.attr("action_dim")), bool(mdn_artifact.attr("discrete_actions"))))

        def act(z, h, c, slots, t):
            return tf.gather(table[:, t], slots)

    latents, length = _run_dream(dream, seed, config.dream_index, config.episode, act)
    return latents, length, rules


def _view_rules(config: DreamConfig, mdn_artifact: Any, mdnrnn: Any, trained_rules: Any) -> Any:
    """The dream's rules: the options given here, else the controller's training rules, else the defaults."""
    from wm.worldmodels.dream.rules import dream_rules, rule_options

    return dream_rules(mdnrnn, reward=trained_rules.reward if trained_rules is not None else "auto", **rule_options(
        trained_rules, temperature=config.temperature, sample_done=config.sample_done, done_threshold=config.done_threshold,
        max_steps=config.max_steps, env_max_steps=default_max_steps(mdn_artifact.attr("env_id"))))


def _run_dream(dream: Any, seed: int, index: int, episode: Any, act: Any) -> tuple[Any, int]:
    """One dream of the batched code, key (seed, index), recorded: its latents [T, latent] and its length T."""
    tf = tensorflow()
    keys = tf.constant(view_keys(seed, [index]), tf.uint32)
    start = None if episode is None else tf.constant(episode)
    _, lengths, latents = tf.function(lambda: dream.run(keys, act, record=True, start_episode=start))()
    length = int(lengths.numpy()[0])
    return np.asarray(latents.numpy()[:length, 0]), length


def _dreamer_video(config: DreamConfig, out: Path, seed: int, inputs: Mapping[str, Any]) -> None:
    """Real frames | posterior reconstruction, then open-loop imagination of the same actions, for one recorded episode."""
    from wm.dreamer.agent import agent_from_artifact

    tf = tensorflow()
    artifact = inputs["dreamer"]
    agent = agent_from_artifact(artifact)
    env_id = artifact.attr("env_id")
    recorded = inputs["compare"].path if inputs["compare"] is not None else artifact.path.parent / str(artifact.attr("replay_path"))
    with open_artifact(recorded, ("rollouts", "replay")) as rollouts:
        if rollouts.attr("env_id") != env_id:
            raise ArtifactError(f"{rollouts.path} was recorded in {rollouts.attr('env_id')}, but the agent acts in {env_id}.")
        reader = RolloutsReader(rollouts)
        index = config.episode or 0
        if index >= reader.num_episodes:
            raise ConfigError(f"'episode' is {index}, but {rollouts.path} has {reader.num_episodes} episodes.")
        episode = reader.episode(index)
        from wm.envs.spaces import space_from_json

        space = space_from_json(rollouts.attr("action_space_json"))
    shape = agent.shape
    steps = min(config.steps, episode.length)
    context = min(config.context, steps)
    actions = dreamer_model_action(episode.action[:steps], shape.action_kind, shape.action_dim, getattr(space, "low", None), getattr(space, "high", None))
    previous = np.concatenate([np.zeros_like(actions[:1]), actions[:-1]])[None]
    is_first = np.zeros((1, context), bool)
    is_first[0, 0] = True
    embed = agent.encoder(tf.constant(episode.obs[:context]))[None]
    posterior, _ = agent.rssm.observe(embed, tf.constant(previous[:, :context]), tf.constant(is_first), tf.constant([seed, 0]))
    features = [agent.rssm.features(posterior)[0]]
    state = {key: value[:, -1] for key, value in posterior.items()}
    for t in range(context, steps):
        state = agent.rssm.img_step(state, tf.constant(previous[:, t]), tf.constant([seed, t + 1]))
        features.append(agent.rssm.features(state))
    decoded = agent.decoder(tf.concat(features, axis=0)).numpy()
    frames = np.clip(np.round((decoded + 0.5) * 255.0), 0, 255).astype(np.uint8)
    video = labelled_columns([episode.obs[:steps], frames], ["real", f"model ({context} seen)"], config.scale)
    write_video(video, out, config.fps)
    log(f"Wrote {out}: {steps} steps of episode {index} of {recorded}: real | the RSSM's reconstruction of the first "
        f"{context} frames, then its open-loop imagination of the same actions.")


STAGE = Stage(
    STAGE_NAME, compute, DreamConfig, output_kind="media", version=STAGE_VERSION,
    help="Write a GIF/MP4 of what the VAE + MDN-RNN (or a Dreamer agent's RSSM) imagine, or real vs reconstructed vs predicted.",
    inputs={
        "vae": Input("vae", "VAE artifact (World Models; required unless --dreamer).", optional=True),
        "mdnrnn": Input("mdnrnn", "MDN-RNN artifact trained on that VAE's latents (required unless --dreamer).", optional=True),
        "compare": Input(("rollouts", "replay"), "Rollouts artifact to show instead of a dream: real | VAE reconstruction | MDN-RNN "
                                                 "prediction (with --dreamer: the recorded episode to show).", optional=True),
        "controller": Input("controller", "Controller artifact that acts in the dream (it must have been trained with this VAE and MDN-RNN).",
                            optional=True),
        "dreamer": Input("dreamer", "Dreamer agent artifact: show a recorded episode next to what its RSSM reconstructs and imagines.",
                         optional=True),
    },
    default_out=default_out,
    prepare=prepare,
    artifact=False,
)
