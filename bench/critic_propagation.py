"""How fast a Dreamer critic learns values by bootstrapping: DreamerV2's critic against DreamerV3's, in one run.

A critic (the cartpole presets' 2 x 128 MLP) sees 800 fixed random feature vectors, standing in for the
imagined states of a batch, and one reward a step. Each update fits it to the 15-step return bootstrapped
from a critic, R = sum_{k<15} gamma^k + gamma^15 v(s), the way the lambda-returns reach past the horizon;
the true value is 1 / (1 - gamma) = 100 for gamma 0.99. Nothing else (no world model, no actor) is
involved, so the counts below are the critic's own speed. For each variant it prints how many updates the
mean value needs to reach 50 and 90, and the ratio to DreamerV2's.

    python bench/critic_propagation.py             # 4,000 updates per variant, about 2 minutes each on 2 cores

Variants: DreamerV2 (MSE on the value, ELU, bootstrapping from a target critic copied every 100 updates);
DreamerV3 (two-hot over 255 symexp bins, LayerNorm + SiLU, bootstrapping from the critic itself, regularised
towards its slow EMA copy, rate 0.02, weight 1) at the cartpole presets' critic lr 8e-5 and at 3e-4; and
DreamerV3 without the regulariser, to show its share. Last, both critics fitted to the fixed target 100
itself: what is left when the target does not move with the critic.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

GAMMA, HORIZON = 0.99, 15


@dataclass(frozen=True)
class Variant:
    name: str
    twohot: bool
    lr: float
    slow_reg: float  # weight of the regulariser towards the slow critic (DreamerV3), 0: none
    own_bootstrap: bool  # DreamerV3: the returns bootstrap from the critic itself; DreamerV2: from the target critic
    fixed_target: bool = False  # fit the true value 100 directly instead of bootstrapped returns


VARIANTS = (
    Variant("DreamerV2: MSE, ELU, target critic copied every 100, lr 8e-5", False, 8e-5, 0.0, False),
    Variant("DreamerV3: two-hot, LayerNorm + SiLU, slow critic reg 1, lr 8e-5", True, 8e-5, 1.0, True),
    Variant("DreamerV3 without the slow critic regulariser, lr 8e-5", True, 8e-5, 0.0, True),
    Variant("DreamerV3: two-hot, LayerNorm + SiLU, slow critic reg 1, lr 3e-4", True, 3e-4, 1.0, True),
    Variant("a fixed target of 100: DreamerV2's critic, lr 8e-5", False, 8e-5, 0.0, False, fixed_target=True),
    Variant("a fixed target of 100: DreamerV3's critic without the regulariser, lr 8e-5", True, 8e-5, 0.0, True, fixed_target=True),
)


def updates_to_reach(variant: Variant, updates: int, levels: tuple[float, ...]) -> tuple[dict[float, int], float]:
    """(the first update at which the critic's mean value reaches each level, its final mean value)."""
    from wm.dreamer.distributions import twohot_bins, twohot_loss, twohot_mean
    from wm.dreamer.networks import PLAIN, Body, mlp
    from wm.tfsetup import keras, tensorflow

    tf, keras = tensorflow(), keras()
    features = tf.constant(np.random.default_rng(0).normal(size=(800, 384)).astype(np.float32))
    keras.utils.set_random_seed(0)
    body, outputs = (Body("layer", "silu"), 255) if variant.twohot else (PLAIN, 1)
    critic = mlp(128, 2, outputs, "critic", body, zero_output=variant.twohot)
    slow = mlp(128, 2, outputs, "slow", body, zero_output=variant.twohot)
    critic(features), slow(features)
    for copy, weight in zip(slow.weights, critic.weights):
        copy.assign(weight)
    optimizer = keras.optimizers.Adam(variant.lr, epsilon=1e-5 if variant.twohot else 1e-7)
    bins = twohot_bins(255)
    reward_sum = sum(GAMMA**k for k in range(HORIZON))

    def value_of(out: object) -> object:
        return twohot_mean(out, bins) if variant.twohot else tf.squeeze(out, -1)

    def fit_loss(out: object, target: object) -> object:
        return tf.reduce_mean(twohot_loss(out, target, bins) if variant.twohot else 0.5 * tf.square(value_of(out) - target))

    @tf.function
    def update(index: object) -> object:
        bootstrap = value_of(critic(features) if variant.own_bootstrap else slow(features))
        target = tf.fill(tf.shape(bootstrap), 100.0) if variant.fixed_target else tf.stop_gradient(reward_sum + GAMMA**HORIZON * bootstrap)
        slow_value = tf.stop_gradient(value_of(slow(features)))
        with tf.GradientTape() as tape:
            out = critic(features)
            loss = fit_loss(out, target) + variant.slow_reg * fit_loss(out, slow_value)
        optimizer.apply_gradients(zip(tape.gradient(loss, critic.trainable_variables), critic.trainable_variables))
        if variant.own_bootstrap:  # DreamerV3's slow critic: an EMA at rate 0.02 per update
            for copy, weight in zip(slow.weights, critic.weights):
                copy.assign(0.98 * copy + 0.02 * weight)
        elif (index + 1) % 100 == 0:  # DreamerV2's target critic: a hard copy every 100 updates
            for copy, weight in zip(slow.weights, critic.weights):
                copy.assign(weight)
        return tf.reduce_mean(value_of(out))

    reached: dict[float, int] = {}
    value = 0.0
    for index in range(updates):
        value = float(update(tf.constant(index)))
        for level in levels:
            if level not in reached and value >= level:
                reached[level] = index + 1
    return reached, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--updates", type=int, default=4000, help="Updates per variant.")
    parser.add_argument("--variants", type=int, nargs="+", default=None, help="Run only these variants (0-based, in the order above; 0 is the baseline).")
    args = parser.parse_args()
    levels = (50.0, 90.0)
    print(f"Updates until the critic's mean value reaches {levels[0]:g} and {levels[1]:g} (true value 100), of {args.updates}:")
    baseline = None
    for index, variant in enumerate(VARIANTS):
        if args.variants is not None and index not in args.variants and index != 0:
            continue
        reached, final = updates_to_reach(variant, args.updates, levels)
        counts = [reached.get(level) for level in levels]
        text = ", ".join(f"{level:g}: {count if count else f'not within {args.updates}'}" for level, count in zip(levels, counts))
        if baseline is None:
            baseline = counts[0]
        ratio = f"; {counts[0] / baseline:.2f} x DreamerV2's updates to 50" if counts[0] and baseline else ""
        print(f"  {variant.name:68s} {text}; final value {final:.1f}{ratio}", flush=True)


if __name__ == "__main__":
    main()
