"""The fused vocabulary projection + cross-entropy equals the stock path; the fast CPU LoRA dropout is
a real, seeded Bernoulli dropout at the configured rate."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F


def test_linear_cross_entropy_equals_the_stock_loss_and_gradient():
    from lorakit.training.fused_head import linear_cross_entropy

    torch.manual_seed(0)
    weight, bias = torch.randn(300, 32) * 0.2, torch.randn(300) * 0.1
    hidden = torch.randn(77, 32)
    targets = torch.randint(0, 300, (77,))
    stock_h, fused_h = hidden.clone().requires_grad_(), hidden.clone().requires_grad_()
    stock = F.cross_entropy(F.linear(stock_h, weight, bias), targets, reduction="sum")
    fused = linear_cross_entropy(fused_h, weight, bias, targets, chunk=16)  # chunks that do not divide 77
    (stock * 0.37).backward()
    (fused * 0.37).backward()
    assert float(fused) == pytest.approx(float(stock), rel=1e-6)
    assert torch.allclose(fused_h.grad, stock_h.grad, atol=1e-7, rtol=1e-5)
    with torch.no_grad():
        assert float(linear_cross_entropy(hidden, weight, bias, targets)) == pytest.approx(float(stock), rel=1e-6)


def test_packed_loss_fused_equals_stock_on_a_model(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lorakit.training.dataset import Example
    from lorakit.training.model_setup import attach_lora
    from lorakit.training.params import TrainParams
    from lorakit.training.steps import PackedLoss

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model = attach_lora(base, TrainParams(rank=4, dropout=0.0, init_lora_weights="gaussian"))
    examples = []
    for text in ("Paris is the capital of France.", "To be, or not to be, that is the question."):
        ids = tokenizer(text)["input_ids"]
        examples.append(Example(ids, [-100] * 3 + ids[3:], text))
    results = []
    for fused in (True, False):
        loss_fn = PackedLoss(model, "cpu", None)
        assert loss_fn.fused_head is not None
        if not fused:
            loss_fn.fused_head = None
        model.zero_grad()
        loss, targets = loss_fn(examples)
        (loss / targets).backward()
        results.append((float(loss), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}))
    (fused_loss, fused_grads), (stock_loss, stock_grads) = results
    assert fused_loss == pytest.approx(stock_loss, rel=1e-6)
    for name, grad in stock_grads.items():
        assert torch.allclose(fused_grads[name], grad, atol=1e-7, rtol=1e-4), name


def test_only_a_plain_frozen_head_is_fused(tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from lorakit.training.fused_head import fusable_head

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    for param in model.parameters():
        param.requires_grad_(False)
    assert fusable_head(model) is model.lm_head
    model.config.final_logit_softcapping = 30.0  # Gemma 2: the stock head caps the logits
    assert fusable_head(model) is None
    model.config.final_logit_softcapping = None
    model.lm_head.weight.requires_grad_(True)  # a trained head (modules_to_save)
    assert fusable_head(model) is None
    model.lm_head.weight.requires_grad_(False)
    peft = get_peft_model(model, LoraConfig(r=2, target_modules=["lm_head", "q_proj"]))
    assert fusable_head(peft.get_base_model()) is None  # a LoRA on the head


def test_fast_dropout_rate_scale_seed_and_eval():
    from lorakit.training.fast_dropout import _module_class, quantised_p

    dropout = _module_class()(0.05)
    x = torch.ones(1000, 1000)
    dropout.train()
    torch.manual_seed(3)
    first = dropout(x)
    p = quantised_p(0.05)
    dropped = float((first == 0).float().mean())
    assert abs(dropped - p) < 4 * (p * (1 - p) / x.numel()) ** 0.5
    values = first.unique().tolist()
    assert len(values) == 2 and values[0] == 0.0 and values[1] == pytest.approx(1 / (1 - p), rel=1e-6)
    torch.manual_seed(3)
    assert torch.equal(dropout(x), first)
    assert not torch.equal(dropout(x), first)  # a fresh mask on every call
    dropout.eval()
    assert dropout(x) is x


@pytest.mark.parametrize("rate, swapped", [(0.1, True), (0.0, False)])
def test_attach_lora_swaps_peft_dropout_on_the_cpu(tiny_model_dir, rate, swapped):
    from transformers import AutoModelForCausalLM

    from lorakit.training.fast_dropout import _module_class
    from lorakit.training.model_setup import attach_lora
    from lorakit.training.params import TrainParams

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model = attach_lora(base, TrainParams(rank=4, dropout=rate))
    kinds = {type(d) for m in model.modules() if isinstance(getattr(m, "lora_dropout", None), torch.nn.ModuleDict)
             for d in m.lora_dropout.values()}
    assert kinds == ({_module_class()} if swapped else {torch.nn.Identity})
