"""Controller artifacts (kind `controller`): written by `wm train-controller`, read by `wm evaluate`,
`wm rollout --policy controller` and `wm dream --controller`.

    attrs            env_id, action_space_json, layout_json, algo (cmaes | ppo), trained_in (dream | real),
                     dream_rules_json, vae_fingerprint, mdnrnn_fingerprint, history_json, final_*
    vae/, mdnrnn/    copies of the V and M models it was trained with (the artifact acts on its own)
    initial/mu, initial/logvar   the recorded first-frame latents dreams start from
    params/mean, params/best     CMA-ES: the distribution's mean and the best candidate seen [num_params]
    policy/          PPO: the actor-critic's weights
    history/*        one row per generation (CMA-ES) or iteration (PPO)
    training_env_seeds           every real-environment seed used while training (evaluation avoids them)
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from wm.actions import tf_controller_env_action, tf_controller_memory_input
from wm.errors import ArtifactError
from wm.io.artifact import create_dataset, open_artifact
from wm.io.models import write_model
from wm.tfsetup import tensorflow
from wm.training import history_arrays
from wm.worldmodels.controller import ControllerLayout, LinearActor, features

PARAM_CHOICES = ("mean", "best")


def write_controller(
    f: Any, *, layout: Any, algo: str, trained_in: str, rules: Any, vae: Any, mdnrnn: Any,
    history: list[Mapping[str, Any]], training_env_seeds: np.ndarray, params: Mapping[str, np.ndarray] | None = None,
    model: Any = None,
) -> None:
    """Fill an open artifact (root attributes already written) with a trained controller."""
    from wm.worldmodels.dream.world import embed_world_model

    f.attrs["env_id"] = mdnrnn.attr("env_id")
    f.attrs["action_space_json"] = mdnrnn.attr("action_space_json")
    f.attrs["layout_json"] = layout.to_json()
    f.attrs["algo"] = algo
    f.attrs["trained_in"] = trained_in
    f.attrs["dream_rules_json"] = json.dumps(asdict(rules) if rules is not None else None)
    embed_world_model(f, vae, mdnrnn)
    for name, values in (params or {}).items():
        create_dataset(f, f"params/{name}", data=np.asarray(values, np.float32))
    if model is not None:
        write_model(f, model, "policy")
    for key, values in history_arrays(history).items():
        create_dataset(f, f"history/{key.replace('/', '_')}", data=values)
    f.attrs["history_json"] = json.dumps(history)
    for key, value in history[-1].items():
        if np.isscalar(value) and key != "generation":
            f.attrs[f"final_{key.replace('/', '_')}"] = value
    create_dataset(f, "training_env_seeds", data=np.asarray(training_env_seeds, np.uint32))


def layout_of(artifact: Any) -> Any:
    """The ControllerLayout stored in a controller artifact."""
    return ControllerLayout.from_json(artifact.attr("layout_json"))


def dream_rules_of(artifact: Any) -> Any:
    """The DreamRules the controller was trained (or would be dreamed) with, or None."""
    from wm.worldmodels.dream.rules import DreamRules

    data = artifact.json_attr("dream_rules_json")
    return DreamRules(**data) if data else None


def actor_of(artifact: Any, params: str = "mean") -> Callable[[Any], Any]:
    """The controller as a TensorFlow function x [n, inputs] -> raw output [n, outputs] in [-1, 1]."""
    layout = layout_of(artifact)
    if artifact.attr("algo") == "ppo":
        from wm.io.models import read_model
        from wm.worldmodels.ppo import build_actor_critic, raw_output

        model = read_model(artifact, build_actor_critic, "policy")
        return lambda x: raw_output(layout, model, model.mode(model.actor(x)))

    if params not in PARAM_CHOICES:
        raise ArtifactError(f"params must be one of {', '.join(PARAM_CHOICES)}; got {params!r}.")
    actor = LinearActor(layout)
    actor.set_params(artifact.file[f"params/{params}"][:])
    return actor


def load_actor(path: str | Path, params: str = "mean") -> tuple[Any, Callable[[Any], Any]]:
    """(layout, actor) of the controller artifact at `path`."""
    with open_artifact(path, "controller") as artifact:
        return layout_of(artifact), actor_of(artifact, params)


def check_controller_fits(controller: Any, *, vae: Any = None, mdnrnn: Any = None, env_id: str | None = None) -> None:
    """Raise ArtifactError unless the controller was trained with this VAE, MDN-RNN and environment."""
    for name, artifact in (("vae", vae), ("mdnrnn", mdnrnn)):
        if artifact is not None and controller.attr(f"{name}_fingerprint") != artifact.fingerprint:
            what = "VAE" if name == "vae" else "MDN-RNN"
            raise ArtifactError(
                f"{controller.path} was trained with another {what} (fingerprint {controller.attr(f'{name}_fingerprint')}) "
                f"than {artifact.path} ({artifact.fingerprint}); use the world model it was trained in."
            )
    if env_id is not None and controller.attr("env_id") != env_id:
        raise ArtifactError(
            f"{controller.path} was trained for {controller.attr('env_id')}, not {env_id}; use it with --env {controller.attr('env_id')}."
        )


def dream_with_actor(dream: Any, layout: Any, actor: Callable[[Any], Any]) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """A compiled `run(keys [n, 2]) -> (returns, lengths)` of dreams driven by one actor."""
    tf = tensorflow()

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.uint32)], jit_compile=False)
    def run(keys):
        def act(z, h, c, slots, t):
            raw = actor(features(layout, z, h, c, concat=tf.concat))
            return tf_controller_memory_input(layout, tf_controller_env_action(layout, raw))

        return dream.run(keys, act)

    def call(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        returns, lengths = run(tf.constant(keys, tf.uint32))
        return returns.numpy(), lengths.numpy()

    return call
