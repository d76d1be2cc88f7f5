"""The model families lorakit knows by name, read from a model's ``config.json`` (no torch).

Everything else about a model comes from transformers; this table holds only what differs per
family and matters to LoRAs:

- ``llama_cpp``: the architecture llama.cpp's ``convert_hf_to_gguf.py`` registers the HF class under
  (``None`` with the reason when it has none), and ``rope_permute``: whether that converter permutes
  the rows of q/k into Meta's interleaved rotary order (``LlamaModel.undo_permute``: Llama, Mistral
  and Mixtral, which it converts as Llama; Qwen, Gemma and Phi-3 keep HF's order).
- ``fused``: projections that one ``nn.Linear`` computes for several logical ones (Phi-3's
  ``qkv_proj`` and ``gate_up_proj``), so a target named ``q_proj`` or ``gate_proj`` means them.
- ``experts``: mixture-of-experts layers. transformers 5 holds the routed experts as 3-D parameters
  (``mlp.experts.gate_up_proj`` [experts, 2 x ffn, hidden], ``mlp.experts.down_proj``) that are not
  ``nn.Linear``, so ``all-linear`` silently leaves them out; PEFT reaches them only through
  ``target_parameters``. Checkpoints keep one tensor per expert, named per family (``on_disk``);
  transformers concatenates gate then up into ``gate_up_proj`` on load (its conversion mapping).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Experts:
    runtime: str  # the experts module under a decoder layer, as PEFT and transformers name it
    on_disk: str  # the per-expert checkpoint prefix under a decoder layer ({e} = expert index)
    params: dict[str, tuple[str, ...]]  # fused parameter -> per-expert checkpoint leaves, in row order
    count_keys: tuple[str, ...] = ("num_experts", "num_local_experts")


@dataclass(frozen=True)
class Family:
    name: str
    architectures: tuple[str, ...]
    model_types: tuple[str, ...]
    llama_cpp: str | None  # gguf.MODEL_ARCH member name
    rope_permute: bool = False
    fused: dict[str, tuple[str, ...]] = field(default_factory=dict)
    experts: Experts | None = None
    no_gguf_reason: str = ""
    renames: tuple[tuple[str, str], ...] = ()  # runtime module path part -> checkpoint's (transformers renames on load)

    @property
    def meta_layout(self) -> bool:
        """Meta's original LLaMA ``consolidated.00.pth`` layout exists for Llama only."""
        return self.name == "llama"


_QWEN_EXPERTS = Experts("mlp.experts", "mlp.experts.{e}", {"gate_up_proj": ("gate_proj", "up_proj"), "down_proj": ("down_proj",)})
_PHI3_FUSED = {"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")}

FAMILIES = (
    Family("llama", ("LlamaForCausalLM",), ("llama",), "LLAMA", rope_permute=True),
    Family("mistral", ("MistralForCausalLM",), ("mistral",), "LLAMA", rope_permute=True),
    Family("mixtral", ("MixtralForCausalLM",), ("mixtral",), "LLAMA", rope_permute=True,
           experts=Experts("mlp.experts", "block_sparse_moe.experts.{e}", {"gate_up_proj": ("w1", "w3"), "down_proj": ("w2",)}),
           renames=((".mlp.gate", ".block_sparse_moe.gate"),)),
    Family("qwen2", ("Qwen2ForCausalLM",), ("qwen2",), "QWEN2"),
    Family("qwen3", ("Qwen3ForCausalLM",), ("qwen3",), "QWEN3"),
    Family("qwen2-moe", ("Qwen2MoeForCausalLM",), ("qwen2_moe",), "QWEN2MOE", experts=_QWEN_EXPERTS),
    Family("qwen3-moe", ("Qwen3MoeForCausalLM",), ("qwen3_moe",), "QWEN3MOE", experts=_QWEN_EXPERTS),
    Family("gemma2", ("Gemma2ForCausalLM",), ("gemma2",), "GEMMA2"),
    Family("gemma3", ("Gemma3ForCausalLM",), ("gemma3_text",), "GEMMA3"),
    Family("phi3", ("Phi3ForCausalLM",), ("phi3",), "PHI3", fused=_PHI3_FUSED),
)

# Which per-projection names a fused one stands for, and the reverse, for any family (used to
# explain a target that matches nothing: "q_proj is fused into qkv_proj in this model").
FUSED_PARTS = {fused: parts for family in FAMILIES for fused, parts in family.fused.items()}


def family_of(config: dict) -> Family | None:
    """The known family of a model config (architectures first, then ``model_type``), else ``None``."""
    for architecture in config.get("architectures") or []:
        for family in FAMILIES:
            if architecture in family.architectures:
                return family
    model_type = config.get("model_type")
    return next((family for family in FAMILIES if model_type in family.model_types), None)


def describe(config: dict) -> str:
    """A model's architecture as a user would name it: ``MistralForCausalLM`` or its model_type."""
    architectures = config.get("architectures") or []
    return architectures[0] if architectures else str(config.get("model_type", "unknown"))


def expert_count(family: Family, config: dict) -> int:
    for key in family.experts.count_keys if family.experts else ():
        if isinstance(config.get(key), int):
            return int(config[key])
    return 0


def param_wrapper_module(module: str) -> str:
    """``model.layers.0.mlp.experts.base_layer`` -> ``model.layers.0.mlp.experts`` (PEFT nests one wrapper per parameter)."""
    while module.endswith(".base_layer"):
        module = module.removesuffix(".base_layer")
    return module


def is_param_wrapper(module: str, target_parameters) -> bool:
    """Whether an adapter's ``module`` is PEFT's wrapper of a 3-D parameter named in ``target_parameters``
    (``...mlp.experts`` or ``...mlp.experts.base_layer``): its A has ``rank x experts`` rows."""
    owner = param_wrapper_module(module)
    targets = [str(target) for target in target_parameters or ()]
    return module.endswith(".base_layer") or any(owner.endswith(target.rpartition(".")[0]) and ".experts" in target for target in targets)
