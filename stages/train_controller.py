"""Stage `train-controller`: the World Models controller C, trained in the dream or in the real environment.

    wm train-controller --vae vae.h5 --mdnrnn mdnrnn.h5 --preset doom-takecover --out controller.h5   # CMA-ES in the dream
    wm train-controller --vae vae.h5 --mdnrnn mdnrnn.h5 --real --out controller.h5                     # CMA-ES, real environment
    wm train-controller --vae vae.h5 --mdnrnn mdnrnn.h5 --algo ppo --out controller.h5                 # PPO in the dream

CMA-ES (the paper, section 3.3 and A.3): each generation asks `population` candidate parameter
vectors; a candidate's fitness is its mean return over `rollouts` episodes. `--dream` runs all
population x rollouts dreams of a generation in one compiled batch (`wm.dream.batched`); `--real`
spreads the episodes over the executor (local processes, or Ray). All candidates of a generation
meet the same episode seeds (common random numbers), new ones every generation. Every
`real_every` generations the distribution's mean is scored in the real environment (and in the
dream), so the dream-to-real gap shows while training. The search state is checkpointed every
generation: the same command after a kill resumes.

PPO (`--algo ppo`, dream only): an actor-critic on the controller's input, trained on `ppo_dreams`
dreams stepped together (`wm.ppo`).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from wm.config import StageConfig, config_to_json, option
from wm.errors import ConfigError, Interrupted, OutputExistsError
from wm.stage import Stage, StageResult, log, plural, prepare_output
from wm.training import check_finite

STAGE_NAME = "train-controller"
STAGE_VERSION = 1
# Seed purposes (wm.episodes.purpose_seed / wm.rng keys): every use of the run seed draws its own episodes.
DREAM_TRAIN, REAL_TRAIN, DREAM_SCORE, REAL_SCORE, PPO_DREAMS = 1, 2, 3, 4, 5


@dataclass(frozen=True)
class TrainControllerConfig(StageConfig):
    """Settings of `wm train-controller` (defaults: the paper's CMA-ES, trained in the dream)."""

    algo: str = option("cmaes", "Training algorithm: cmaes (the paper) or ppo (dream only).", choices=("cmaes", "ppo"))
    dream: bool = option(True, "--dream trains inside the MDN-RNN's dream; --real in the real environment (CMA-ES only).", flag="--dream/--real")
    temperature: float = option(1.0, "Temperature tau of the dream (logits / tau, sigma * sqrt(tau)); the paper's Doom agent: 1.15.")
    max_steps: Optional[int] = option(None, "Step cap of an episode or dream; default: the environment's (2100 doom-takecover, 1000 carracing).")
    dream_reward: str = option(
        "auto", "Dream reward: survival (+1 a step, DoomTakeCover), head (the MDN-RNN's reward head) or auto (head if there is one).",
        choices=("auto", "survival", "head"),
    )
    sample_done: bool = option(False, "End a dream with the predicted death probability instead of when it exceeds done_threshold.")
    done_threshold: float = option(0.5, "A dream ends when the predicted death probability exceeds this (the paper: 0.5).")
    features: str = option("auto", "Controller input: auto (the paper: [z, c, h] for Doom, [z, h] otherwise), z, zh or zch.", choices=("auto", "z", "zh", "zch"))
    generations: int = option(200, "CMA-ES generations.")
    population: int = option(64, "CMA-ES population size (the paper: 64).")
    rollouts: int = option(16, "Episodes per candidate; the fitness is their mean return (the paper: 16).")
    sigma0: float = option(0.1, "CMA-ES initial step size (the paper: 0.1).")
    real_every: int = option(25, "Score the distribution's mean in the real environment every this many generations (0: never).")
    real_episodes: int = option(16, "Real episodes per score of the mean (the paper used 1024; 16 keeps it affordable on a CPU).")
    dream_score_episodes: int = option(256, "Dreams per score of the mean in the dream, beside its real score.")
    z_mode: str = option("sample", "In the real environment, z is sampled from q(z | x) (the paper) or its mean.", choices=("sample", "mean"))
    env_kwargs: dict = option({}, "Extra keyword arguments for the real environment, as JSON.")
    ppo_iterations: int = option(300, "PPO: iterations (collect, then update).")
    ppo_dreams: int = option(256, "PPO: dreams stepped together.")
    ppo_steps: int = option(64, "PPO: steps collected from every dream per iteration.")
    ppo_epochs: int = option(4, "PPO: passes over each iteration's samples.")
    ppo_minibatch: int = option(1024, "PPO: samples per update.")
    ppo_clip: float = option(0.2, "PPO: clipping epsilon of the probability ratio.")
    ppo_learning_rate: float = option(3e-4, "PPO: Adam learning rate.")
    ppo_layers: str = option("256,256,128,64", "PPO: widths of the actor's and the critic's hidden layers (the seed document's actor).")
    gamma: float = option(0.99, "PPO: discount.")
    gae_lambda: float = option(0.95, "PPO: lambda of generalised advantage estimation.")
    entropy_coef: float = option(0.01, "PPO: weight of the entropy bonus.")
    value_coef: float = option(0.5, "PPO: weight of the value loss.")
    workers: int = option(2, "Parallel worker processes for real episodes (does not change the result).", fingerprint=False)
    backend: str = option("process", "Where real episodes run: process, serial or ray.", choices=("process", "serial", "ray"), fingerprint=False)
    ray_address: Optional[str] = option(None, "Address of a running Ray cluster for --backend ray.", fingerprint=False)
    task_timeout: float = option(1800.0, "Seconds without any real episode finishing after which the workers are declared hung.", fingerprint=False)

    PRESETS = {
        "tiny": {
            "generations": 3, "population": 4, "rollouts": 2, "real_every": 2, "real_episodes": 2, "dream_score_episodes": 8,
            "max_steps": 40, "ppo_iterations": 2, "ppo_dreams": 8, "ppo_steps": 8, "ppo_minibatch": 32, "ppo_layers": "16,16",
        },
        "demo": {"temperature": 1.15, "generations": 15, "population": 16, "rollouts": 8, "real_every": 5, "real_episodes": 8},
        "doom-takecover": {"temperature": 1.15},
        "carracing": {"dream": False},
        "paper": {"temperature": 1.15, "real_episodes": 1024},
    }

    def validate(self) -> None:
        from wm.dream.rules import check_temperature

        check_temperature(self.temperature)
        if self.population < 2:
            raise ConfigError(f"'population' must be at least 2 (CMA-ES ranks candidates against each other); got {self.population}.")
        if self.algo == "ppo" and not self.dream:
            raise ConfigError("PPO trains inside the dream only; drop --real or use --algo cmaes.")
        self.require_at_least(1, "generations", "rollouts", "real_episodes", "dream_score_episodes", "max_steps", "workers",
                              "ppo_iterations", "ppo_dreams", "ppo_steps", "ppo_epochs", "ppo_minibatch")
        if not self.ppo_layers_tuple():
            raise ConfigError(f"'ppo_layers' must be comma-separated positive widths such as 256,256,128,64; got {self.ppo_layers!r}.")
        self.require_at_least(0, "real_every")
        self.require_positive("sigma0", "ppo_clip", "ppo_learning_rate", "task_timeout")
        self.require_fraction("done_threshold")
        for name in ("gamma", "gae_lambda"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"'{name}' must be between 0 and 1; got {getattr(self, name)}.")


    def ppo_layers_tuple(self) -> tuple[int, ...]:
        """`ppo_layers` as widths; empty if it is not a list of positive integers."""
        try:
            widths = tuple(int(part) for part in self.ppo_layers.split(","))
        except ValueError:
            return ()
        return widths if widths and min(widths) > 0 else ()


def default_out(config: TrainControllerConfig) -> str:
    return "artifacts/controller.h5"


@dataclass
class Setting:
    """What both algorithms need: the world model, the controller's layout, the dream and the run's identity."""

    config: TrainControllerConfig
    seed: int
    env_id: str
    max_steps: int
    layout: Any
    rules: Any  # DreamRules, or None when the MDN-RNN cannot score a dream (no reward and no done head)
    dream: Any  # wm.dream.batched.Dream, or None
    vae_path: str
    mdnrnn_path: str
    log_folder: Path


def run(
    config: TrainControllerConfig,
    *,
    out: str | Path,
    seed: int,
    inputs: Mapping[str, str | Path],
    force: bool = False,
) -> StageResult:
    """Train a controller in the world model `inputs['vae']` + `inputs['mdnrnn']` and write the `controller` artifact `out`."""
    from wm.dream.world import check_pair
    from wm.envs import default_max_steps
    from wm.io.artifact import open_artifact, write_root_attributes, writing_artifact
    from wm.training import run_folders

    out = Path(out)
    with open_artifact(inputs["vae"], "vae") as vae, open_artifact(inputs["mdnrnn"], "mdnrnn") as mdnrnn:
        check_pair(vae, mdnrnn)
        refs = [vae.input_ref("vae"), mdnrnn.input_ref("mdnrnn")]
        fingerprint, up_to_date = prepare_output(STAGE_NAME, STAGE_VERSION, config, refs, seed, out, force)
        if up_to_date:
            return StageResult(out, fingerprint, "up-to-date")
        env_id = mdnrnn.attr("env_id")
        if config.max_steps is None:
            config = dataclasses.replace(config, max_steps=default_max_steps(env_id))
        log(f"wm {STAGE_NAME}, seed {seed}, config: {config_to_json(config)}")

        from wm.dream.batched import Dream
        from wm.dream.rules import dream_rules
        from wm.dream.world import load_world_model
        from wm.models.controller import controller_layout

        world = load_world_model(inputs["vae"], inputs["mdnrnn"], with_vae=False)
        layout = controller_layout(env_id, mdnrnn.attr("action_space_json"), world.latent_dim, world.units, config.features)
        try:
            rules = dream_rules(
                world.mdnrnn, temperature=config.temperature, max_steps=config.max_steps, reward=config.dream_reward,
                sample_done=config.sample_done, done_threshold=config.done_threshold,
            )
        except ConfigError:
            if config.dream:
                raise
            rules = None  # trained in the real environment; this MDN-RNN has nothing to score a dream with
        dream = Dream(world.mdnrnn, world.initial_mu, world.initial_logvar, rules) if rules else None
        checkpoint_folder, log_folder = run_folders(out)
        setting = Setting(config, seed, env_id, int(config.max_steps), layout, rules, dream, str(inputs["vae"]), str(inputs["mdnrnn"]), log_folder)
        log(f"Controller: {layout.features} -> {layout.outputs} output(s), {layout.num_params} parameters; "
            + (f"dream rules {rules}." if rules else "no dream (the MDN-RNN has neither a reward nor a done head)."))
        log_folder.mkdir(parents=True, exist_ok=True)
        if config.algo == "cmaes":
            history, seeds, extra = train_cmaes(setting, checkpoint_folder, fingerprint, force)
        else:
            history, seeds, extra = train_ppo(setting, out, fingerprint, force)

        from wm.controllers import write_controller

        with writing_artifact(out) as f:
            write_root_attributes(
                f, kind="controller", stage=STAGE_NAME, seed=seed, config_json=config_to_json(config), inputs=refs,
                fingerprint=fingerprint,
            )
            write_controller(
                f, layout=layout, algo=config.algo, trained_in="dream" if config.dream else "real", rules=rules,
                vae=vae, mdnrnn=mdnrnn, history=history, training_env_seeds=seeds, **extra,
            )
    shutil.rmtree(checkpoint_folder, ignore_errors=True)
    last = history[-1]
    scores = [f"{key} {last[key]:.1f}" for key in ("population/best", "population/mean", "dream/return", "mean_params/real_return") if key in last]
    log(f"Wrote {out}: {', '.join(scores)}; learning curve in {log_folder / 'learning.png'}.")
    return StageResult(out, fingerprint, "written")


# --- CMA-ES -------------------------------------------------------------------------------------


class SearchCheckpoint:
    """The resumable state of a CMA-ES run in `folder/checkpoint.h5`: every generation's fitness and the history.

    The CMA-ES state itself is rebuilt by replaying the fitnesses (`wm.cmaes`), so no pickle is needed.
    """

    def __init__(self, folder: Path, fingerprint: str):
        self.folder, self.fingerprint = Path(folder), fingerprint
        self.path = self.folder / "checkpoint.h5"

    def load(self, *, force: bool) -> dict[str, Any] | None:
        from wm.io.artifact import open_h5

        if not self.path.exists():
            return None
        try:
            with open_h5(self.path) as f:
                found = f.attrs.get("fingerprint")
                found = found.decode() if isinstance(found, bytes) else found
                if found == self.fingerprint:
                    return {
                        "fitness": f["fitness"][()], "mean": f["mean"][()], "best_params": f["best_params"][()],
                        "seeds": f["seeds"][()], "history": json.loads(f.attrs["history_json"]),
                    }
        except (OSError, KeyError) as exc:
            if not force:
                raise OutputExistsError(f"{self.path} cannot be resumed ({exc}); pass --force to discard it and start again.") from None
        if not force:
            raise OutputExistsError(
                f"{self.folder} holds an unfinished training run with other settings or inputs; run that command again to "
                "resume it, or pass --force to discard it."
            )
        shutil.rmtree(self.folder)
        return None

    def save(self, *, fitness: np.ndarray, mean: np.ndarray, best_params: np.ndarray, seeds: list[int], history: list) -> None:
        from wm.io.artifact import writing_artifact

        self.folder.mkdir(parents=True, exist_ok=True)
        with writing_artifact(self.path) as f:
            f.attrs["fingerprint"] = self.fingerprint
            f.attrs["history_json"] = json.dumps(history)
            f.create_dataset("fitness", data=np.asarray(fitness, np.float64))
            f.create_dataset("mean", data=mean)
            f.create_dataset("best_params", data=best_params)
            f.create_dataset("seeds", data=np.asarray(seeds, np.uint32))


def _dream_keys(seed: int, purpose: int, generation: int, count: int) -> np.ndarray:
    from wm.rng import keys_from_seeds

    return keys_from_seeds(seed, [(purpose, generation, i) for i in range(count)])


def _real_returns(setting: Setting, executor: Any, params: np.ndarray, run_seed: int, episodes: int) -> tuple[np.ndarray, list[int]]:
    """Returns [candidates, episodes] of each parameter vector over the same `episodes` real episodes, and their env seeds."""
    from wm.episodes import EpisodeTask, run_episode
    from wm.policies import PolicySpec

    config = setting.config
    tasks = [
        EpisodeTask(
            setting.env_id, setting.max_steps,
            PolicySpec("controller", {
                "vae": setting.vae_path, "mdnrnn": setting.mdnrnn_path, "layout_json": setting.layout.to_json(),
                "params": candidate.astype(float).tolist(), "z_mode": config.z_mode,
            }),
            run_seed, index, dict(config.env_kwargs), record_frames=False,
        )
        for candidate in params for index in range(episodes)
    ]
    results = list(executor.map_ordered(run_episode, tasks))
    returns = np.array([episode.total_return for episode in results], np.float64).reshape(len(params), episodes)
    return returns, sorted({int(episode.seed) for episode in results})


def train_cmaes(setting: Setting, checkpoint_folder: Path, fingerprint: str, force: bool) -> tuple[list, np.ndarray, dict]:
    """Run (or resume) CMA-ES; returns the history, the real seeds used, and the parameters to store."""
    from wm.cmaes import ResumableCMAES
    from wm.controllers import plot_learning_curve
    from wm.episodes import purpose_seed
    from wm.parallel import make_executor
    from wm.progress import Progress
    from wm.training import MetricsLog

    config, layout, seed = setting.config, setting.layout, setting.seed
    checkpoint = SearchCheckpoint(checkpoint_folder, fingerprint)
    search = ResumableCMAES(layout.num_params, config.sigma0, config.population, seed)
    saved = checkpoint.load(force=force)
    fitness_history: list[np.ndarray] = []
    history: list[dict] = []
    seeds: list[int] = []
    best_params, best_fitness = np.zeros(layout.num_params), -np.inf
    if saved is not None:
        log(f"Resuming from {checkpoint.path}: replaying {plural(len(saved['fitness']), 'generation')} of CMA-ES.")
        search.replay(saved["fitness"], saved["mean"], str(checkpoint.path))
        fitness_history, history, seeds = list(saved["fitness"]), saved["history"], [int(s) for s in saved["seeds"]]
        best_params = saved["best_params"]
        best_fitness = max(row["population/best"] for row in history)
    needs_executor = not config.dream or config.real_every > 0
    executor = make_executor(config.backend, config.workers, ray_address=config.ray_address, task_timeout=config.task_timeout) if needs_executor else None
    metrics = MetricsLog(setting.log_folder)
    progress = Progress(config.generations, description="train-controller cmaes", unit="gen", initial=search.generation,
                        secondary_unit="episodes")
    episodes_per_generation = config.population * config.rollouts
    try:
        for generation in range(search.generation, config.generations):
            started = time.monotonic()
            candidates = search.ask()
            if config.dream:
                keys = np.tile(_dream_keys(seed, DREAM_TRAIN, generation, config.rollouts), (config.population, 1))
                returns, lengths = setting.dream.run_linear(layout, candidates, np.repeat(np.arange(config.population), config.rollouts), keys)
                returns = returns.reshape(config.population, config.rollouts).astype(np.float64)
                steps = int(lengths.sum())
            else:
                returns, used = _real_returns(setting, executor, candidates, purpose_seed(seed, REAL_TRAIN, generation), config.rollouts)
                seeds += used
                steps = 0
            fitness = returns.mean(axis=1)
            search.tell(fitness)
            fitness_history.append(fitness)
            if fitness.max() > best_fitness:
                best_fitness, best_params = float(fitness.max()), candidates[int(fitness.argmax())].copy()
            row: dict[str, Any] = {
                "generation": generation + 1, "population/best": float(fitness.max()), "population/mean": float(fitness.mean()),
                "population/worst": float(fitness.min()), "cmaes/sigma": search.sigma, "seconds": time.monotonic() - started,
            }
            if config.dream:
                row["dream/steps"] = steps
            if config.real_every and ((generation + 1) % config.real_every == 0 or generation + 1 == config.generations):
                row.update(_score_mean(setting, executor, search.mean, generation, seeds))
                progress.write(
                    f"generation {generation + 1}: population best {row['population/best']:.1f}, mean {row['population/mean']:.1f}; "
                    f"mean parameters: real {row['mean_params/real_return']:.1f} +- {row['mean_params/real_return_std']:.1f}"
                    + (f", dream {row['mean_params/dream_return']:.1f}" if "mean_params/dream_return" in row else "")
                )
            history.append(row)
            checkpoint.save(fitness=np.stack(fitness_history), mean=search.mean, best_params=best_params, seeds=seeds, history=history)
            metrics.write(row, generation + 1)
            plot_learning_curve(history, setting.log_folder / "learning.png", f"CMA-ES {'in the dream' if config.dream else 'in the real environment'}", "generation")
            progress.update(1, secondary=episodes_per_generation,
                            postfix=f"best {row['population/best']:.1f}, mean {row['population/mean']:.1f}, sigma {search.sigma:.4f}")
    except KeyboardInterrupt:
        raise Interrupted(
            f"Interrupted: {search.generation} of {config.generations} generations are done and checkpointed in "
            f"{checkpoint.folder}; run the same command again to resume."
        ) from None
    finally:
        progress.close()
        if executor is not None:
            executor.close()
    return history, np.asarray(seeds, np.uint32), {"params": {"mean": search.mean, "best": best_params}}


def _score_mean(setting: Setting, executor: Any, mean: np.ndarray, generation: int, seeds: list[int]) -> dict[str, float]:
    """The distribution mean's return in the real environment (and in the dream), for the learning curve."""
    from wm.episodes import purpose_seed

    config = setting.config
    real, used = _real_returns(setting, executor, mean[None], purpose_seed(setting.seed, REAL_SCORE, generation), config.real_episodes)
    seeds += used
    row = {"mean_params/real_return": float(real.mean()), "mean_params/real_return_std": float(real.std())}
    if setting.dream is not None:
        keys = _dream_keys(setting.seed, DREAM_SCORE, generation, config.dream_score_episodes)
        returns, _ = setting.dream.run_linear(setting.layout, mean[None], np.zeros(len(keys), np.int64), keys)
        row["mean_params/dream_return"] = float(returns.mean())
        row["mean_params/dream_return_std"] = float(returns.std())
    return row


# --- PPO ------------------------------------------------------------------------------------------


def train_ppo(setting: Setting, out: Path, fingerprint: str, force: bool) -> tuple[list, np.ndarray, dict]:
    """Run (or resume) PPO inside the dream; returns the history, no real seeds, and the actor-critic to store."""
    from wm.controllers import plot_learning_curve
    from wm.dream.batched import DreamVector
    from wm.models.controller import features, tf_env_action, tf_model_action
    from wm.ppo import build_actor_critic, clipped_surrogate, gae, raw_output
    from wm.progress import Progress
    from wm.rng import keys_from_seeds
    from wm.tfsetup import keras, tensorflow
    from wm.training import MetricsLog, apply_if_finite, start_or_resume

    tf, keras = tensorflow(), keras()
    config, layout, seed = setting.config, setting.layout, setting.seed
    keras.utils.set_random_seed(seed)
    discrete = layout.discrete
    model = build_actor_critic(input_dim=layout.input_dim, actions=layout.action_dim if discrete else layout.outputs,
                               discrete=discrete, hidden=config.ppo_layers_tuple())
    optimizer = keras.optimizers.Adam(config.ppo_learning_rate, clipnorm=0.5)
    checkpoint, _, state = start_or_resume(out, fingerprint, model, optimizer, force=force)
    dreams = DreamVector(setting.dream, keys_from_seeds(seed, [(PPO_DREAMS, i) for i in range(config.ppo_dreams)]))
    running_return = np.zeros(config.ppo_dreams)
    if state.epoch:
        saved = checkpoint.load_extra()
        running_return = saved.pop("running_return")
        dreams.set_state(saved)
        log(f"Resuming from {checkpoint.path}: iteration {state.epoch + 1}.")

    @tf.function(jit_compile=False)
    def act(z, h, c, sample_seed):
        x = features(layout, z, h, c, concat=tf.concat)
        output, value = model(x)
        action = model.sample(output, sample_seed)
        log_prob, _ = model.log_prob_entropy(output, action)
        model_input = tf_model_action(layout, tf_env_action(layout, raw_output(layout, model, action)))
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

    metrics = MetricsLog(setting.log_folder)
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
                order = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(PPO_DREAMS, iteration, epoch))).permutation(samples)
                for begin in range(0, samples - minibatch + 1, minibatch):
                    rows = order[begin : begin + minibatch]
                    result = update(*(tf.constant(flat[name][rows]) for name in ("x", "action", "log_prob", "advantages", "targets")))
                    result = {key: value.numpy() for key, value in result.items()}
                    check_finite(result, name=STAGE_NAME, where=f"PPO iteration {iteration + 1}", checkpoint_folder=checkpoint.folder,
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
            checkpoint.save(state, model, optimizer, extra={**dreams.state(), "running_return": running_return})
            metrics.write(row, iteration + 1)
            plot_learning_curve(state.history, setting.log_folder / "learning.png", "PPO in the dream", "iteration")
            progress.update(1, secondary=samples, postfix=f"dream return {row.get('dream/return', float('nan')):.1f}")
    except KeyboardInterrupt:
        raise Interrupted(
            f"Interrupted: {state.epoch} of {config.ppo_iterations} iterations are done and checkpointed in {checkpoint.folder}; "
            "run the same command again to resume."
        ) from None
    finally:
        progress.close()
    return state.history, np.zeros(0, np.uint32), {"model": model}


STAGE = Stage(
    name=STAGE_NAME,
    run=run,
    config_class=TrainControllerConfig,
    output_kind="controller",
    version=STAGE_VERSION,
    help="Train the World Models controller (CMA-ES or PPO) inside the MDN-RNN's dream or in the real environment.",
    inputs={"vae": "vae", "mdnrnn": "mdnrnn"},
    default_out=default_out,
)
