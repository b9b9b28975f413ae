"""The config layer: precedence, presets, files, --set parsing and its error messages."""

from __future__ import annotations

import pytest

from wm.config import option, resolve_config
from wm.errors import ConfigError, UsageError
from wm.stages.rollout import RolloutConfig


def test_defaults_and_precedence(tmp_path):
    assert resolve_config(RolloutConfig).episodes == 200
    assert resolve_config(RolloutConfig, preset="tiny").episodes == 2
    file = tmp_path / "c.yaml"
    file.write_text("episodes: 7\nmax_steps: 30\n")
    config = resolve_config(RolloutConfig, preset="tiny", config_file=file, sets=["episodes=9"])
    assert (config.episodes, config.max_steps) == (9, 30)
    config = resolve_config(RolloutConfig, config_file=file, sets=["episodes=9"], explicit={"episodes": 11})
    assert config.episodes == 11


def test_toml_file_and_typed_set_values(tmp_path):
    file = tmp_path / "c.toml"
    file.write_text('env = "fake-pixels"\nworkers = 1\n')
    config = resolve_config(
        RolloutConfig, config_file=file, sets=["max_steps=none", "task_timeout=5", 'env_kwargs={"a": 1}']
    )
    assert config.env == "fake-pixels" and config.workers == 1
    assert config.max_steps is None and config.task_timeout == 5.0 and config.env_kwargs == {"a": 1}


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(ConfigError, match="Did you mean 'episodes'"):
        resolve_config(RolloutConfig, sets=["episode=3"])


@pytest.mark.parametrize(
    "item, message",
    [
        ("episodes=many", "'episodes' must be of type int"),
        ("episodes=0", "at least 1"),
        ("episodes=-3", "at least 1"),
        ("compression=zip", "must be one of gzip, lzf, none"),
        ("episodes", "key=value"),
        ("env=nope", "Unknown environment 'nope'; known environments: carracing, doom-takecover"),
    ],
)
def test_bad_values_give_one_sentence(item, message):
    with pytest.raises(UsageError, match=message):
        resolve_config(RolloutConfig, sets=[item])


def test_wrong_type_in_file_and_unknown_preset(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("episodes: [1, 2]\n")
    with pytest.raises(ConfigError, match="must be of type int"):
        resolve_config(RolloutConfig, config_file=file)
    with pytest.raises(ConfigError, match="known presets: demo, paper, tiny"):
        resolve_config(RolloutConfig, preset="huge")
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_config(RolloutConfig, config_file=tmp_path / "missing.yaml")


def test_an_unless_default_field_enters_the_fingerprint_only_when_it_differs_from_its_default():
    from wm.stages.train_vae import TrainVAEConfig

    default, mixed = TrainVAEConfig(), TrainVAEConfig(precision="mixed_bfloat16")
    assert "precision" not in default.fingerprint_dict()  # artifacts from before the option stay up to date
    assert mixed.fingerprint_dict() == {**default.fingerprint_dict(), "precision": "mixed_bfloat16"}
    with pytest.raises(ValueError, match="unless-default"):
        option(1, "x", fingerprint="sometimes")


def test_fingerprint_fields_leave_out_execution_settings():
    a = resolve_config(RolloutConfig, explicit={"workers": 1, "backend": "serial"})
    b = resolve_config(RolloutConfig, explicit={"workers": 2, "backend": "process"})
    assert a.fingerprint_dict() == b.fingerprint_dict()
    assert "workers" not in a.fingerprint_dict() and "episodes" in a.fingerprint_dict()


def _float_options():
    import dataclasses

    from wm.config import field_types, unwrap_optional
    from wm.stages import all_stages

    for stage in all_stages():
        types = field_types(stage.config_class)
        for f in dataclasses.fields(stage.config_class):
            if unwrap_optional(types[f.name])[0] is float:
                yield stage.config_class, f.name


def test_every_float_option_rejects_nan_and_inf(tmp_path):
    options = list(_float_options())
    assert len(options) >= 20
    file = tmp_path / "c.yaml"
    for config_class, name in options:
        for text in ("nan", "inf", "-inf", "NaN"):
            with pytest.raises(ConfigError, match=f"'{name}' must be a finite number"):
                resolve_config(config_class, sets=[f"{name}={text}"])
        file.write_text(f"{name}: .nan\n")
        with pytest.raises(ConfigError, match="finite"):
            resolve_config(config_class, config_file=file)


def test_nan_on_the_command_line_is_one_sentence(tmp_path):
    import subprocess
    import sys

    for args in (["train-controller", "--vae", "v.h5", "--mdnrnn", "m.h5", "--set", "sigma0=inf"],
                 ["train-controller", "--vae", "v.h5", "--mdnrnn", "m.h5", "--temperature", "nan"]):
        result = subprocess.run([sys.executable, "-m", "wm", *args], capture_output=True, text=True, cwd=tmp_path)
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1 and "must be a finite number" in result.stderr


def test_a_config_file_that_is_not_utf8(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_bytes(b"episodes: 3\n# \xff\xfe\n")
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        resolve_config(RolloutConfig, config_file=file)
