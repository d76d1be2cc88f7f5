"""Parameters: config files, webui aliases, validation, the data plan (no model needed)."""

from __future__ import annotations

import pytest

from lorakit.errors import UsageError
from lorakit.training.params import TrainParams, read_config_file, validate
from lorakit.training.plan import TrainingPlan


def test_defaults_are_the_webui_classics():
    p = TrainParams()
    assert (p.rank, p.alpha, p.dropout, p.target_modules) == (32, 64.0, 0.05, ["q_proj", "v_proj"])
    assert (p.learning_rate, p.scheduler, p.epochs, p.micro_batch_size, p.batch_size) == (3e-4, "linear", 3.0, 4, 128)
    assert (p.cutoff_len, p.overlap_len, p.newline_favor_len, p.warmup_steps, p.optimizer) == (256, 128, 128, 100, "adamw_torch")
    assert p.grad_accumulation() == 32 and p.grad_accumulation(world_size=2) == 16


def test_config_file_yaml_json_and_webui_keys(tmp_path):
    yaml_file = tmp_path / "a.yaml"
    yaml_file.write_text("rank: 8\ntarget-modules: q_proj, k_proj\nadd_eos: yes\n")
    assert read_config_file(yaml_file) == {"rank": 8, "target_modules": ["q_proj", "k_proj"], "add_eos": True}
    webui = tmp_path / "training_parameters.json"
    webui.write_text('{"lora_name": "x", "lora_rank": 16, "lr_scheduler_type": "cosine", "always_override": false, "q_proj_en": true}')
    assert read_config_file(webui) == {"name": "x", "rank": 16, "scheduler": "cosine"}


@pytest.mark.parametrize("text, message", [
    ("rank: [1\n", "not valid YAML (line 2)"),
    ("rnak: 8\n", "unknown parameter 'rnak'"),
    ("rank: eight\n", "'rank' has an invalid value"),
])
def test_config_file_errors_name_the_problem(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        read_config_file(path)


def test_cutoff_must_exceed_overlap_for_raw_text(tmp_path):
    text = tmp_path / "a.txt"
    text.write_text("hello")
    with pytest.raises(UsageError, match="--cutoff-len 128 must be larger than --overlap-len 128"):
        validate(TrainParams(raw_text=str(text), cutoff_len=128, overlap_len=128))


def test_plan_partitions_every_step_across_ranks():
    single = TrainingPlan(num_examples=21, micro_batch_size=2, accumulation=4, world_size=1, epochs=2, seed=3)
    double = TrainingPlan(num_examples=21, micro_batch_size=2, accumulation=2, world_size=2, epochs=2, seed=3)
    assert single.total_steps == double.total_steps == 6
    for step in range(single.total_steps):
        together = sorted(i for rank in range(2) for batch in double.micro_batches(step, rank) for i in batch)
        assert together == sorted(single.step_examples(step))
    seen = [i for step in range(3) for i in single.step_examples(step)]
    assert sorted(seen) == list(range(21))  # one epoch covers every example once
    assert single.step_examples(3) != single.step_examples(0)  # reshuffled per epoch
