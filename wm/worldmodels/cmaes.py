"""CMA-ES from the `cma` package, resumable without pickle.

`cma` draws its samples from NumPy's global generator. Here every generation's `ask()` first seeds
that generator from (seed, generation), so a generation's candidates depend only on the strategy's
state and the generation number, never on other code that touched NumPy's generator. The state
itself (mean, step size, covariance, evolution paths) is then a function of the fitness values told
so far: a resumed run rebuilds it by replaying the recorded fitnesses, and checks that it arrived at
the recorded mean.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

import numpy as np

from wm import rng
from wm.errors import Interrupted, OutputExistsError
from wm.parallel import make_executor
from wm.progress import Progress, log, plural
from wm.training import MetricsLog, plot_learning_curve

# Seed purposes (wm.episodes.purpose_seed / wm.rng keys): every use of the run seed draws its own episodes.
DREAM_TRAIN, REAL_TRAIN, DREAM_SCORE, REAL_SCORE = 1, 2, 3, 4


class ResumableCMAES:
    """Maximises a fitness with CMA-ES (sigma0, population); `ask()` -> candidates [P, N], `tell(fitness [P])`."""

    def __init__(self, num_params: int, sigma0: float, population: int, seed: int):
        import cma

        self.seed = int(seed)
        self.generation = 0
        self.es = cma.CMAEvolutionStrategy(
            np.zeros(num_params), float(sigma0),
            {"popsize": int(population), "seed": self._generation_seed(-1), "verbose": -9},
        )
        self._candidates: np.ndarray | None = None

    def _generation_seed(self, generation: int) -> int:
        return rng.int_seed(self.seed, 0xC3A, generation + 1) or 1  # cma treats seed 0 as "pick one"

    def ask(self) -> np.ndarray:
        """This generation's candidates [population, num_params] (the same ones again until `tell`)."""
        if self._candidates is None:
            np.random.seed(self._generation_seed(self.generation))
            self._candidates = np.asarray(self.es.ask())
        return self._candidates

    def tell(self, fitness: np.ndarray) -> None:
        """Report the fitness (higher is better) of the asked candidates."""
        candidates = self.ask()
        self.es.tell(list(candidates), list(-np.asarray(fitness, np.float64)))
        self._candidates = None
        self.generation += 1

    @property
    def mean(self) -> np.ndarray:
        """The distribution's mean: the strategy's current best guess."""
        return np.asarray(self.es.mean, np.float64).copy()

    @property
    def sigma(self) -> float:
        return float(self.es.sigma)

    def replay(self, fitness_history: np.ndarray, expected_mean: np.ndarray, where: str) -> None:
        """Rebuild the state of a run that told `fitness_history` [generations, population]."""
        for fitness in np.asarray(fitness_history):
            self.ask()
            self.tell(fitness)
        if not np.allclose(self.mean, expected_mean, rtol=0, atol=1e-9):
            raise OutputExistsError(
                f"{where} could not be replayed to the recorded CMA-ES state (another cma version?); pass --force to "
                "discard it and start again."
            )


def _dream_keys(seed: int, purpose: int, generation: int, count: int) -> np.ndarray:
    return rng.keys_from_seeds(seed, [(purpose, generation, i) for i in range(count)])


def real_returns(setting: Any, executor: Any, params: np.ndarray, run_seed: int, episodes: int) -> tuple[np.ndarray, list[int]]:
    """Returns [candidates, episodes] of each parameter vector over the same `episodes` real episodes, and their env seeds."""
    from wm.envs.policies import PolicySpec
    from wm.episodes import EpisodeTask, run_episode

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


class Search:
    """A CMA-ES run's state between generations: the strategy, the fitnesses told, the history, the real seeds, the best candidate."""

    def __init__(self, setting: Any, checkpoint: Any):
        config = setting.config
        self.strategy = ResumableCMAES(setting.layout.num_params, config.sigma0, config.population, setting.seed)
        self.checkpoint = checkpoint
        self.fitness: list[np.ndarray] = []
        self.history: list[dict] = []
        self.seeds: list[int] = []
        self.best_params, self.best_fitness = np.zeros(setting.layout.num_params), -np.inf
        saved = checkpoint.load()
        if saved is not None:
            state, arrays = saved
            log(f"Resuming from {checkpoint.path}: replaying {plural(len(arrays['fitness']), 'generation')} of CMA-ES.")
            self.strategy.replay(arrays["fitness"], arrays["mean"], str(checkpoint.path))
            self.fitness, self.history, self.seeds = list(arrays["fitness"]), state["history"], [int(s) for s in state["seeds"]]
            self.best_params = arrays["best_params"]
            self.best_fitness = max(row["population/best"] for row in self.history)

    def tell(self, candidates: np.ndarray, fitness: np.ndarray) -> None:
        """Tell the strategy a generation's fitness (higher is better) and keep the best candidate seen."""
        self.strategy.tell(fitness)
        self.fitness.append(fitness)
        if fitness.max() > self.best_fitness:
            self.best_fitness, self.best_params = float(fitness.max()), candidates[int(fitness.argmax())].copy()

    def record(self, row: dict) -> None:
        """Append the generation's history row and checkpoint the run."""
        self.history.append(row)
        self.checkpoint.save({"history": self.history, "seeds": self.seeds},
                             {"fitness": np.stack(self.fitness), "mean": self.strategy.mean, "best_params": self.best_params})


def train_cmaes(setting: Any, output: Any) -> tuple[list, np.ndarray, dict]:
    """Run (or resume) CMA-ES (the paper, section 3.3 and A.3); returns the history, the real seeds used, and the parameters to store.

    Each generation asks `population` candidates; a candidate's fitness is its mean return over
    `rollouts` episodes, all candidates meeting the same episodes (new ones every generation): in the
    dream, all population x rollouts dreams in one compiled batch; in the real environment, over the
    executor. Every `real_every` generations the mean is scored in the real environment (and the dream).
    """
    from wm.episodes import purpose_seed

    config, layout, seed = setting.config, setting.layout, setting.seed
    search = Search(setting, output.checkpoint())
    strategy = search.strategy
    needs_executor = not config.dream or config.real_every > 0
    executor = make_executor(config.backend, config.workers, ray_address=config.ray_address, task_timeout=config.task_timeout) if needs_executor else None
    metrics = MetricsLog(output.log_folder)
    progress = Progress(config.generations, description="train-controller cmaes", unit="gen", initial=strategy.generation, secondary_unit="episodes")
    try:
        for generation in range(strategy.generation, config.generations):
            started = time.monotonic()
            candidates = strategy.ask()
            if config.dream:
                keys = np.tile(_dream_keys(seed, DREAM_TRAIN, generation, config.rollouts), (config.population, 1))
                returns, lengths = setting.dream.run_linear(layout, candidates, np.repeat(np.arange(config.population), config.rollouts), keys)
                returns = returns.reshape(config.population, config.rollouts).astype(np.float64)
            else:
                returns, used = real_returns(setting, executor, candidates, purpose_seed(seed, REAL_TRAIN, generation), config.rollouts)
                search.seeds += used
            fitness = returns.mean(axis=1)
            search.tell(candidates, fitness)
            row: dict[str, Any] = {
                "generation": generation + 1, "population/best": float(fitness.max()), "population/mean": float(fitness.mean()),
                "population/worst": float(fitness.min()), "cmaes/sigma": strategy.sigma, "seconds": time.monotonic() - started,
            }
            if config.dream:
                row["dream/steps"] = int(lengths.sum())
            if config.real_every and ((generation + 1) % config.real_every == 0 or generation + 1 == config.generations):
                row.update(_score_mean(setting, executor, strategy.mean, generation, search.seeds))
                progress.write(_score_line(row, generation))
            search.record(row)
            metrics.write(row, generation + 1)
            plot_learning_curve(search.history, output.log_folder / "learning.png", f"CMA-ES {'in the dream' if config.dream else 'in the real environment'}", "generation")
            progress.update(1, secondary=config.population * config.rollouts,
                            postfix=f"best {row['population/best']:.1f}, mean {row['population/mean']:.1f}, sigma {strategy.sigma:.4f}")
    except KeyboardInterrupt:
        raise Interrupted(f"Interrupted: {strategy.generation} of {config.generations} generations are done and checkpointed in "
                          f"{search.checkpoint.folder}; run the same command again to resume.") from None
    finally:
        progress.close()
        if executor is not None:
            executor.close()
    return search.history, np.asarray(search.seeds, np.uint32), {"params": {"mean": strategy.mean, "best": search.best_params}}


def _score_line(row: Mapping[str, Any], generation: int) -> str:
    return (f"generation {generation + 1}: population best {row['population/best']:.1f}, mean {row['population/mean']:.1f}; "
            f"mean parameters: real {row['mean_params/real_return']:.1f} +- {row['mean_params/real_return_std']:.1f}"
            + (f", dream {row['mean_params/dream_return']:.1f}" if "mean_params/dream_return" in row else ""))


def _score_mean(setting: Any, executor: Any, mean: np.ndarray, generation: int, seeds: list[int]) -> dict[str, float]:
    """The distribution mean's return in the real environment (and in the dream), for the learning curve."""
    from wm.episodes import purpose_seed

    config = setting.config
    real, used = real_returns(setting, executor, mean[None], purpose_seed(setting.seed, REAL_SCORE, generation), config.real_episodes)
    seeds += used
    row = {"mean_params/real_return": float(real.mean()), "mean_params/real_return_std": float(real.std())}
    if setting.dream is not None:
        keys = _dream_keys(setting.seed, DREAM_SCORE, generation, config.dream_score_episodes)
        returns, _ = setting.dream.run_linear(setting.layout, mean[None], np.zeros(len(keys), np.int64), keys)
        row["mean_params/dream_return"] = float(returns.mean())
        row["mean_params/dream_return_std"] = float(returns.std())
    return row
