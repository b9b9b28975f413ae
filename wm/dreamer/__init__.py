"""The Dreamer family on one RSSM world model (DreamerV2's discrete latents, Dreamer's Gaussian ones).

- `distributions`: the latent and action distributions (tensorflow-probability, behind this one module);
- `losses`: the world-model and actor-critic objectives, each a plain function tested against a
  direct computation.
"""
