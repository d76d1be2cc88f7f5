"""The gptq_monkeypatch loader on the tiny GPTQ checkpoint: exact base, several LoRAs, fast removal."""

import pytest
import torch
from gptq_fixtures import rtn_reference_model

from lorakit.api import LoadOptions
from lorakit.errors import CapabilityError, ModelNotFound
from lorakit.loaders.registry import all_loaders, choose_loader

IDS = torch.tensor([[1, 5, 7, 9, 11, 13, 40, 41, 300, 2]])


@pytest.fixture(scope="module")
def loader():
    return all_loaders()["gptq_monkeypatch"]


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    return rtn_reference_model(tiny_model_dir)


def peft_logits(reference, adapters, weights=None):
    """PEFT itself on the unquantized reference model: the oracle for the LoRA maths."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(reference, str(adapters[0]), adapter_name="a0")
    for index, path in enumerate(adapters[1:], start=1):
        model.load_adapter(str(path), adapter_name=f"a{index}")
    model.base_model.set_adapter([f"a{i}" for i in range(len(adapters))])
    for index, weight in enumerate(weights or []):
        for module in model.modules():
            if hasattr(module, "set_scale") and f"a{index}" in getattr(module, "scaling", {}):
                module.set_scale(f"a{index}", weight)
    with torch.no_grad():
        logits = model(IDS).logits
    model.unload()
    return logits


def test_base_logits_match_the_unquantized_reference(loader, tiny_gptq_dir, reference):
    session = loader.load(tiny_gptq_dir, LoadOptions())
    ours = session.forward_logits(IDS)
    with torch.no_grad():
        expected = reference(IDS).logits
    diff = (ours - expected).abs().max().item()
    print(f"\nmax abs logit diff, GPTQLinear vs decoded-weight fp32 model: {diff:.2e}")
    assert diff < 1e-4


def test_two_loras_at_once_with_weights_then_fast_removal(loader, tiny_gptq_dir, reference, tiny_adapter_dir, tiny_adapter2_dir):
    session = loader.load(tiny_gptq_dir, LoadOptions())
    session.add_lora("first", tiny_adapter_dir)
    session.add_lora("second", tiny_adapter2_dir, weight=0.5)
    both = session.forward_logits(IDS)
    expected = peft_logits(reference, [tiny_adapter_dir, tiny_adapter2_dir], [1.0, 0.5])
    assert (both - expected).abs().max().item() < 1e-4

    report = session.remove_lora("second")
    assert "not reloaded" in report.detail
    alone = session.forward_logits(IDS)
    assert (alone - peft_logits(reference, [tiny_adapter_dir])).abs().max().item() < 1e-4


def test_resolves_gptq_checkpoints_when_the_engine_loader_is_absent(tiny_gptq_dir, tiny_model_dir, monkeypatch):
    from lorakit.plugin import host

    monkeypatch.setenv("LORAKIT_DISABLE_PLUGINS", "autogptq_loader")
    host.reset_plugin_manager()
    assert choose_loader(tiny_gptq_dir, LoadOptions()).name == "gptq_monkeypatch"
    assert choose_loader(tiny_model_dir, LoadOptions()).name == "transformers"


def test_explains_bad_combinations(loader, tiny_model_dir):
    with pytest.raises(CapabilityError, match="already quantized"):
        loader.check_options(LoadOptions(load_in_4bit=True))
    with pytest.raises(ModelNotFound, match="not a GPTQ checkpoint"):
        loader.load(tiny_model_dir, LoadOptions())


def test_record_promises_full_support_but_no_merge(loader):
    caps = loader.capabilities
    assert (caps.max_loras, caps.per_lora_weights, caps.removal, caps.train, caps.merge) == (None, True, "fast", True, False)
    assert "merg" in caps.notes


def test_prepare_model_swaps_engine_layers_when_the_transformers_loader_opens_gptq(tiny_gptq_dir, loader):
    """transformers + optimum load GPTQ with the engine's kernels; the hook puts GPTQLinear in their place."""
    from gptq_fixtures import has_engine
    from lorakit_gptq_monkeypatch.layer import GPTQLinear

    if not has_engine():
        pytest.skip("transformers needs optimum + GPTQModel to open a GPTQ checkpoint")
    session = all_loaders()["transformers"].load(tiny_gptq_dir, LoadOptions(dtype="bf16"))
    patched = [m for m in session.model.modules() if isinstance(m, GPTQLinear)]
    assert len(patched) == 14
    ours = loader.load(tiny_gptq_dir, LoadOptions(dtype="bf16"))
    assert torch.equal(session.forward_logits(IDS), ours.forward_logits(IDS))
