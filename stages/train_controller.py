"""Stage `train-controller`: the World Models controller C, trained in the dream or in the real environment.

    wm train-controller --vae vae.h5 --mdnrnn mdnrnn.h5 --preset doom-takecover --out controller.h5   # CMA-ES in the dream
    wm train-controller --vae vae.h5 --mdnrnn mdnrnn.h5 --real --out controller.h5                     # CMA-ES, real environment
    wm train-controller --vae vae.h5 --mdnrnn mdnrnn.h5 --algo ppo --out controller.h5                 # PPO in the dream

CMA-ES (the paper, section 3.3 and A.3): each generation asks `population` candidate parameter
vectors; a candidate's fitness is its mean return over `rollouts` episodes. `--dream` runs all
population x rollouts dreams of a generation in one compiled batch (`wm.worldmodels.dream.batched`); `--real`
spreads the episodes over the executor (local processes, or Ray). All candidates of a generation
meet the same episode seeds (common random numbers), new ones every generation. Every
`real_every` generations the distribution's mean is scored in the real environment (and in the
dream), so the dream-to-real gap shows while training. The search state is checkpointed every
generation: the same command after a kill resumes.

PPO (`--algo ppo`, dream only): an actor-critic on the controller's input, trained on `ppo_dreams`
dreams stepped together (`wm.worldmodels.ppo`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from wm.config import StageConfig, option
from wm.envs import default_max_steps
from wm.errors import ConfigError
from wm.progress import log
from wm.runner import Input, Output, Stage
from wm.worldmodels.controller import TrainingSetting, controller_layout

STAGE_NAME = "train-controller"
STAGE_VERSION = 1


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
        from wm.worldmodels.dream.rules import check_temperature

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


def prepare(config: TrainControllerConfig, inputs: Mapping[str, Any]) -> TrainControllerConfig:
    """V and M must belong together."""
    from wm.worldmodels.dream.world import check_pair

    check_pair(inputs["vae"], inputs["mdnrnn"])
    return config


def compute(config: TrainControllerConfig, inputs: Mapping[str, Any], seed: int, output: Output) -> None:
    """Train a controller in the world model `inputs['vae']` + `inputs['mdnrnn']` and write the `controller` artifact."""
    from wm.worldmodels.controller_artifact import write_controller
    from wm.worldmodels.dream.batched import Dream
    from wm.worldmodels.dream.world import world_model_of_pair

    vae, mdnrnn = inputs["vae"], inputs["mdnrnn"]
    env_id = mdnrnn.attr("env_id")
    if config.max_steps is None:  # filled after the fingerprint (None: "the environment's"), so older artifacts stay up to date
        config = output.config = dataclasses.replace(config, max_steps=default_max_steps(env_id))
    world = world_model_of_pair(vae, mdnrnn, with_vae=False)
    layout = controller_layout(env_id, mdnrnn.attr("action_space_json"), world.latent_dim, world.units, config.features)
    rules = _rules(config, world.mdnrnn)
    dream = Dream(world.mdnrnn, world.initial_mu, world.initial_logvar, rules) if rules else None
    setting = TrainingSetting(config, seed, env_id, int(config.max_steps), layout, rules, dream, str(vae.path), str(mdnrnn.path))
    log(f"Controller: {layout.features} -> {layout.outputs} output(s), {layout.num_params} parameters; "
        + (f"dream rules {rules}." if rules else "no dream (the MDN-RNN has neither a reward nor a done head)."))
    if config.algo == "cmaes":
        from wm.worldmodels.cmaes import train_cmaes

        history, seeds, extra = train_cmaes(setting, output)
    else:
        from wm.worldmodels.ppo import train_ppo

        history, seeds, extra = train_ppo(setting, output)
    with output.artifact() as f:
        write_controller(f, layout=layout, algo=config.algo, trained_in="dream" if config.dream else "real", rules=rules,
                         vae=vae, mdnrnn=mdnrnn, history=history, training_env_seeds=seeds, **extra)
    output.checkpoint().remove()
    last = history[-1]
    scores = [f"{key} {last[key]:.1f}" for key in ("population/best", "population/mean", "dream/return", "mean_params/real_return") if key in last]
    log(f"Wrote {output.path}: {', '.join(scores)}; learning curve in {output.log_folder / 'learning.png'}.")


def _rules(config: TrainControllerConfig, mdnrnn: Any) -> Any:
    """The dream's rules; None when training in the real environment with an MDN-RNN that cannot score a dream."""
    from wm.worldmodels.dream.rules import dream_rules

    try:
        return dream_rules(mdnrnn, temperature=config.temperature, max_steps=config.max_steps, reward=config.dream_reward,
                           sample_done=config.sample_done, done_threshold=config.done_threshold)
    except ConfigError:
        if config.dream:
            raise
        return None


STAGE = Stage(
    STAGE_NAME, compute, TrainControllerConfig, output_kind="controller", version=STAGE_VERSION,
    help="Train the World Models controller (CMA-ES or PPO) inside the MDN-RNN's dream or in the real environment.",
    inputs={"vae": Input("vae", "Trained VAE artifact (wm train-vae)."),
            "mdnrnn": Input("mdnrnn", "MDN-RNN artifact trained on that VAE's latents (wm train-mdnrnn).")},
    default_out=default_out,
    prepare=prepare,
)
