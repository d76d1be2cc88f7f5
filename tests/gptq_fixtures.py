"""GPTQ checkpoints for tests, made here on the CPU and never downloaded.

- ``pack_rtn``/``write_rtn_gptq_checkpoint``: an independent, pure-PyTorch GPTQ-format packer
  (round-to-nearest quantization, written into the exact v1 ``qweight``/``qzeros``/``scales``/``g_idx``
  layout, with an act-order ``g_idx`` from a fixed permutation). It makes the tiny model's GPTQ
  checkpoint in well under a second, with no engine installed.
- ``quantize_with_gptqmodel``: a real GPTQ run by the GPTQModel engine (SmolLM2, group size 64, act
  order), cached under ``$LORAKIT_TEST_CACHE/gptq`` (default ``~/.cache/lorakit-tests/gptq``).

Imported by the repository-root ``conftest.py``, which also provides
``tiny_model_dir``/``smollm2_dir`` these fixtures build on.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import pytest
from lorakit_testing import CACHE, SHARED_DATA

GPTQ_CACHE = CACHE / "gptq"
QUANT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
CALIBRATION_SENTENCES = (
    "The capital of France is Paris, a city on the Seine known for its museums and cafes.",
    "Water boils at one hundred degrees Celsius at sea level and freezes at zero.",
    "A language model predicts the next token from the tokens that come before it.",
    "Photosynthesis turns light, water and carbon dioxide into sugar and oxygen.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
    "Once upon a time, a small fox lived at the edge of a quiet forest.",
    "The mitochondria is the powerhouse of the cell, making energy for the body.",
    "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer.",
)


# ---- the independent packer ------------------------------------------------------------------
def _pack_rows(codes, bits: int):
    """int codes [K, N] -> int32 [K * bits / 32, N], codes along dim 0, low bits first."""
    import torch

    per_word = 32 // bits
    words = torch.zeros(codes.shape[0] // per_word, codes.shape[1], dtype=torch.int64)
    for j in range(per_word):
        words |= codes[j::per_word].to(torch.int64) << (bits * j)
    return torch.where(words >= 2**31, words - 2**32, words).to(torch.int32)


def _pack_cols(codes, bits: int):
    """int codes [G, N] -> int32 [G, N * bits / 32], codes along dim 1, low bits first."""
    return _pack_rows(codes.t().contiguous(), bits).t().contiguous()


def pack_rtn(weight, bits: int = 4, group_size: int = 32, act_order: bool = True, seed: int = 0, zero_offset: int = 1):
    """Quantize ``weight`` ``[N, K]`` (nn.Linear layout) per group and output row, symmetric, round to nearest.

    Returns ``qweight``, ``qzeros``, ``scales`` (fp16), ``g_idx`` and ``dequantized`` (what the packed
    codes decode to, ``[N, K]`` fp32, computed here by the formula, not by unpacking).
    """
    import torch

    weight = weight.detach().to(torch.float32)
    out_features, in_features = weight.shape
    maxq = 2**bits - 1
    groups = in_features // group_size
    if act_order:
        order = torch.randperm(in_features, generator=torch.Generator().manual_seed(seed))
    else:
        order = torch.arange(in_features)
    g_idx = torch.empty(in_features, dtype=torch.int32)
    g_idx[order] = (torch.arange(in_features) // group_size).to(torch.int32)

    scales = torch.empty(groups, out_features, dtype=torch.float16)
    zero = (maxq + 1) // 2
    codes = torch.empty(in_features, out_features, dtype=torch.int32)
    dequantized = torch.empty(out_features, in_features)
    for group in range(groups):
        columns = (g_idx == group).nonzero().flatten()
        block = weight[:, columns]
        xmax = block.abs().amax(dim=1).clamp(min=1e-8)
        scale = (2 * xmax / maxq).to(torch.float16)
        scales[group] = scale
        q = torch.clamp(torch.round(block / scale.float()[:, None]) + zero, 0, maxq).to(torch.int32)
        codes[columns] = q.t()
        dequantized[:, columns] = scale.float()[:, None] * (q - zero).float()
    zeros = torch.full((groups, out_features), zero - zero_offset, dtype=torch.int32)
    return {
        "qweight": _pack_rows(codes, bits),
        "qzeros": _pack_cols(zeros, bits),
        "scales": scales,
        "g_idx": g_idx,
        "dequantized": dequantized,
    }


def gptq_config(bits: int, group_size: int, desc_act: bool, checkpoint_format: str = "gptq") -> dict:
    return {
        "bits": bits, "group_size": group_size, "desc_act": desc_act, "sym": True, "lm_head": False,
        "quant_method": "gptq", "checkpoint_format": checkpoint_format, "pack_dtype": "int32",
        "true_sequential": True, "damp_percent": 0.01, "static_groups": False,
    }


def rtn_quantize_state(state: dict, bits: int = 4, group_size: int = 32, act_order: bool = True) -> tuple[dict, dict]:
    """``(gptq_state, reference_state)``: the packed checkpoint tensors, and the same model with every
    quantized weight replaced by what its codes decode to (an unquantized model, the reference)."""
    packed_state, reference = {}, {}
    for index, (key, tensor) in enumerate(sorted(state.items())):
        module = key.removesuffix(".weight")
        if key.endswith(".weight") and module.rsplit(".", 1)[-1] in QUANT_TARGETS:
            packed = pack_rtn(tensor, bits, group_size, act_order, seed=index)
            for part in ("qweight", "qzeros", "scales", "g_idx"):
                packed_state[f"{module}.{part}"] = packed[part]
            reference[key] = packed["dequantized"]
        else:
            packed_state[key] = reference[key] = tensor.contiguous()
    return packed_state, reference


def write_rtn_gptq_checkpoint(source: Path, target: Path, bits: int = 4, group_size: int = 32, act_order: bool = True) -> Path:
    """Turn a Hugging Face folder into a GPTQ checkpoint with the packer above; returns ``target``."""
    from safetensors.torch import load_file, save_file

    out, _ = rtn_quantize_state(load_file(str(Path(source) / "model.safetensors")), bits, group_size, act_order)
    target.mkdir(parents=True, exist_ok=True)
    save_file(out, str(target / "model.safetensors"), metadata={"format": "pt"})
    for item in Path(source).iterdir():
        if item.is_file() and item.name not in ("model.safetensors", "config.json"):
            shutil.copy2(item, target / item.name)
    quant = gptq_config(bits, group_size, act_order)
    config = json.loads((Path(source) / "config.json").read_text())
    config["quantization_config"] = quant
    (target / "config.json").write_text(json.dumps(config, indent=2))
    (target / "quantize_config.json").write_text(json.dumps(quant, indent=2))
    return target


# ---- the engine ------------------------------------------------------------------------------
def gptqmodel_installed() -> bool:
    return importlib.util.find_spec("gptqmodel") is not None


def engine_environment() -> None:
    """What GPTQModel needs on a small CPU machine: worker count (it refuses more than the cores) and its own temp folder."""
    os.environ.setdefault("GPTQMODEL_CPU_WORKERS", str(min(2, os.cpu_count() or 1)))
    scratch = GPTQ_CACHE / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TMPDIR", str(scratch))


def calibration_texts(count: int = 16) -> list[str]:
    wikitext = SHARED_DATA / "wikitext2_test.raw.txt"
    if wikitext.is_file():
        paragraphs = [p.strip() for p in wikitext.read_text(encoding="utf-8").split("\n") if len(p.strip()) > 400]
        return [p[:1200] for p in paragraphs[:count]]
    return list(CALIBRATION_SENTENCES) * (count // len(CALIBRATION_SENTENCES))


def quantize_with_gptqmodel(source: Path, target: Path, group_size: int = 64, desc_act: bool = True) -> Path:
    """Quantize ``source`` to 4-bit GPTQ with the GPTQModel engine on the CPU, written atomically."""
    import contextlib
    import sys

    from lorakit.store.atomic import atomic_folder, file_lock

    engine_environment()
    with file_lock(target.with_name(target.name + ".lock")):
        if (target / "quantize_config.json").is_file():
            return target
        with contextlib.redirect_stdout(sys.stderr):
            from gptqmodel import GPTQModel, QuantizeConfig

            model = GPTQModel.load(str(source), QuantizeConfig(bits=4, group_size=group_size, desc_act=desc_act, sym=True))
            model.quantize(calibration_texts(), batch_size=4)
            with atomic_folder(target) as scratch:
                model.save(str(scratch))
    return target


def gptqmodel_cache_dir(name: str, group_size: int, desc_act: bool) -> Path:
    import importlib.metadata

    version = importlib.metadata.version("gptqmodel")
    return GPTQ_CACHE / f"{name}-gptq4-g{group_size}{'-act' if desc_act else ''}-gptqmodel{version}"


# ---- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def tiny_gptq_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny random Llama as a 4-bit GPTQ checkpoint (group size 32, act-order), by the packer."""
    return write_rtn_gptq_checkpoint(tiny_model_dir, tmp_path_factory.mktemp("gptq") / "tiny-llama-gptq")


def rtn_reference_model(source: Path, bits: int = 4, group_size: int = 32, act_order: bool = True):
    """The unquantized fp32 model whose weights are exactly what the RTN checkpoint decodes to."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    _, reference = rtn_quantize_state(load_file(str(Path(source) / "model.safetensors")), bits, group_size, act_order)
    model.load_state_dict(reference, strict=False)
    return model.eval()


@pytest.fixture(scope="session")
def smollm2_gptq_dir(smollm2_dir) -> Path:
    """SmolLM2-135M-Instruct quantized by GPTQModel (4-bit, group size 64, act-order); cached."""
    if not gptqmodel_installed():
        pytest.skip("GPTQModel is not installed (pip install gptqmodel==7.6.0)")
    return quantize_with_gptqmodel(smollm2_dir, gptqmodel_cache_dir("SmolLM2-135M-Instruct", 64, True))


def has_engine() -> bool:
    return gptqmodel_installed() and importlib.util.find_spec("optimum") is not None


needs_engine = pytest.mark.skipif(not has_engine(), reason="GPTQModel and optimum are not installed")
