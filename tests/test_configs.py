"""The config system: round trips, overrides, interpolation and every error path."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import pytest

from tamrin import ConfigError, TrainerConfig
from tamrin.trainer.config import resolve_steps

DOCS = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_save_load_round_trip_is_equal_and_plain_yaml(tmp_path):
    config = TrainerConfig(
        output_dir="out",
        task="image2text",
        metrics=["cer", {"name": "wer"}],
        save_steps=0.25,
        resume_from_checkpoint=True,
        lr_scheduler_kwargs={"gamma": 0.5},
    )
    path = config.save(tmp_path)
    text = path.read_text()
    assert "!!python" not in text and "_target_" not in text
    assert TrainerConfig.load(tmp_path) == config
    assert TrainerConfig.load(path) == config


def test_unknown_key_suggests_the_closest_name():
    with pytest.raises(
        ConfigError, match=r"Unknown key `learning_rat` for TrainerConfig\. Did you mean `learning_rate`\?"
    ):
        TrainerConfig(learning_rat=1e-3)


def test_unknown_key_in_file_fails_at_load(tmp_path):
    (tmp_path / "trainer_config.yaml").write_text("batch_sise: 4\n")
    with pytest.raises(ConfigError, match=r"`batch_sise`.*Did you mean `batch_size`"):
        TrainerConfig.load(tmp_path)


def test_wrong_type_names_field_value_and_type():
    with pytest.raises(ConfigError, match=r"`batch_size='many'` has the wrong type for TrainerConfig: expected int"):
        TrainerConfig(batch_size="many")


def test_numeric_strings_are_converted():
    assert TrainerConfig(batch_size="16").batch_size == 16


def test_choice_fields_list_valid_choices():
    with pytest.raises(
        ConfigError,
        match=r"`optimizer='adamm'` is not a valid choice\. Valid choices: 'adam', 'adamw', 'sgd'\. Did you mean `adam`",
    ):
        TrainerConfig(optimizer="adamm")
    with pytest.raises(ConfigError, match=r"`mixed_precision='fp64'`.*'fp16', 'bf16'"):
        TrainerConfig(mixed_precision="fp64")
    with pytest.raises(ConfigError, match=r"`task='txt_classification'`.*Did you mean `text_classification`"):
        TrainerConfig(task="txt_classification")


def test_all_problems_are_reported_at_once():
    with pytest.raises(ConfigError) as info:
        TrainerConfig(batch_size=0, learning_rate=-1.0, save_steps=1.5)
    message = str(info.value)
    assert "`batch_size=0` is out of range: it must be >= 1" in message
    assert "`learning_rate=-1.0` is out of range: it must be > 0" in message
    assert "`save_steps=1.5` must be an int >= 1 or a float in (0, 1]" in message


@pytest.mark.parametrize("field", ["save_steps", "log_steps", "eval_steps", "max_steps"])
def test_fraction_fields_reject_zero_and_big_floats(field):
    with pytest.raises(ConfigError, match=rf"`{field}=0"):
        TrainerConfig(**{field: 0})
    with pytest.raises(ConfigError, match=rf"`{field}=2\.0`.*write 2 for a step count"):
        TrainerConfig(**{field: 2.0})


def test_metric_for_best_model_takes_logged_hezar_and_hf_names_and_refuses_other_prefixes():
    for name in ("evaluation.f1", "f1", "eval_f1", "train.loss"):  # Hezar's plain name, HF's eval_ name
        assert TrainerConfig(metric_for_best_model=name).metric_for_best_model == name  # kept as given
    with pytest.raises(ConfigError, match=r"`metric_for_best_model='validation\.f1'` must name a logged metric"):
        TrainerConfig(metric_for_best_model="validation.f1")


def test_bad_device_lists_valid_devices():
    with pytest.raises(ConfigError, match=r"`device='gpu'` is not a valid device\. Valid: 'auto', 'cpu'"):
        TrainerConfig(device="gpu")


def test_dotlist_overrides_nested_lists_and_null(tmp_path):
    TrainerConfig(output_dir="o", lr_scheduler="step", lr_scheduler_kwargs={"step_size": 2}).save(tmp_path)
    loaded = TrainerConfig.load(
        tmp_path,
        [
            "batch_size=64",
            "lr_scheduler_kwargs.gamma=0.5",
            "metrics=[accuracy,{name: f1, average: macro}]",
            "lr_scheduler=null",
        ],
    )
    assert loaded.batch_size == 64
    assert loaded.lr_scheduler_kwargs == {"step_size": 2, "gamma": 0.5}
    assert loaded.metrics == ["accuracy", {"name": "f1", "average": "macro"}]
    assert loaded.lr_scheduler is None


def test_merge_returns_a_new_validated_config():
    config = TrainerConfig(batch_size=8)
    merged = config.merge({"batch_size": 32})
    assert (config.batch_size, merged.batch_size) == (8, 32)
    with pytest.raises(ConfigError, match="batch_size=0"):
        config.merge(["batch_size=0"])


def test_interpolation_in_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("batch_size: 16\neval_batch_size: ${batch_size}\noutput_dir: runs/${task}\ntask: regression\n")
    config = TrainerConfig.load(path)
    assert config.eval_batch_size == 16
    assert config.output_dir == "runs/regression"


def test_load_of_a_yaml_list_with_overrides_is_a_config_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping of keys to values, not a list"):
        TrainerConfig.load(path, ["batch_size=3"])


def test_load_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="No trainer_config.yaml in directory"):
        TrainerConfig.load(tmp_path)


@pytest.mark.parametrize(
    ("value", "total", "expected"),
    [(10, 100, 10), (0.1, 100, 10), (0.01, 50, 1), (1.0, 7, 7), (0.5, 7, 4), (None, 5, None)],
)
def test_resolve_steps(value, total, expected):
    assert resolve_steps(value, total) == expected


def test_resolve_steps_rejects_bad_values():
    with pytest.raises(ValueError, match=r"`save_steps=1.5` must be a float in \(0, 1\]"):
        resolve_steps(1.5, 10, "save_steps")


def test_docs_table_lists_every_trainer_config_field():
    rows = re.findall(r"^\| `(\w+)` \|", DOCS.read_text(), flags=re.MULTILINE)
    assert rows == [field.name for field in fields(TrainerConfig)]
