"""Stage `fidelity`: how well a World Models dream agrees with the real environment.

    wm fidelity --vae vae.h5 --mdnrnn mdnrnn.h5 --temperature 1.15 --out fidelity.h5
    wm fidelity --controller controller.h5 --out fidelity.h5        # its world model and training rules, and it as a policy

1. Dream against real, per policy: the environment's random process, each constant action of a
   discrete action space, and the controller if one is given each play `episodes` real episodes
   (fresh seeds) and `episodes` dreams under the training rules (temperature, death rule, step cap).
   The random process takes the same action sequence in dream i as in real episode i. Reported per
   policy: episode length and return (mean +- std) in both, the ratio dream / real of the mean
   lengths, and a two-sample Kolmogorov-Smirnov test of the lengths.
2. Open-loop prediction on the random process's real episodes (held out from training by
   construction), encoded by the VAE: the MDN-RNN reads the real z_0 .. z_k, then runs on its own
   samples with the recorded actions; the NLL of the real z_{k+j} and the death head's ROC AUC at
   every horizon j up to the largest of `horizons` (`wm.worldmodels.fidelity`).

The artifact (kind `fidelity`) stores every episode's length and return per policy, the open-loop
curves and the table; `<out>.png` shows real against dream lengths per policy and error against
horizon.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import numpy as np

from wm.actions import memory_inputs
from wm.config import StageConfig, option
from wm.envs import action_name, default_max_steps
from wm.envs.spaces import space_from_json
from wm.errors import ConfigError, Interrupted, UsageError
from wm.io.artifact import create_dataset
from wm.parallel import make_executor
from wm.progress import Progress, log, plural
from wm.rng import generator, keys_from_seeds
from wm.runner import Input, Output, Stage
from wm.stages.evaluate import evaluation_seeds
from wm.worldmodels.fidelity import HeldOutEpisode, PolicyComparison, fidelity_report, open_loop, plot_fidelity, policy_group

STAGE_NAME = "fidelity"
STAGE_VERSION = 1
REAL_EPISODES, DREAMS, LATENT_NOISE, OPEN_LOOP = 21, 22, 23, 24  # seed purposes, distinct from training's and evaluation's


@dataclass(frozen=True)
class FidelityConfig(StageConfig):
    """Settings of `wm fidelity`."""

    episodes: int = option(100, "Real episodes, and dreams, per policy (fresh seeds).")
    policies: str = option(
        "random,constant",
        "Policies to compare, comma-separated: random (the environment's random process) and constant (each action of a "
        "discrete action space, one policy each). A --controller is always added.",
    )
    temperature: Optional[float] = option(None, "Temperature tau of the dreams; default: the controller's training temperature, else 1.0.")
    sample_done: Optional[bool] = option(None, "End a dream with the predicted death probability (default: the controller's rule, else the threshold).")
    done_threshold: Optional[float] = option(None, "A dream ends when the predicted death probability exceeds this (default: the controller's, else 0.5).")
    max_steps: Optional[int] = option(None, "Step cap of episodes and dreams; default: the controller's, else the environment's (2100 doom-takecover).")
    horizons: str = option("1,5,20,50", "Open-loop horizons to report, comma-separated (the curve is stored for every horizon up to the largest).")
    open_loop_stride: int = option(1, "Open-loop rows start at every this many steps of each held-out episode.")
    params: str = option("mean", "CMA-ES controllers: the distribution's mean or the best candidate seen.", choices=("mean", "best"))
    env_kwargs: dict = option({}, "Extra keyword arguments for the real environment, as JSON.")
    workers: int = option(2, "Parallel worker processes for real episodes (does not change the result).", fingerprint=False)
    backend: str = option("process", "Where real episodes run: process, serial or ray.", choices=("process", "serial", "ray"), fingerprint=False)
    ray_address: Optional[str] = option(None, "Address of a running Ray cluster for --backend ray.", fingerprint=False)
    task_timeout: float = option(1800.0, "Seconds without any real episode finishing after which the workers are declared hung.", fingerprint=False)

    PRESETS = {"tiny": {"episodes": 3, "max_steps": 40, "horizons": "1,2,5"}, "demo": {"episodes": 24}, "paper": {"episodes": 100}}

    def validate(self) -> None:
        from wm.worldmodels.dream.rules import check_temperature

        check_temperature(self.temperature)
        self.require_at_least(1, "episodes", "open_loop_stride", "max_steps", "workers")
        self.require_positive("task_timeout")
        if self.done_threshold is not None:
            self.require_fraction("done_threshold")
        self.policy_names()
        self.horizon_list()

    def policy_names(self) -> list[str]:
        """The policy kinds asked for: a subset of random, constant."""
        names = [part.strip() for part in self.policies.split(",") if part.strip()]
        unknown = [name for name in names if name not in ("random", "constant")]
        if unknown or len(set(names)) != len(names):
            raise ConfigError(f"'policies' must list random and/or constant once each, comma-separated; got {self.policies!r}.")
        return names

    def horizon_list(self) -> list[int]:
        """The reported horizons, ascending."""
        try:
            horizons = sorted({int(part) for part in self.horizons.split(",")})
        except ValueError:
            horizons = []
        if not horizons or horizons[0] < 1:
            raise ConfigError(f"'horizons' must be comma-separated positive step counts such as 1,5,20,50; got {self.horizons!r}.")
        return horizons


def default_out(config: FidelityConfig) -> str:
    return "artifacts/fidelity.h5"


@dataclass
class PolicyPlan:
    """One compared policy: its name, how it acts in the real environment and in the dream."""

    name: str
    spec: Any  # wm.envs.policies.PolicySpec for real episodes
    record_frames: bool  # its real episodes feed the open-loop evaluation


def prepare(config: FidelityConfig, inputs: Mapping[str, Any]) -> FidelityConfig:
    """A V + M pair or a controller (or both, fitting each other); the dream rules the controller was trained under by default."""
    from wm.worldmodels.controller_artifact import check_controller_fits
    from wm.worldmodels.dream.rules import rule_options
    from wm.worldmodels.dream.world import check_pair

    vae, mdnrnn, controller = inputs["vae"], inputs["mdnrnn"], inputs["controller"]
    if controller is None and (vae is None or mdnrnn is None):
        raise UsageError("Give --vae and --mdnrnn (a world model), or --controller (which carries one).")
    if (vae is None) != (mdnrnn is None):
        raise UsageError("Give both --vae and --mdnrnn, or neither (the controller carries its world model).")
    if vae is not None:
        check_pair(vae, mdnrnn)
        if controller is not None:
            check_controller_fits(controller, vae=vae, mdnrnn=mdnrnn, env_id=mdnrnn.attr("env_id"))
    env_id, _, _, trained_rules = _identity(inputs)
    config = dataclasses.replace(config, **rule_options(
        trained_rules, temperature=config.temperature, sample_done=config.sample_done, done_threshold=config.done_threshold,
        max_steps=config.max_steps, env_max_steps=default_max_steps(env_id)))
    if config.horizon_list()[-1] >= config.max_steps:
        raise ConfigError(f"The longest horizon ({config.horizon_list()[-1]}) must be shorter than the held-out episodes, which last at "
                          f"most {config.max_steps} steps (the step cap).")
    return config


def _identity(inputs: Mapping[str, Any]) -> tuple[str, str, set[int], Any]:
    """(env id, action space JSON, seeds to avoid, training rules) of the measured world model (a controller's, if given)."""
    from wm.worldmodels.controller_artifact import dream_rules_of

    controller = inputs["controller"]
    if controller is None:
        return inputs["mdnrnn"].attr("env_id"), inputs["mdnrnn"].attr("action_space_json"), set(), None
    avoid = {int(s) for s in controller.file["training_env_seeds"][:]}
    return controller.attr("env_id"), controller.attr("action_space_json"), avoid, dream_rules_of(controller)


def compute(config: FidelityConfig, inputs: Mapping[str, Any], seed: int, output: Output) -> None:
    """Compare the dream of a V + M pair (or of a controller's world model) with the real environment; write the artifact and its PNG."""
    from wm.episodes import purpose_seed
    from wm.worldmodels.dream.batched import Dream
    from wm.worldmodels.dream.rules import dream_rules
    from wm.worldmodels.dream.world import world_model_of, world_model_of_pair

    env_id, space_json, avoid, trained_rules = _identity(inputs)
    controller = inputs["controller"]
    world = world_model_of_pair(inputs["vae"], inputs["mdnrnn"]) if inputs["vae"] is not None else world_model_of(controller)
    rules = dream_rules(world.mdnrnn, temperature=config.temperature, max_steps=config.max_steps,
                        reward=trained_rules.reward if trained_rules else "auto", sample_done=config.sample_done,
                        done_threshold=config.done_threshold)
    dream = Dream(world.mdnrnn, world.initial_mu, world.initial_logvar, rules)
    space = space_from_json(space_json)
    plans = _plans(config, env_id, space, controller.path if controller is not None else None)
    log(f"Dream rules {rules}; policies: {', '.join(plan.name for plan in plans)}; {plural(config.episodes, 'episode')} "
        "and as many dreams each.")
    real, held_out = _real_episodes(config, seed, env_id, plans, world, avoid)
    comparisons = []
    for plan in plans:
        dream_returns, dream_lengths = _dreams(config, seed, dream, plan, env_id, space, world, real[plan.name], controller)
        comparisons.append(PolicyComparison(plan.name, real[plan.name]["length"], real[plan.name]["return"], dream_lengths, dream_returns))
    horizons = config.horizon_list()
    longest = max(len(episode.z) for episode in held_out)
    if horizons[-1] >= longest:
        raise ConfigError(f"The longest horizon ({horizons[-1]}) must be shorter than the held-out episodes, which last at most "
                          f"{longest} steps; ask for shorter horizons or more episodes.")
    log(f"Open-loop prediction over {plural(len(held_out), 'held-out episode')} ({sum(len(e.z) for e in held_out)} steps), "
        f"horizons 1 to {horizons[-1]}.")
    result = open_loop(world.mdnrnn, held_out, horizons[-1], rules.temperature, purpose_seed(seed, OPEN_LOOP), stride=config.open_loop_stride)
    _write(output, config, env_id, rules, comparisons, real, result)
    picture = output.path.with_suffix(".png")
    plot_fidelity(comparisons, result, picture, f"{env_id}: dream (tau {rules.temperature:g}) against real, {config.episodes} episodes each")
    print(fidelity_report(output.path), flush=True)
    log(f"Wrote {output.path} and {picture}.")


def _write(output: Output, config: FidelityConfig, env_id: str, rules: Any, comparisons: list, real: Mapping[str, Any], result: Any) -> None:
    """The artifact: every episode's length and return per policy, the open-loop curves and the table."""
    summaries = {c.name: c.summary() for c in comparisons}
    open_loop_rows = {str(j): result.at(j) for j in config.horizon_list()}
    with output.artifact(
        env_id=env_id, rules_json=json.dumps(dataclasses.asdict(rules)), policies_json=json.dumps([c.name for c in comparisons]),
        summary_json=json.dumps(summaries), open_loop_json=json.dumps(open_loop_rows), episodes=int(config.episodes),
    ) as f:
        for comparison in comparisons:
            group = f.create_group(policy_group(comparison.name))
            group.attrs["name"] = comparison.name
            create_dataset(group, "real_length", data=np.asarray(comparison.real_length, np.int64))
            create_dataset(group, "real_return", data=np.asarray(comparison.real_return, np.float64))
            create_dataset(group, "real_seed", data=np.asarray(real[comparison.name]["seed"], np.uint32))
            create_dataset(group, "dream_length", data=np.asarray(comparison.dream_length, np.int64))
            create_dataset(group, "dream_return", data=np.asarray(comparison.dream_return, np.float64))
        for name in ("horizon", "nll", "copy_nll", "done_auc", "transitions", "done_steps", "deaths", "predicted_deaths"):
            create_dataset(f, f"open_loop/{name}", data=getattr(result, name))


def _plans(config: FidelityConfig, env_id: str, space: Any, controller_path: Any) -> list[PolicyPlan]:
    import gymnasium.spaces as spaces

    from wm.envs.policies import PolicySpec

    plans = []
    for name in config.policy_names():
        if name == "random":
            plans.append(PolicyPlan("random", PolicySpec("random"), record_frames=True))
        elif not isinstance(space, spaces.Discrete):
            raise ConfigError(f"Constant policies need a discrete action space; {env_id}'s is {space}. Use --policies random.")
        else:
            plans += [PolicyPlan(f"always {action_name(env_id, a)}", PolicySpec("constant", {"action": a}), record_frames=False)
                      for a in range(int(space.n))]
    if controller_path is not None:
        plans.append(PolicyPlan("controller", PolicySpec("controller", {"controller": str(controller_path), "params": config.params}), False))
    if not any(plan.record_frames for plan in plans):
        raise ConfigError("The open-loop evaluation reads the random process's real episodes; keep 'random' in --policies.")
    return plans


def _real_episodes(config: FidelityConfig, seed: int, env_id: str, plans: list[PolicyPlan], world: Any, avoid: set[int]) -> tuple[dict, list]:
    """Every plan's real episodes (lengths, returns, seeds), and the random ones encoded for the open loop."""
    from wm.episodes import EpisodeTask, run_episode

    run_seed, indices = evaluation_seeds(seed, config.episodes, avoid, purpose=REAL_EPISODES)
    planned = [(plan, EpisodeTask(env_id, int(config.max_steps), plan.spec, run_seed, index, dict(config.env_kwargs),
                                  record_frames=plan.record_frames)) for plan in plans for index in indices]
    tasks = [task for _, task in planned]
    real = {plan.name: {"length": [], "return": [], "seed": [], "run_seed": run_seed, "indices": indices} for plan in plans}
    held_out = []
    progress = Progress(len(tasks), description=f"fidelity {env_id} real episodes", unit="ep", secondary_unit="frames")
    executor = make_executor(config.backend, config.workers, ray_address=config.ray_address, task_timeout=config.task_timeout)
    try:
        with executor:
            for (plan, _), episode in zip(planned, executor.map_ordered(run_episode, tasks)):
                real[plan.name]["length"].append(episode.length)
                real[plan.name]["return"].append(episode.total_return)
                real[plan.name]["seed"].append(episode.seed)
                if plan.record_frames:
                    held_out.append(_encode(world, episode, seed))
                progress.update(1, secondary=episode.length)
    except KeyboardInterrupt:
        raise Interrupted("Interrupted while playing the real episodes; nothing was written.") from None
    finally:
        progress.close()
    for values in real.values():
        for key in ("length", "return", "seed"):
            values[key] = np.asarray(values[key], np.float64 if key == "return" else np.int64)
    return real, held_out


def _encode(world: Any, episode: Any, seed: int) -> Any:
    """A real episode as the MDN-RNN reads it: z sampled from the VAE's q(z | x), actions as model inputs."""
    from wm.worldmodels.vae import frames_to_input

    mu, logvar = [], []
    for begin in range(0, episode.length, 256):
        m, lv = world.vae.encode(frames_to_input(episode.obs[begin : begin + 256]))
        mu.append(m.numpy())
        logvar.append(lv.numpy())
    mu, logvar = np.concatenate(mu), np.concatenate(logvar)

    noise = generator(seed, LATENT_NOISE, int(episode.index)).standard_normal(mu.shape)
    z = (mu + np.exp(0.5 * logvar) * noise).astype(np.float32)
    action_dim, discrete = int(world.mdnrnn.action_dim), world.discrete_actions
    return HeldOutEpisode(z=z, action=memory_inputs(episode.action, action_dim, discrete), done=np.asarray(episode.terminated, bool))


def _dreams(config: FidelityConfig, seed: int, dream: Any, plan: PolicyPlan, env_id: str, space: Any, world: Any,
            real: Mapping[str, Any], controller: Any) -> tuple[np.ndarray, np.ndarray]:
    """`episodes` dreams of one policy, all policies meeting the same dream keys; dream i acts as real episode i did."""
    keys = keys_from_seeds(seed, [(DREAMS, i) for i in range(config.episodes)])
    if plan.name == "controller":
        from wm.worldmodels.controller_artifact import actor_of, dream_with_actor, layout_of

        return dream_with_actor(dream, layout_of(controller), actor_of(controller, config.params))(keys)
    from wm.worldmodels.dream.actions import policy_action_table

    table = policy_action_table(plan.spec, env_id, space, real["run_seed"], real["indices"], config.max_steps,
                                int(world.mdnrnn.action_dim), world.discrete_actions)
    return dream.run_actions(keys, table)


STAGE = Stage(
    STAGE_NAME, compute, FidelityConfig, output_kind="fidelity", version=STAGE_VERSION,
    help="Measure how well a dream agrees with the real environment: real vs dream episode lengths per policy, open-loop error vs horizon.",
    inputs={
        "vae": Input("vae", "VAE artifact (with --mdnrnn; not needed with --controller).", optional=True),
        "mdnrnn": Input("mdnrnn", "MDN-RNN artifact trained on that VAE's latents.", optional=True),
        "controller": Input("controller", "Controller artifact: its world model and training rules are measured, and it is one of the policies.",
                            optional=True),
    },
    default_out=default_out,
    prepare=prepare,
)
