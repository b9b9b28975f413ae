"""World Models (Ha & Schmidhuber 2018) on the shared infrastructure: V, M, C, the dream, CMA-ES and PPO.

- `vae`: V, the convolutional VAE (z from a 64x64 frame); `frames` streams its training frames;
- `mdnrnn`: M, the LSTM with a mixture-density head (and reward/done heads); `mixture` is the
  mixture math, `losses` every loss, `sequences` streams M's training windows;
- `controller`: C, the linear controller's layout, inputs and actions; `controller_artifact` reads and
  writes controller artifacts; `policy` acts with V, M and C in a real environment;
- `dream`: the batched dream CMA-ES and PPO train in (and the same dream as a gymnasium environment);
- `cmaes`, `ppo`: the two training loops of C;
- `fidelity`: how well the dream agrees with the real environment.

docs/architecture.md says where each of the paper's equations lives.
"""
