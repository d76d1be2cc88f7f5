"""Fixtures and helpers for the merge tests: extra real PEFT adapters on the tiny Llama, PEFT references.

Not a conftest.py: a second ``conftest`` module would shadow the root one. Test modules import the
fixtures they use from here; the builders (``tests/lorakit_testing.py``) are cached, so a fixture
imported into several modules still builds its adapter once per session.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lorakit_testing import (  # tests/ is on sys.path (the root conftest)
    build_tiny_model,
    make_peft_adapter,
)

_built: dict[Path, Path] = {}


def _adapter(base: Path, out: Path, **kwargs) -> Path:
    if out not in _built:
        _built[out] = make_peft_adapter(base, out, **kwargs)
    return _built[out]


def _model(out: Path, **kwargs) -> Path:
    if out not in _built:
        _built[out] = build_tiny_model(out, **kwargs)
    return _built[out]

PROMPT = "The quick brown fox jumps over the lazy dog. Paris is the capital of France."


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run 100x slower with 2 OpenMP threads on a busy 2-core machine (spinning threads); 1 is plenty."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def adapters_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.getbasetemp() / "merge-adapters"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def same_rank_adapter_dir(tiny_model_dir, adapters_dir) -> Path:
    """A second r=4 adapter on q/v (linear, ties and dare need equal ranks)."""
    return _adapter(tiny_model_dir, adapters_dir / "same-rank", seed=3, r=4, alpha=16)


@pytest.fixture(scope="session")
def dora_adapter_dir(tiny_model_dir, adapters_dir) -> Path:
    return _adapter(tiny_model_dir, adapters_dir / "dora", seed=4, use_dora=True, targets=("q_proj", "v_proj", "up_proj"))


@pytest.fixture(scope="session")
def embedding_adapter_dir(tiny_model_dir, adapters_dir) -> Path:
    """LoRA on embed_tokens and q_proj plus a full lm_head copy (modules_to_save); PEFT also saves the embedding base."""
    return _adapter(tiny_model_dir, adapters_dir / "embedding", seed=5, targets=("q_proj", "embed_tokens"), modules_to_save=["lm_head"])


@pytest.fixture(scope="session")
def rslora_adapter_dir(tiny_model_dir, adapters_dir) -> Path:
    return _adapter(
        tiny_model_dir, adapters_dir / "rslora", seed=6, r=8, alpha=4, targets=("q_proj", "k_proj", "gate_proj"),
        use_rslora=True, alpha_pattern={"k_proj": 32}, rank_pattern={"gate_proj": 2},
    )


@pytest.fixture(scope="session")
def tied_model_dir(adapters_dir) -> Path:
    return _model(adapters_dir / "tiny-tied", seed=7, tie_word_embeddings=True)


@pytest.fixture(scope="session")
def tied_head_adapter_dir(tied_model_dir, adapters_dir) -> Path:
    return _adapter(tied_model_dir, adapters_dir / "tied-head", seed=8, targets=("q_proj", "lm_head"), scale=0.3)


@pytest.fixture(scope="session")
def other_base_adapter_dir(adapters_dir) -> Path:
    """A real adapter for a different base (hidden size 32)."""
    base = _model(adapters_dir / "tiny-32", seed=9, hidden_size=32, intermediate_size=64)
    return _adapter(base, adapters_dir / "lora-32")


def logits(model_or_dir, text: str = PROMPT, tokenizer_dir=None):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = model_or_dir
    if isinstance(model_or_dir, (str, Path)):
        model = AutoModelForCausalLM.from_pretrained(model_or_dir, dtype=torch.float32)
        tokenizer_dir = tokenizer_dir or model_or_dir
    ids = AutoTokenizer.from_pretrained(tokenizer_dir)(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model.eval()(input_ids=ids).logits


def peft_merged(base_dir: Path, adapters: list[tuple[Path, float]]):
    """PEFT's own merge: the adapters loaded, scaled by their weights, merge_and_unload()."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    names = [f"adapter{index}" for index in range(len(adapters))]
    model = PeftModel.from_pretrained(base, str(adapters[0][0]), adapter_name=names[0])
    for name, (path, _) in zip(names[1:], adapters[1:]):
        model.load_adapter(str(path), adapter_name=name)
    model.base_model.set_adapter(names)
    for module in model.modules():
        if hasattr(module, "set_scale") and hasattr(module, "scaling"):
            for name, (_, weight) in zip(names, adapters):
                module.set_scale(name, weight)
    return model.merge_and_unload()


def no_leftovers(folder: Path) -> list[str]:
    """Temporary files or folders a failed merge could have left beside its output."""
    return sorted(path.name for path in Path(folder).iterdir() if ".tmp-" in path.name)
