"""Which attention path a training run takes: flash-attention varlen on CUDA with flash-attn and a half
precision, per-example SDPA otherwise; the summary names it. The real flash-attn run is marked gpu."""

from __future__ import annotations

import json

import pytest
import torch
from train_helpers import TINY_ARGS, FACTS


@pytest.fixture(scope="module")
def tiny_base(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)


@pytest.mark.parametrize("device, dtype, installed, expected", [
    ("cuda:0", torch.bfloat16, True, True),
    ("cuda:0", torch.float16, True, True),
    ("cuda:0", None, True, False),  # fp32: flash-attn has no fp32 kernels
    ("cuda:0", torch.bfloat16, False, False),  # not installed
    ("cpu", torch.bfloat16, True, False),  # CUDA only
])
def test_flash_is_chosen_only_where_it_can_run(tiny_base, device, dtype, installed, expected):
    from lorakit.training.attention_choice import flash_eligible

    assert flash_eligible(tiny_base, device, dtype, installed) is expected


def test_flash_switch_and_fallbacks(tiny_base, monkeypatch):
    from lorakit.training.attention_choice import FLASH, training_attention

    seen = []
    monkeypatch.setattr(type(tiny_base), "set_attn_implementation", lambda self, name: seen.append(name))
    with training_attention(tiny_base, "cuda:0", torch.bfloat16, 64, flash_installed=True) as path:
        assert path.name == FLASH and not path.segments and "varlen" in path.description
    assert seen == [FLASH, "sdpa"]  # switched back afterwards
    seen.clear()
    with training_attention(tiny_base, "cpu", torch.bfloat16, 64, flash_installed=True) as path:
        assert path.name == "lorakit_packed_sdpa" and path.segments
    monkeypatch.setattr(tiny_base.config, "sliding_window", 8, raising=False)  # too short a window for per-example SDPA
    with training_attention(tiny_base, "cpu", None, 64, flash_installed=False) as path:
        assert path.name == "sdpa" and not path.segments and "block-diagonal" in path.description


def test_summary_names_the_attention_path(run_cli, tiny_model_dir, tiny_dataset):
    code, out, err = run_cli("train", str(tiny_model_dir), "--dataset", str(tiny_dataset), "--name", "att", "--max-steps", "1", *TINY_ARGS,
                             "--batch-size", "2", "--micro-batch-size", "2", "--json")
    assert code == 0, err
    assert json.loads(out)["attention"] == "per-example causal SDPA (lorakit_packed_sdpa)"
    assert "Attention: per-example causal SDPA" in err


@pytest.mark.gpu
def test_flash_varlen_on_cuda_matches_sdpa(tiny_model_dir, tmp_path):
    """On a GPU with flash-attn: the packed loss through flash varlen equals per-example SDPA's (bf16 tolerance)."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    from lorakit.training.attention_choice import FLASH, flash_attn_installed, training_attention

    if not flash_attn_installed():
        pytest.skip("needs the flash-attn package")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lorakit.training.dataset import Example
    from lorakit.training.model_setup import attach_lora
    from lorakit.training.params import TrainParams
    from lorakit.training.steps import PackedLoss

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    examples = [Example(ids, list(ids), row["output"]) for row in FACTS for ids in [tokenizer(row["output"])["input_ids"]]]
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16).to("cuda")
    model = attach_lora(base, TrainParams(rank=4, dropout=0.0, init_lora_weights="gaussian"))
    losses = {}
    for installed in (True, False):
        with training_attention(model.get_base_model(), "cuda:0", torch.bfloat16, 64, flash_installed=installed) as path:
            assert (path.name == FLASH) is installed
            loss_fn = PackedLoss(model, "cuda:0", torch.bfloat16, per_example_attention=path.segments)
            loss, count = loss_fn(examples)
            loss.backward()
            losses[path.name] = float(loss) / count
    assert losses[FLASH] == pytest.approx(losses["lorakit_packed_sdpa"], rel=2e-2)
