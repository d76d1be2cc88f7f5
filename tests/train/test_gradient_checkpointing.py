"""`--gradient-checkpointing`: each layer really is recomputed in the backward, with packing and per-example
attention; a run with it makes the same update as one without (dropout on), resumes exactly, and trains QLoRA."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from train_helpers import TINY_ARGS, assert_same_adapter

RUN = ("--batch-size", "4", "--micro-batch-size", "2", "--epochs", "2", *TINY_ARGS)


def _examples(tokenizer, texts):
    from lorakit.training.dataset import Example

    return [Example(ids, list(ids), text) for text in texts for ids in [tokenizer(text)["input_ids"]]]


def test_each_layer_is_recomputed_and_gradients_equal(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lorakit.training.activation_memory import enable, is_enabled
    from lorakit.training.model_setup import attach_lora
    from lorakit.training.packed_attention import packed_attention
    from lorakit.training.params import TrainParams
    from lorakit.training.steps import PackedLoss

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    examples = _examples(tokenizer, ["Paris is the capital of France.", "The quick brown fox jumps", "hello world"])
    grads, calls = {}, {}
    for checkpointing in (False, True):
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
        model = attach_lora(base, TrainParams(rank=4, dropout=0.1, init_lora_weights="gaussian"))
        if checkpointing:
            enable(model)
        assert is_enabled(model) is checkpointing
        model.train()
        layer = model.get_base_model().model.layers[0]
        count = [0]
        layer.self_attn.register_forward_hook(lambda *_: count.__setitem__(0, count[0] + 1))
        with packed_attention(model.get_base_model(), 64) as per_example:
            assert per_example
            torch.manual_seed(3)  # same dropout masks in both runs
            loss, _ = PackedLoss(model, "cpu", None, per_example_attention=True)(examples)
            loss.backward()
        calls[checkpointing] = count[0]
        grads[checkpointing] = {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}
    assert calls == {False: 1, True: 2}  # the checkpointed layer ran again in the backward
    for name, grad in grads[False].items():
        assert torch.allclose(grads[True][name], grad, atol=1e-6, rtol=1e-5), name


def test_run_with_checkpointing_equals_run_without_and_resumes_exactly(run_cli, tiny_model_dir, tiny_dataset, tmp_path):
    plain, checkpointed = tmp_path / "plain", tmp_path / "gc"
    common = ("train", str(tiny_model_dir), "--dataset", str(tiny_dataset), *RUN, "--dropout", "0.1", "--save-steps", "3", "--json")
    code, out, err = run_cli(*common, "--output", str(plain))
    assert code == 0, err
    assert json.loads(out)["gradient_checkpointing"] is False
    code, out, err = run_cli(*common, "--output", str(checkpointed), "--gradient-checkpointing")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["gradient_checkpointing"] is True and "Gradient checkpointing on" in err
    assert_same_adapter(checkpointed, plain, atol=1e-6)
    assert json.loads((checkpointed / "training_parameters.json").read_text())["gradient_checkpointing"] is True

    # Resume from checkpoint-3 (the later parts removed, as a kill would leave it): the same final adapter.
    resumed = tmp_path / "resumed"
    shutil.copytree(checkpointed / "checkpoint-3", resumed / "checkpoint-3")
    shutil.copy(checkpointed / "training_parameters.json", resumed / "training_parameters.json")
    code, out, err = run_cli("train", "--output", str(resumed), "--resume", "--json")
    assert code == 0, err
    assert json.loads(out)["resumed_from_step"] == 3 and json.loads(out)["gradient_checkpointing"] is True
    assert_same_adapter(resumed, checkpointed, atol=1e-6)


def test_qlora_trains_with_checkpointing(run_cli, tiny_model_dir, tiny_dataset, lorakit_home):
    pytest.importorskip("bitsandbytes")
    code, out, err = run_cli("train", str(tiny_model_dir), "--dataset", str(tiny_dataset), "--name", "q4gc", "--load-in-4bit",
                             "--gradient-checkpointing", "--learning-rate", "1e-2", "--warmup-steps", "0", "--batch-size", "4",
                             "--micro-batch-size", "4", "--epochs", "2", "--json")
    assert code == 0, err
    log = json.loads((lorakit_home / "loras" / "q4gc" / "training_log.json").read_text())["steps"]
    assert all(entry["grad_norm"] > 0 for entry in log)
    assert log[-1]["loss"] < log[0]["loss"]


def test_advice_says_when_a_gpu_run_wants_it():
    from lorakit.training.activation_memory import GIB, advice, estimate_bytes, longest_micro_batch

    llama7b = {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32}
    full = estimate_bytes(llama7b, 2048, 2, checkpointing=False)
    saved = estimate_bytes(llama7b, 2048, 2, checkpointing=True)
    assert saved < 0.2 * full
    message, urgent = advice(llama7b, 2048, 2, False, "cuda:0", free_bytes=int(0.5 * full))
    assert urgent and "pass --gradient-checkpointing" in message
    message, urgent = advice(llama7b, 2048, 2, False, "cuda:0", free_bytes=int(40 * GIB))
    assert not urgent and "fit" in message
    message, urgent = advice(llama7b, 2048, 2, False, "cpu")
    assert not urgent and "a GPU run wants --gradient-checkpointing" in message
    assert advice({"hidden_size": 64, "num_hidden_layers": 2}, 100, 4, False, "cpu") == ("", False)
    assert "Gradient checkpointing on" in advice(llama7b, 2048, 2, True, "cpu")[0]
    assert longest_micro_batch([5, 9, 1, 7], 2) == 16
