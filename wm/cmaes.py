"""CMA-ES from the `cma` package, resumable without pickle.

`cma` draws its samples from NumPy's global generator. Here every generation's `ask()` first seeds
that generator from (seed, generation), so a generation's candidates depend only on the strategy's
state and the generation number, never on other code that touched NumPy's generator. The state
itself (mean, step size, covariance, evolution paths) is then a function of the fitness values told
so far: a resumed run rebuilds it by replaying the recorded fitnesses, and checks that it arrived at
the recorded mean.
"""

from __future__ import annotations

import numpy as np

from wm.errors import OutputExistsError


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
        sequence = np.random.SeedSequence(self.seed, spawn_key=(0xC3A, generation + 1))
        return int(sequence.generate_state(1, np.uint32)[0]) or 1  # cma treats seed 0 as "pick one"

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
