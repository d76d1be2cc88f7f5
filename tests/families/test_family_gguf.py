"""``merge --format gguf-lora`` per family, against llama.cpp's own rules and, where a llama.cpp tree is
at hand (``LLAMA_CPP_DIR``), against what its ``convert_lora_to_gguf.py`` writes, tensor by tensor.

llama.cpp permutes q/k rows (Meta's rotary order) for the architectures it converts as Llama only
(Llama, Mistral, Mixtral); Qwen, Gemma and Phi-3 keep HF's order. Phi-3's fused ``qkv_proj`` and
``gate_up_proj`` stay fused (``attn_qkv``, ``ffn_up``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest_families import families_root, family_dirs, one_thread  # noqa: F401  (fixtures)
from family_models import FAMILIES, MOE
from safetensors.torch import load_file

pytestmark = pytest.mark.usefixtures("one_thread")
LLAMA_ARCH = {"llama": "llama", "mistral": "llama", "mixtral": "llama", "qwen2": "qwen2", "qwen3": "qwen3", "qwen2-moe": "qwen2moe",
              "qwen3-moe": "qwen3moe", "gemma2": "gemma2", "gemma3": "gemma3", "phi3": "phi3"}
PERMUTED = ("llama", "mistral", "mixtral")
GGUF_NAMES = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output", "qkv_proj": "attn_qkv"}


def llama_cpp_permute(weights, n_head, n_head_kv):
    """llama.cpp's ``LlamaModel.permute`` as written there."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def read_gguf(path: Path):
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(str(path))
    fields = {}
    for key in ("general.architecture", "general.type", "adapter.type", "adapter.lora.alpha"):
        field = reader.fields[key]
        value = field.parts[field.data[0]]
        fields[key] = bytes(value).decode() if field.types[0] == gguf.GGUFValueType.STRING else value.tolist()[0]
    tensors = {t.name: (t.tensor_type.name, torch.from_numpy(np.asarray(t.data).astype(np.float32).reshape([int(n) for n in reversed(t.shape)]).copy()))
               for t in reader.tensors}
    return fields, tensors


def _export(run_cli, dirs, out: Path, *extra):
    code, stdout, err = run_cli("merge", str(dirs.base), "--lora", str(dirs.attention_lora), "--format", "gguf-lora", "--output", str(out), "--json", *extra)
    assert code == 0, err
    return json.loads(stdout)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_names_shapes_and_permutation_follow_llama_cpp(family, families_root, run_cli, tmp_path):
    dirs = family_dirs(family, families_root)
    report = _export(run_cli, dirs, tmp_path / "lora.gguf")
    assert report["architecture"] == LLAMA_ARCH[family] and report["verification"]["max_abs_delta_diff"] <= 1e-6
    fields, tensors = read_gguf(tmp_path / "lora.gguf")
    assert fields == {"general.architecture": LLAMA_ARCH[family], "general.type": "adapter", "adapter.type": "lora", "adapter.lora.alpha": 4.0}
    adapter = load_file(dirs.attention_lora / "adapter_model.safetensors")
    config = json.loads((dirs.base / "config.json").read_text())
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    expected = set()
    for key, value in adapter.items():
        module, part = key.removeprefix("base_model.model.model.layers.").rsplit(".lora_", 1)
        layer, _, projection = module.partition(".self_attn.")
        name = f"blk.{layer}.{GGUF_NAMES[projection]}.weight.lora_{part[0].lower()}"
        expected.add(name)
        dtype, got = tensors[name]
        assert dtype == "F32" and got.shape == value.shape
        if part.startswith("B") and projection in ("q_proj", "k_proj") and family in PERMUTED:
            value = llama_cpp_permute(value, heads, heads if projection == "q_proj" else kv_heads)
        assert torch.equal(got, value), name
    assert set(tensors) == expected


@pytest.mark.parametrize("family", ["phi3", "qwen2", "mistral", "gemma2"])
def test_f16_export(family, families_root, run_cli, tmp_path):
    _export(run_cli, family_dirs(family, families_root), tmp_path / "lora16.gguf", "--dtype", "fp16")
    _, tensors = read_gguf(tmp_path / "lora16.gguf")
    assert {dtype for dtype, _ in tensors.values()} == {"F16"}


@pytest.mark.parametrize("family", MOE)
def test_expert_loras_are_refused_in_one_line(family, families_root, run_cli, tmp_path):
    dirs = family_dirs(family, families_root)
    out = tmp_path / "experts.gguf"
    code, _, err = run_cli("merge", str(dirs.base), "--lora", str(dirs.lora), "--format", "gguf-lora", "--output", str(out))
    assert code == 1 and err.startswith("Error: ") and err.count("\n") <= 2, err
    assert "fused expert weights" in err and "--format hf" in err and not out.exists()


def test_an_unknown_family_is_refused_naming_it(run_cli, tmp_path, one_thread):
    from lorakit_testing import build_tiny_tokenizer, make_peft_adapter
    from transformers import GPT2Config, GPT2LMHeadModel

    base = tmp_path / "gpt2"
    GPT2LMHeadModel(GPT2Config(vocab_size=512, n_embd=32, n_layer=1, n_head=2, n_positions=64)).save_pretrained(base)
    build_tiny_tokenizer().save_pretrained(base)
    adapter = make_peft_adapter(base, tmp_path / "gpt2-lora", targets=("c_attn",), fan_in_fan_out=True)
    code, _, err = run_cli("merge", str(base), "--lora", str(adapter), "--format", "gguf-lora", "--output", str(tmp_path / "x.gguf"))
    assert code == 1 and err.count("\n") <= 2 and "GPT2LMHeadModel" in err and "--format hf" in err


def _converter() -> Path | None:
    folder = os.environ.get("LLAMA_CPP_DIR")
    script = Path(folder) / "convert_lora_to_gguf.py" if folder else None
    return script if script and script.is_file() else None


@pytest.mark.skipif(_converter() is None, reason="set LLAMA_CPP_DIR to a llama.cpp checkout to compare with its converter")
@pytest.mark.parametrize("family", list(FAMILIES))
def test_equal_to_llama_cpp_converter(family, families_root, run_cli, tmp_path):
    dirs = family_dirs(family, families_root)
    _export(run_cli, dirs, tmp_path / "ours.gguf")
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH="")
    done = subprocess.run([sys.executable, str(_converter()), "--base", str(dirs.base), "--outfile", str(tmp_path / "theirs.gguf"), str(dirs.attention_lora)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    ours, theirs = read_gguf(tmp_path / "ours.gguf"), read_gguf(tmp_path / "theirs.gguf")
    assert ours[0] == theirs[0]
    assert set(ours[1]) == set(theirs[1])
    for name, (dtype, value) in theirs[1].items():
        assert ours[1][name][0] == dtype and torch.equal(ours[1][name][1], value), name


# Phi-3's and Gemma 3's base GGUFs do not load from the tiny test tokenizer (llama.cpp wants Phi-3's
# special tokens; the Gemma 3 converter cuts the embeddings to the tokenizer's 455 tokens), so those
# two are checked by tensor equality with the converter above, not by running llama.cpp.
RUNNABLE = [name for name in FAMILIES if name not in ("phi3", "gemma3")]


@pytest.mark.skipif(_converter() is None, reason="set LLAMA_CPP_DIR to a llama.cpp checkout (its convert_hf_to_gguf.py writes the base GGUF)")
@pytest.mark.parametrize("family", RUNNABLE)
def test_llama_cpp_logits_move_like_peft(family, families_root, run_cli, tmp_path):
    """llama.cpp (llama-cpp-python) with our GGUF LoRA on an F32 base GGUF of the same weights: the
    LoRA changes llama.cpp's logits as it changes PEFT's."""
    llama_cpp = pytest.importorskip("llama_cpp")
    import numpy as np
    from transformers import AutoModelForCausalLM

    dirs = family_dirs(family, families_root)
    _export(run_cli, dirs, tmp_path / "lora.gguf")
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH="")
    helper = Path(__file__).with_name("llama_cpp_convert.py")
    done = subprocess.run([sys.executable, str(helper), str(_converter().parent), str(dirs.base), str(tmp_path / "base.gguf")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    ids = list(range(5, 40))
    with torch.no_grad():
        hf = AutoModelForCausalLM.from_pretrained(dirs.base, dtype=torch.float32).eval()
        hf_base = hf(input_ids=torch.tensor([ids])).logits[0]
        from peft import PeftModel

        hf_lora = PeftModel.from_pretrained(hf, str(dirs.attention_lora)).eval()(input_ids=torch.tensor([ids])).logits[0]
    scores = []
    for lora in (None, tmp_path / "lora.gguf"):
        llm = llama_cpp.Llama(model_path=str(tmp_path / "base.gguf"), logits_all=True, verbose=False, n_ctx=128,
                              **({"lora_path": str(lora)} if lora else {}))
        llm.eval(ids)
        scores.append(torch.tensor(np.array(llm.scores[: len(ids)])))
        llm.close()
    cpp_base, cpp_lora = scores
    peft_move, cpp_move = hf_lora - hf_base, cpp_lora - cpp_base
    assert peft_move.abs().max() > 0.1  # the LoRA really moves the logits
    # Qwen2-MoE's base differs by ~0.04 between llama.cpp and transformers (its shared-expert gate); the rest by 1e-4.
    loose = family == "qwen2-moe"
    assert (cpp_base - hf_base).abs().max() < (0.05 if loose else 2e-3)
    assert (cpp_move - peft_move).abs().max() < (0.1 if loose else 0.01) * peft_move.abs().max()
    assert (cpp_lora.argmax(-1) == hf_lora.argmax(-1)).float().mean() >= 0.9
