"""One CMA-ES generation in the dream: all dreams batched against one dream at a time.

The doom-takecover model sizes (z = 64, LSTM 512 with a death head, controller [z, c, h] -> 1,
1,088 parameters), population 64 x 16 rollouts = 1,024 dreams of 1,000 steps each (the death
rule is off, so that every dream runs all 1,000 steps and both ways do the same work):

  batched           - `Dream.run_linear`: every candidate's dreams in one compiled tf.while_loop,
                      as `wm train-controller --dream` runs a generation;
  one at a time     - `Dream.run_one_at_a_time`: candidate after candidate, dream after dream, one
                      compiled step per call from Python, as the original code stepped its dreams
                      (the original also sampled the mixture in Python, which is slower still).

One at a time takes about a millisecond a step, so a whole generation would take over 15 minutes;
`--sequential-dreams` of the 1,024 are timed and the time scaled to the whole generation (the cost
of a dream does not depend on which dream it is: every one runs 1,000 steps). The returns of those
dreams are checked against the batched run. Target: batched at least 30x faster.

    python bench/dream.py
    python bench/dream.py --sequential-dreams 64 --steps 1000
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def generation(population: int, rollouts: int, steps: int):
    """One CMA-ES generation's work in the doom-takecover dream, death rule off (every dream runs `steps`).

    Returns the Dream (a fresh MDN-RNN, z = 64, LSTM 512, death head), the controller layout, random
    candidate parameters (population x 1,088), each dream's candidate index and its key.
    """
    from wm import rng
    from wm.worldmodels.dream.batched import Dream
    from wm.worldmodels.dream.rules import DreamRules
    from wm.worldmodels.controller import controller_layout
    from wm.worldmodels.mdnrnn import build_mdnrnn
    from wm.tfsetup import keras

    keras().utils.set_random_seed(0)
    mdnrnn = build_mdnrnn(latent_dim=64, action_dim=3, units=512, num_mixtures=5, reward_head=False, done_head=True)
    generator = np.random.default_rng(0)
    initial = generator.normal(size=(100, 64)).astype(np.float32)
    rules = DreamRules(temperature=1.15, max_steps=steps, reward="survival", done="none")
    dream = Dream(mdnrnn, initial, np.full_like(initial, -2.0), rules)
    layout = controller_layout("doom-takecover", '{"type": "Discrete", "n": 3, "start": 0}', 64, 512)
    params = generator.normal(0, 0.1, (population, layout.num_params)).astype(np.float32)
    candidate = np.repeat(np.arange(population), rollouts)
    keys = rng.keys_from_seeds(0, [(r,) for r in range(rollouts)] * population)
    return dream, layout, params, candidate, keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--population", type=int, default=64)
    parser.add_argument("--rollouts", type=int, default=16)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--sequential-dreams", type=int, default=32, help="dreams timed one at a time (scaled to the generation)")
    parser.add_argument("--repeats", type=int, default=2, help="batched generations timed (the best is kept)")
    args = parser.parse_args()

    dream, layout, params, candidate, keys = generation(args.population, args.rollouts, args.steps)
    dreams = len(candidate)
    print(f"One CMA-ES generation in the dream: {args.population} candidates x {args.rollouts} rollouts = {dreams} dreams "
          f"of {args.steps} steps; MDN-RNN z=64, LSTM 512; controller {layout.num_params} parameters.", flush=True)

    dream.run_linear(layout, params[:1], candidate[:2] * 0, keys[:2])  # compile
    batched_times = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        returns, lengths = dream.run_linear(layout, params, candidate, keys)
        batched_times.append(time.perf_counter() - started)
    batched = min(batched_times)
    assert (lengths == args.steps).all()
    print(f"  batched: {batched:.1f} s a generation ({dreams * args.steps / batched / 1e3:.0f}k dream steps/s)", flush=True)

    # The timed sequential dreams spread over the candidates: dream i of the generation every `stride`.
    chosen = np.linspace(0, dreams - 1, args.sequential_dreams).astype(int)
    dream.run_one_at_a_time(layout, params, candidate[:1], keys[:1])  # compile (and warm up) the single step
    started = time.perf_counter()
    one_returns, one_lengths = dream.run_one_at_a_time(layout, params, candidate[chosen], keys[chosen])
    sequential_measured = time.perf_counter() - started
    sequential = sequential_measured * dreams / len(chosen)
    np.testing.assert_array_equal(one_lengths, lengths[chosen])
    np.testing.assert_allclose(one_returns, returns[chosen])
    print(f"  one at a time: {sequential_measured:.1f} s for {len(chosen)} dreams ({len(chosen) * args.steps / sequential_measured:.0f} "
          f"dream steps/s), {sequential:.0f} s for the generation of {dreams}", flush=True)
    ratio = sequential / batched
    print(f"  speed-up: {ratio:.1f}x (target >= 30x): {'met' if ratio >= 30 else 'NOT met'}")


if __name__ == "__main__":
    main()
