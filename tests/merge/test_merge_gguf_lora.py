"""--format gguf-lora: a llama.cpp LoRA adapter GGUF with the right metadata, names, shapes, values and permutation."""

from __future__ import annotations

import json

import pytest
import torch
from merge_helpers import adapters_dir, dora_adapter_dir, one_torch_thread  # noqa: F401  (fixtures)
from safetensors.torch import load_file


def llama_cpp_permute(weights, n_head, n_head_kv):
    """llama.cpp convert_hf_to_gguf.py LlamaModel.permute, as written there."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def _field(reader, key):
    import gguf

    field = reader.fields[key]
    value = field.parts[field.data[0]]
    if field.types[0] == gguf.GGUFValueType.STRING:
        return bytes(value).decode()
    return value.tolist()[0]


def _tensors(reader):
    import numpy as np

    return {t.name: (list(map(int, t.shape)), torch.from_numpy(np.asarray(t.data, dtype=np.float32).reshape(list(reversed(list(map(int, t.shape))))).copy())) for t in reader.tensors}


def test_single_adapter(run_cli, tiny_model_dir, tiny_adapter_dir, tmp_path):
    import gguf

    out = tmp_path / "tiny-lora.gguf"
    code, stdout, err = run_cli("merge", str(tiny_model_dir), "--lora", str(tiny_adapter_dir), "--format", "gguf-lora", "--output", str(out), "--json")
    assert code == 0, err
    assert json.loads(stdout)["verification"]["max_abs_delta_diff"] <= 1e-6
    reader = gguf.GGUFReader(str(out))
    assert _field(reader, "general.architecture") == "llama"
    assert _field(reader, "general.type") == "adapter"
    assert _field(reader, "adapter.type") == "lora"
    assert _field(reader, "adapter.lora.alpha") == 8.0
    tensors = _tensors(reader)
    expected = {f"blk.{layer}.attn_{proj}.weight.lora_{ab}" for layer in (0, 1) for proj in ("q", "v") for ab in ("a", "b")}
    assert set(tensors) == expected
    adapter = load_file(tiny_adapter_dir / "adapter_model.safetensors")
    prefix = "base_model.model.model.layers.1.self_attn"
    # GGUF shapes are listed innermost first: lora_a is ne [in, r], lora_b is ne [r, out].
    assert tensors["blk.1.attn_q.weight.lora_a"][0] == [64, 4] and tensors["blk.1.attn_q.weight.lora_b"][0] == [4, 64]
    assert tensors["blk.1.attn_v.weight.lora_b"][0] == [4, 32]
    assert torch.equal(tensors["blk.1.attn_q.weight.lora_a"][1], adapter[f"{prefix}.q_proj.lora_A.weight"])
    assert torch.equal(tensors["blk.1.attn_v.weight.lora_b"][1], adapter[f"{prefix}.v_proj.lora_B.weight"])
    # q's lora_b rows get llama.cpp's rotary permutation, like the base tensor they pair with.
    assert torch.equal(tensors["blk.1.attn_q.weight.lora_b"][1], llama_cpp_permute(adapter[f"{prefix}.q_proj.lora_B.weight"], 4, 4))


def test_two_weighted_adapters_fold_into_one(run_cli, tiny_model_dir, tiny_adapter_dir, tiny_adapter2_dir, tmp_path):
    import gguf

    out = tmp_path / "mix.gguf"
    code, _, err = run_cli("merge", str(tiny_model_dir), "--lora", f"{tiny_adapter_dir}:0.5", "--lora", f"{tiny_adapter2_dir}:-1.5",
                           "--format", "gguf-lora", "--output", str(out))
    assert code == 0, err
    reader = gguf.GGUFReader(str(out))
    assert _field(reader, "adapter.lora.alpha") == 0.0  # scales folded into lora_b; llama.cpp then uses scale 1
    tensors = _tensors(reader)
    a1, a2 = (load_file(path / "adapter_model.safetensors") for path in (tiny_adapter_dir, tiny_adapter2_dir))
    prefix = "base_model.model.model.layers.0.self_attn.k_proj"  # only in adapter 2 (r 8, alpha 4): rank 8, kv heads 2
    expected = -1.5 * 0.5 * a2[f"{prefix}.lora_B.weight"] @ a2[f"{prefix}.lora_A.weight"]
    got = tensors["blk.0.attn_k.weight.lora_b"][1] @ tensors["blk.0.attn_k.weight.lora_a"][1]
    assert torch.allclose(got, llama_cpp_permute(expected, 4, 2), atol=1e-6)
    prefix = "base_model.model.model.layers.0.self_attn.q_proj"  # in both: ranks concatenated
    assert tensors["blk.0.attn_q.weight.lora_a"][0] == [64, 12]
    expected = 0.5 * 2.0 * a1[f"{prefix}.lora_B.weight"] @ a1[f"{prefix}.lora_A.weight"] - 1.5 * 0.5 * a2[f"{prefix}.lora_B.weight"] @ a2[f"{prefix}.lora_A.weight"]
    got = tensors["blk.0.attn_q.weight.lora_b"][1] @ tensors["blk.0.attn_q.weight.lora_a"][1]
    assert torch.allclose(got, llama_cpp_permute(expected, 4, 4), atol=1e-6)


def test_dora_is_refused(run_cli, tiny_model_dir, dora_adapter_dir, tmp_path):
    code, _, err = run_cli("merge", str(tiny_model_dir), "--lora", str(dora_adapter_dir), "--format", "gguf-lora", "--output", str(tmp_path / "d.gguf"))
    assert code == 1 and "DoRA" in err and not (tmp_path / "d.gguf").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["lorakit-home"]


@pytest.mark.slow
def test_llama_cpp_agrees_with_lorakit(smollm2_dir, tmp_path, run_cli):
    """Runs only where llama-cpp-python is installed: the embedded SmolLM2 GGUF plus our GGUF LoRA vs transformers + PEFT."""
    llama_cpp = pytest.importorskip("llama_cpp")
    from merge_helpers import make_peft_adapter
    from transformers import AutoTokenizer

    from lorakit.api import LoadOptions
    from lorakit.inference.planning import open_session
    from lorakit.inference.probe import PROBE_PROMPTS
    from lorakit.store.models import embedded_gguf

    adapter = make_peft_adapter(smollm2_dir, tmp_path / "smol-lora", r=8, alpha=16, targets=("q_proj", "k_proj", "v_proj", "o_proj"), scale=0.05)
    out = tmp_path / "smol-lora.gguf"
    code, _, err = run_cli("merge", str(smollm2_dir), "--lora", str(adapter), "--format", "gguf-lora", "--output", str(out))
    assert code == 0, err
    session, _ = open_session(str(smollm2_dir), [str(adapter)], options=LoadOptions(cpu=True), quiet=True)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    llm = llama_cpp.Llama(model_path=str(embedded_gguf()), lora_path=str(out), logits_all=True, verbose=False, n_ctx=256)
    agree = total = 0
    for prompt in PROBE_PROMPTS:
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
        ours = session.forward_logits(ids)[0].argmax(-1)
        llm.reset()
        llm.eval(ids[0].tolist())
        theirs = torch.tensor(llm.scores[: ids.shape[1]]).argmax(-1)
        agree += int((ours == theirs).sum())
        total += ids.shape[1]
    assert agree / total >= 0.9  # the base GGUF is Q4_1: small logit noise, same predictions almost everywhere
