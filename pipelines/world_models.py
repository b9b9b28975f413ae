"""World Models (Ha & Schmidhuber 2018) up to the memory model: rollout -> train-vae -> encode -> train-mdnrnn.

Presets: `tiny` (tests: a few short episodes, small networks), `demo` (the README: minutes on
2 cores) and `paper` (the published data size and settings; days on a CPU).
"""

from wm.pipeline import Recipe, Step


def _chain(env: str, vae: dict, mdnrnn: dict) -> list[Step]:
    return [
        Step("rollout", "rollout", "rollouts.h5", settings={"env": env}),
        Step("train-vae", "train-vae", "vae.h5", inputs={"rollouts": "rollout"}, settings=vae),
        Step("encode", "encode", "latents.h5", inputs={"rollouts": "rollout", "vae": "train-vae"}),
        Step("train-mdnrnn", "train-mdnrnn", "mdnrnn.h5", inputs={"latents": "encode"}, settings=mdnrnn),
    ]


DOOM_TAKECOVER = Recipe(
    name="doom-takecover",
    help="VizDoom TakeCover: random rollouts (action held 1-10 frames), VAE z=64, MDN-RNN 512 with a death head.",
    steps=_chain("doom-takecover", {"latent_dim": 64}, {"units": 512, "done_head": True}),
    presets={
        "tiny": {"rollout": {"episodes": 3, "max_steps": 40}},
        # 40 episodes hold only 40 deaths: the MDN-RNN holds out 8 of them (not 2) so that its death-head
        # AUC means something, and stops at 15 epochs, before the death head overfits the other 32.
        "demo": {
            "rollout": {"episodes": 40},
            "train-vae": {"epochs": 3},
            "train-mdnrnn": {"epochs": 15, "batch_size": 20, "heldout_fraction": 0.2},
        },
        "paper": {"rollout": {"episodes": 10000}, "train-vae": {"epochs": 10}, "train-mdnrnn": {"sequence_length": 1000}},
    },
)

CARRACING = Recipe(
    name="carracing",
    help="CarRacing-v3: random rollouts (brownian actions), VAE z=32, MDN-RNN 256.",
    steps=_chain("carracing", {"latent_dim": 32}, {"units": 256}),
    presets={
        "tiny": {"rollout": {"episodes": 3, "max_steps": 40}},
        "demo": {"rollout": {"episodes": 8}, "train-vae": {"epochs": 3}, "train-mdnrnn": {"epochs": 30, "batch_size": 20}},
        "paper": {"rollout": {"episodes": 10000}, "train-vae": {"epochs": 10}, "train-mdnrnn": {"sequence_length": 1000}},
    },
)
