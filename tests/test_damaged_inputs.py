"""Damaged input: every command that reads an artifact kind fails with one sentence naming the file, whatever the damage.

The fuzzing itself is in tests/fuzz.py; `python -m tests.test_damaged_inputs FOLDER` runs it outside pytest
and prints the table.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import error_line, rollout, run_stage, run_wm
from tests.fuzz import fuzz_kind

MUTATIONS_PER_TYPE = 3  # 8 mutation types: 24 mutations per kind, each given to every reader of the kind (4 took the suite near 15 min)
TINY = ["--preset", "tiny"]


def make_artifacts(folder: Path, chain: dict[str, Path] | None = None) -> dict[str, Path]:
    """One tiny artifact of every kind: the fake-pixel World Models chain and a fake-pixel Dreamer agent.

    `chain` holds rollouts, VAE, latents and MDN-RNN already made with the same settings (the tests' session fixture).
    """
    paths = dict(chain) if chain else {"rollouts": rollout(folder, "rollouts.h5", env="fake-pixels", episodes=5, max_steps=30)}
    steps = [("vae", "train-vae", {"rollouts": "rollouts"}, {}),
             ("latents", "encode", {"rollouts": "rollouts", "vae": "vae"}, {}),
             ("mdnrnn", "train-mdnrnn", {"latents": "latents"}, {}),
             ("controller", "train-controller", {"vae": "vae", "mdnrnn": "mdnrnn"}, {"backend": "serial"}),
             ("evaluation", "evaluate", {"controller": "controller"}, {"backend": "serial", "episodes": 2}),
             ("fidelity", "fidelity", {"controller": "controller"}, {"backend": "serial", "episodes": 2}),
             ("dreamer", "train-dreamer", {}, {"env": "fake-pixels", "steps": 150})]
    for kind, stage, inputs, settings in steps:
        if kind in paths:
            continue
        paths[kind] = folder / f"{kind}.h5"
        run_stage(stage, paths[kind], {name: paths[source] for name, source in inputs.items()}, **settings)
    paths["replay"] = folder / "dreamer.replay.h5"
    return paths


def readers(paths: dict[str, Path]) -> dict[str, dict]:
    """For each kind, the commands that read it: label -> args(mutant, out folder)."""
    p = {kind: str(path) for kind, path in paths.items()}

    def inspect(m, o):
        return ["inspect", str(m)]

    def world(**swap: str) -> list[str]:
        return ["--vae", swap.get("vae", p["vae"]), "--mdnrnn", swap.get("mdnrnn", p["mdnrnn"])]

    def world_readers(kind: str) -> dict:
        """The stages that read a VAE and an MDN-RNN together, with the mutant as the one of `kind`."""
        return {
            "train-controller": lambda m, o: ["train-controller", *world(**{kind: str(m)}), "--backend", "serial", "--out", f"{o}/c.h5", *TINY],
            "dream": lambda m, o: ["dream", *world(**{kind: str(m)}), "--out", f"{o}/d.gif", *TINY],
            "fidelity": lambda m, o: ["fidelity", *world(**{kind: str(m)}), "--backend", "serial", "--episodes", "2", "--out", f"{o}/f.h5", *TINY],
        }

    return {
        "rollouts": {
            "inspect": inspect,
            "train-vae": lambda m, o: ["train-vae", "--rollouts", str(m), "--out", f"{o}/v.h5", *TINY],
            "encode": lambda m, o: ["encode", "--rollouts", str(m), "--vae", p["vae"], "--out", f"{o}/l.h5", *TINY],
            "dream --compare": lambda m, o: ["dream", *world(), "--compare", str(m), "--out", f"{o}/d.gif", *TINY],
            "train-dreamer --prefill": lambda m, o: ["train-dreamer", "--env", "fake-pixels", "--prefill", str(m), "--steps", "150",
                                                     "--out", f"{o}/a.h5", *TINY],
            "rollout --extend": lambda m, o: ["rollout", "--env", "fake-pixels", "--extend", str(m), "--episodes", "6",
                                              "--max-steps", "30", "--backend", "serial", "--out", f"{o}/r.h5"],
        },
        "vae": {
            "inspect": inspect,
            "encode": lambda m, o: ["encode", "--rollouts", p["rollouts"], "--vae", str(m), "--out", f"{o}/l.h5", *TINY],
            **world_readers("vae"),
        },
        "latents": {
            "inspect": inspect,
            "train-mdnrnn": lambda m, o: ["train-mdnrnn", "--latents", str(m), "--out", f"{o}/m.h5", *TINY],
        },
        "mdnrnn": {
            "inspect": inspect,
            "train-mdnrnn --init": lambda m, o: ["train-mdnrnn", "--latents", p["latents"], "--init", str(m), "--out", f"{o}/m.h5", *TINY],
            **world_readers("mdnrnn"),
        },
        "controller": {
            "inspect": inspect,
            "evaluate": lambda m, o: ["evaluate", "--controller", str(m), "--backend", "serial", "--episodes", "2", "--out", f"{o}/e.h5", *TINY],
            "rollout --policy controller": lambda m, o: ["rollout", "--env", "fake-pixels", "--policy", "controller", "--controller", str(m),
                                                         "--episodes", "2", "--max-steps", "30", "--backend", "serial", "--out", f"{o}/r.h5"],
            "dream --controller": lambda m, o: ["dream", *world(), "--controller", str(m), "--out", f"{o}/d.gif", *TINY],
            "fidelity --controller": lambda m, o: ["fidelity", "--controller", str(m), "--backend", "serial", "--episodes", "2",
                                                   "--out", f"{o}/f.h5", *TINY],
        },
        "evaluation": {"inspect": inspect},
        "fidelity": {"inspect": inspect},
        "dreamer": {
            "inspect": inspect,
            "evaluate --dreamer": lambda m, o: ["evaluate", "--dreamer", str(m), "--backend", "serial", "--episodes", "2",
                                                "--out", f"{o}/e.h5", *TINY],
            "dream --dreamer": lambda m, o: ["dream", "--dreamer", str(m), "--out", f"{o}/d.gif", *TINY],
        },
        "replay": {
            "inspect": inspect,
            "train-dreamer --prefill": lambda m, o: ["train-dreamer", "--env", "fake-pixels", "--prefill", str(m), "--steps", "150",
                                                     "--out", f"{o}/a.h5", *TINY],
            # The agent finds its replay by name beside it: the mutant is that replay, next to a copy of the agent.
            "dream --dreamer": lambda m, o: ["dream", "--dreamer", str(m.parent / "dreamer.h5"), "--out", f"{o}/d.gif", *TINY],
        },
    }


@pytest.fixture(scope="module")
def artifacts(chain, tmp_path_factory) -> dict[str, Path]:
    return make_artifacts(tmp_path_factory.mktemp("kinds"), chain)


def fuzz_all(paths: dict[str, Path], folder: Path, per_type: int = MUTATIONS_PER_TYPE) -> list:
    """Fuzz every kind; returns the outcomes."""
    outcomes = []
    for kind, kind_readers in readers(paths).items():
        work = folder / kind
        work.mkdir(parents=True, exist_ok=True)
        name = "mutant.h5"
        if kind == "replay":  # dream --dreamer reads the replay named in the agent
            shutil.copyfile(paths["dreamer"], work / "dreamer.h5")
            name = paths["replay"].name
        outcomes.append(fuzz_kind(kind, paths[kind], kind_readers, work, per_type, seed=len(outcomes), mutant_name=name))
    return outcomes


def test_every_reader_of_every_kind_handles_every_mutation(artifacts, tmp_path):
    outcomes = fuzz_all(artifacts, tmp_path)
    tried, handled = sum(o.tried for o in outcomes), sum(o.handled for o in outcomes)
    unaffected = sum(o.unaffected for o in outcomes)
    print(f"\nDamaged inputs: {handled} of {tried} command runs handled ({100 * handled / tried:.1f} %), "
          f"{unaffected} of them unaffected (the damage was in bytes the command does not read)")
    failures = [failure for o in outcomes for failure in o.failures]
    assert not failures, "\n".join(failures[:20])


def test_a_damaged_frame_found_mid_run_names_the_file_and_the_dataset(artifacts, tmp_path):
    """Frames are not read when a file is opened (only float data is), so their damage surfaces as a stage reads them."""
    import h5py

    damaged = tmp_path / "rollouts.h5"
    shutil.copyfile(artifacts["rollouts"], damaged)
    with h5py.File(damaged, "r") as f:
        chunk = f["obs"].id.get_chunk_info(1)  # the second chunk of frames
    with open(damaged, "r+b") as handle:
        handle.seek(chunk.byte_offset + chunk.size // 2)
        byte = handle.read(1)[0]
        handle.seek(chunk.byte_offset + chunk.size // 2)
        handle.write(bytes([byte ^ 0x5A]))
    assert run_wm("inspect", str(damaged)).returncode == 0  # the seal's checks pass: attributes, shapes, float data
    for args in (["train-vae", "--rollouts", str(damaged)], ["encode", "--rollouts", str(damaged), "--vae", str(artifacts["vae"])]):
        result = run_wm(*args, "--preset", "tiny", "--out", str(tmp_path / "out.h5"))
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert error_line(result).startswith(f"Error: {damaged} is damaged: the dataset 'obs' cannot be read"), result.stderr
        assert not (tmp_path / "out.h5").exists()


def test_files_of_schema_version_1_are_still_read(artifacts, tmp_path):
    """Artifacts written before seals existed (the shipped pretrained ones) open with the kind's own checks."""
    import h5py

    from wm.io.artifact import open_artifact
    from wm.io.integrity import CONTENTS

    old = tmp_path / "vae.h5"
    shutil.copyfile(artifacts["vae"], old)
    with h5py.File(old, "r+") as f:
        del f.attrs[CONTENTS]
        f.attrs["wm_schema_version"] = 1
    open_artifact(old, "vae").close()
    with h5py.File(old, "r+") as f:
        f.attrs["config_json"] = "{not json"
    result = run_wm("inspect", str(old))
    assert result.returncode == 2 and error_line(result) == f"Error: {old} has a root attribute 'config_json' that is not JSON; write it again."


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    made = make_artifacts(folder / "artifacts") if not (folder / "artifacts" / "dreamer.h5").exists() else {
        kind: folder / "artifacts" / ("dreamer.replay.h5" if kind == "replay" else f"{kind}.h5")
        for kind in ("rollouts", "vae", "latents", "mdnrnn", "controller", "evaluation", "fidelity", "dreamer", "replay")}
    per_type = int(sys.argv[2]) if len(sys.argv) > 2 else MUTATIONS_PER_TYPE
    results = fuzz_all(made, folder / "mutants", per_type)
    for o in results:
        print(f"{o.kind:<12} tried {o.tried:>4}  handled {o.handled:>4} (unaffected {o.unaffected})  redrawn flips {o.redrawn}")
        for failure in o.failures:
            print("   ", failure)
        if "-v" in sys.argv:
            for message in o.messages:
                print("      ", message)
    print(f"total: tried {sum(o.tried for o in results)}, handled {sum(o.handled for o in results)}")
