"""What the exllama plugin does on any machine: registration, record, availability, adapter pre-flight."""

import pytest
import torch
from lorakit_exllama import loader as exllama_loader
from lorakit_exllama.preflight import check_exllama_adapter
from lorakit_exllama.sampling import pick_next

from lorakit.api import LoadOptions
from lorakit.errors import CapabilityError
from lorakit.loaders.registry import all_loaders
from lorakit.store.adapters import read_adapter


def test_registered_through_its_entry_point_with_an_honest_record():
    from lorakit.plugin.host import plugin_manager
    from lorakit.plugin.manager import plugin_records

    loader = all_loaders()["exllama"]
    caps = loader.capabilities
    assert (caps.max_loras, caps.removal, caps.merge, caps.train, caps.devices) == (1, "fast", False, False, ("cuda",))
    record = {r["name"]: r for r in plugin_records(plugin_manager())}["exllama"]
    assert record["package"] == "lorakit-exllama" and "register_loaders" in record["hooks"]


def test_unavailable_without_the_package_or_without_cuda(monkeypatch):
    monkeypatch.setattr(exllama_loader, "_installed", lambda module: module != "exllamav2")
    available = exllama_loader.ExLlamaLoader().availability()
    assert not available.ok and available.reason == "needs a CUDA GPU and the exllamav2 package (missing: exllamav2)"

    monkeypatch.setattr(exllama_loader, "_installed", lambda module: True)
    monkeypatch.setattr(exllama_loader, "_cuda_visible", lambda: False)
    available = exllama_loader.ExLlamaLoader().availability()
    assert not available.ok and available.reason.startswith("needs a CUDA GPU and torch sees none")


def test_cpu_and_bitsandbytes_flags_are_refused():
    loader = exllama_loader.ExLlamaLoader()
    with pytest.raises(CapabilityError, match="CUDA GPUs only"):
        loader.check_options(LoadOptions(cpu=True))
    with pytest.raises(CapabilityError, match="already quantized"):
        loader.check_options(LoadOptions(load_in_4bit=True))
    with pytest.raises(CapabilityError, match="dtype"):
        loader.check_options(LoadOptions(dtype="fp32"))


def test_plain_llama_adapters_pass(tiny_adapter_dir, tiny_adapter2_dir):
    check_exllama_adapter(read_adapter(tiny_adapter_dir))
    check_exllama_adapter(read_adapter(tiny_adapter2_dir))


def fan_in_fan_out_adapter(make_adapter, base, out):
    """PEFT resets fan_in_fan_out on Llama's Linear layers, so set it the way GPT-2 adapters carry it."""
    import json

    make_adapter(base, out)
    config_path = out / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["fan_in_fan_out"] = True
    config_path.write_text(json.dumps(config))
    return out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (None, "fan_in_fan_out"),
        ({"bias": "lora_only"}, "bias='lora_only'"),
        ({"use_dora": True}, "DoRA"),
        ({"targets": ("q_proj", "lm_head")}, "does not know layer 'lm_head'"),
    ],
    ids=["fan_in_fan_out", "bias", "dora", "unknown-layer"],
)
def test_adapters_exllama_refuses_are_named_before_loading(tiny_model_dir, tmp_path, make_adapter, extra, message):
    if extra is None:
        path = fan_in_fan_out_adapter(make_adapter, tiny_model_dir, tmp_path / "adapter")
    else:
        path = make_adapter(tiny_model_dir, tmp_path / "adapter", **extra)
    adapter = read_adapter(path)
    with pytest.raises(CapabilityError, match=message) as error:
        check_exllama_adapter(adapter)
    assert error.value.one_line().startswith("ExLlamaV2 cannot attach adapter 'adapter'")


def test_apply_refuses_such_an_adapter_in_one_line_before_any_weight_loads(tiny_gptq_dir, tiny_model_dir, tmp_path, make_adapter, run_cli, monkeypatch):
    from lorakit.loaders.capabilities import Availability

    monkeypatch.setattr(exllama_loader.ExLlamaLoader, "availability", lambda self: Availability(True))
    monkeypatch.setattr(exllama_loader.ExLlamaLoader, "load", lambda *a: pytest.fail("the model must not load"))
    adapter = fan_in_fan_out_adapter(make_adapter, tiny_model_dir, tmp_path / "fifo")
    code, _, stderr = run_cli("apply", str(tiny_gptq_dir), "--loader", "exllama", "--dtype", "fp16", "--lora", str(adapter))
    assert code != 0
    assert stderr.strip().splitlines()[-1].startswith("Error: ExLlamaV2 cannot attach adapter 'fifo': it sets fan_in_fan_out")


def test_sampling_is_greedy_or_seeded():
    from lorakit.inference.generation import SamplingSettings

    logits = torch.tensor([0.1, 3.0, 2.9, -1.0])
    previous = torch.tensor([], dtype=torch.long)
    assert pick_next(logits, SamplingSettings(greedy=True), previous, torch.Generator()) == 1
    assert pick_next(logits, SamplingSettings(top_k=1), previous, torch.Generator()) == 1
    settings = SamplingSettings(temperature=1.0, top_k=0, top_p=1.0, repetition_penalty=1.0)
    draws = [pick_next(logits, settings, previous, torch.Generator().manual_seed(seed)) for seed in range(40)]
    assert set(draws) >= {1, 2} and draws == [pick_next(logits, settings, previous, torch.Generator().manual_seed(s)) for s in range(40)]
    # A repetition penalty makes an already-seen top token lose to the runner-up.
    assert pick_next(logits, SamplingSettings(greedy=True, repetition_penalty=1.5), torch.tensor([1]), torch.Generator()) == 2
