"""MDN-RNN update speed on this CPU: batch size and XLA, measured side by side in one run.

The doom-takecover MDN-RNN (LSTM 512, 5 mixtures per latent dimension of 64, death head) takes the
same update as `wm train-mdnrnn` (mixture NLL + weighted death loss, Adam) on windows of 200 steps of
random inputs. Each configuration is timed for 8 s, three rounds, alternating, so that a load on the
machine affects all of them alike. Prints step-samples per second and the ratio to batch 32 without XLA.

    python bench/mdnrnn_speed.py
    python bench/mdnrnn_speed.py --batches 32,64,128 --seconds 8 --rounds 3
"""

from __future__ import annotations

import argparse
import time

import numpy as np

STEPS = 200


def make_update(batch: int, jit: bool):
    """A compiled MDN-RNN update on fixed random windows; calling it runs one update."""
    from wm.worldmodels.losses import done_loss, mixture_nll
    from wm.worldmodels.mdnrnn import build_mdnrnn
    from wm.tfsetup import keras, tensorflow

    tf, keras = tensorflow(), keras()
    model = build_mdnrnn(latent_dim=64, action_dim=3, units=512, num_mixtures=5, done_head=True, done_weight=10.0)
    optimizer = keras.optimizers.Adam(1e-3)

    @tf.function(jit_compile=jit)
    def update(z, action, done, mask):
        with tf.GradientTape() as tape:
            heads, _ = model(z[:, :-1], action)
            nll, _ = mixture_nll(z[:, 1:], heads["logits"], heads["mu"], heads["log_sigma"], mask)
            loss = nll + done_loss(heads["done_logit"], done, mask, 10.0)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    rng = np.random.default_rng(0)
    args = (tf.constant(rng.standard_normal((batch, STEPS + 1, 64)), tf.float32), tf.one_hot(rng.integers(0, 3, (batch, STEPS)), 3),
            tf.zeros((batch, STEPS)), tf.ones((batch, STEPS)))
    update(*args)  # compile
    return lambda: float(update(*args))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="32,128", help="Batch sizes (windows per update), comma-separated.")
    parser.add_argument("--seconds", type=float, default=8.0, help="Timing per configuration and round.")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    configs = [(int(b), jit) for b in args.batches.split(",") for jit in (False, True)]
    updates = {config: make_update(*config) for config in configs}
    rates: dict = {config: [] for config in configs}
    for _ in range(args.rounds):
        for config, update in updates.items():
            start, count = time.perf_counter(), 0
            while time.perf_counter() - start < args.seconds:
                update()
                count += 1
            rates[config].append(count * config[0] * STEPS / (time.perf_counter() - start))
    base = float(np.median(rates[configs[0]]))
    for (batch, jit), values in rates.items():
        median = float(np.median(values))
        print(f"batch {batch:4d}, XLA {'on ' if jit else 'off'}: {median:8.0f} step-samples/s (rounds: "
              f"{', '.join(f'{v:.0f}' for v in values)}); ratio to batch {configs[0][0]} without XLA: {median / base:.2f}")


if __name__ == "__main__":
    main()
