"""GPTQLinear against the independent packer: exact decoding, correct gradients, any device."""

import pytest
import torch
from gptq_fixtures import pack_rtn
from lorakit_gptq_monkeypatch.layer import GPTQLinear, dequantize

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]),
]


def packed_layer(out_features=48, in_features=64, bits=4, group_size=32, act_order=True, zero_offset=1, bias=False, seed=0):
    torch.manual_seed(seed)
    weight = torch.randn(out_features, in_features)
    packed = pack_rtn(weight, bits, group_size, act_order, seed=seed, zero_offset=zero_offset)
    layer = GPTQLinear(in_features, out_features, bias=bias, bits=bits, group_size=group_size, zero_offset=zero_offset)
    state = {name: packed[name] for name in ("qweight", "qzeros", "scales", "g_idx")}
    if bias:
        state["bias"] = torch.randn(out_features)
    layer.load_state_dict(state, strict=False)
    return layer, packed


@pytest.mark.parametrize("bits", [4, 8])
@pytest.mark.parametrize("act_order", [True, False])
@pytest.mark.parametrize("zero_offset", [1, 0], ids=["v1", "v2"])
def test_decodes_exactly_what_the_packer_encoded(bits, act_order, zero_offset):
    layer, packed = packed_layer(bits=bits, act_order=act_order, zero_offset=zero_offset)
    assert torch.equal(layer.weight, packed["dequantized"])
    assert layer._groups_are_contiguous() is (not act_order)


def test_act_order_gather_and_contiguous_paths_agree():
    layer, _ = packed_layer(act_order=False)
    args = (layer.qweight, layer.qzeros, layer.scales, layer.g_idx, 4, 1, 64, 48, torch.float32)
    assert torch.equal(dequantize(*args), dequantize(*args, group_size=32))


@pytest.mark.parametrize("device", DEVICES)
def test_forward_matches_a_linear_layer_with_the_decoded_weight(device):
    layer, packed = packed_layer(bias=True)
    layer = layer.to(device)
    reference = torch.nn.Linear(64, 48).to(device)
    with torch.no_grad():
        reference.weight.copy_(packed["dequantized"])
        reference.bias.copy_(layer.bias)
    x = torch.randn(2, 5, 64, device=device)
    assert torch.allclose(layer(x), reference(x), atol=1e-5)


def test_backward_gives_input_gradients_and_no_weight_gradients():
    layer, _ = packed_layer(out_features=16, in_features=32, group_size=16, bias=True)
    layer = layer.to(torch.float64)
    x = torch.randn(2, 3, 32, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,), fast_mode=True)
    assert list(layer.parameters()) == []  # nothing of the quantized layer can ever train
    assert not any(buffer.requires_grad for buffer in layer.buffers())


def test_gradients_survive_a_no_grad_forward():
    """The engines' CPU kernels lose gradients after a no-grad pass (GPTQModel 7.6, measured); this layer must not."""
    layer, _ = packed_layer()
    x = torch.randn(2, 64)
    with torch.no_grad():
        layer(x)
    x.requires_grad_(True)
    layer(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_bf16_autocast_on_cpu_computes_in_bf16_and_backpropagates():
    layer, packed = packed_layer()
    x = torch.randn(4, 64, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert x.grad.dtype == torch.float32 and x.grad.abs().sum() > 0
    assert torch.allclose(out.float(), x.detach() @ packed["dequantized"].t(), atol=0.5, rtol=0.05)


def test_peft_attaches_lora_to_it_like_to_a_linear_layer():
    from peft import LoraConfig, get_peft_model

    layer, _ = packed_layer()
    model = torch.nn.Sequential()
    model.add_module("proj", layer)
    model.add_module("head", torch.nn.Linear(48, 4))  # PEFT wants at least one real parameter in a model
    peft_model = get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["proj"], init_lora_weights=False))
    x = torch.randn(3, 64)
    peft_model(x).sum().backward()
    grads = {name: p.grad for name, p in peft_model.named_parameters() if p.requires_grad}
    assert set(grads) == {"base_model.model.proj.lora_A.default.weight", "base_model.model.proj.lora_B.default.weight"}
    assert all(g is not None and g.abs().sum() > 0 for g in grads.values())


def test_weight_cache_for_inference_gives_the_same_output_and_keeps_gradients(monkeypatch):
    monkeypatch.setenv("LORAKIT_GPTQ_CACHE", "1")
    layer, _ = packed_layer()
    assert layer.cache_weights
    x = torch.randn(3, 64)
    with torch.no_grad():
        cached = layer(x)
    assert layer._cache and torch.equal(cached, x @ layer.dequantized())
    x.requires_grad_(True)
    layer(x).sum().backward()  # grad mode takes the autograd path, never the cache
    assert x.grad is not None and x.grad.abs().sum() > 0
    layer.to(torch.float64)
    assert not layer._cache


def test_refuses_what_it_cannot_hold():
    with pytest.raises(ValueError, match="3-bit"):
        GPTQLinear(64, 32, bits=3)
    with pytest.raises(ValueError, match="multiple of 8"):
        GPTQLinear(60, 32, bits=4)
