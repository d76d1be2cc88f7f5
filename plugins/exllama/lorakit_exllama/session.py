"""A base model on ExLlamaV2 with one LoRA through ``ExLlamaV2Lora``; imported only on a CUDA machine.

ExLlamaV2 pre-multiplies ``lora_scaling`` into the B matrices when a LoRA loads, so a new weight
means loading that LoRA again (milliseconds; the base is untouched). Removal is ``unload()``.
"""

from __future__ import annotations

from lorakit.api import AttachedLora, Session


class ExLlamaSession(Session):
    def __init__(self, loader, model_path, options):
        super().__init__(loader, model_path, options)
        self.cache = None
        self._adapters: dict = {}
        self._active: list = []

    def load_base(self):
        from exllamav2 import ExLlamaV2, ExLlamaV2Cache, ExLlamaV2Config
        from transformers import AutoTokenizer

        config = ExLlamaV2Config(str(self.model_path))
        config.arch_compat_overrides(quiet=True)
        model = ExLlamaV2(config)
        self.cache = ExLlamaV2Cache(model, lazy=True)
        model.load_autosplit(self.cache, progress=False)
        # lorakit's own tokenizer handling (chat templates, probes) is the same for every loader.
        tokenizer = AutoTokenizer.from_pretrained(self.model_path, trust_remote_code=self.options.trust_remote_code)
        return model, tokenizer, "cuda"

    def release_base(self) -> None:
        for adapter in self._adapters.values():
            adapter.unload()
        self._adapters.clear()
        self._active = []
        if self.model is not None:
            self.model.unload()
        self.cache = None
        super().release_base()

    def _load_adapter(self, lora: AttachedLora, weight: float):
        from exllamav2 import ExLlamaV2Lora

        return ExLlamaV2Lora.from_directory(self.model, str(lora.path), lora_scaling=weight)

    def _attach(self, lora: AttachedLora) -> None:
        self._adapters[lora.name] = self._load_adapter(lora, lora.weight)

    def _detach(self, lora: AttachedLora) -> None:
        self._adapters.pop(lora.name).unload()

    def _set_weight(self, lora: AttachedLora, weight: float) -> None:
        self._adapters.pop(lora.name).unload()
        self._adapters[lora.name] = self._load_adapter(lora, weight)
        self._activate(self.names())

    def _activate(self, names: list[str]) -> None:
        self._active = [self._adapters[name] for name in names]

    def forward_logits(self, input_ids, attention_mask=None):
        import torch

        if attention_mask is not None and not bool(attention_mask.all()):
            raise NotImplementedError("the exllama loader scores unpadded sequences only")
        with torch.inference_mode():
            return self.model.forward(input_ids.cpu(), loras=self._active or None).float()

    def generate_ids(self, input_ids, settings, streamer=None):
        import torch

        from lorakit_exllama.sampling import pick_next

        generator = torch.Generator(device="cpu")
        if settings.seed is not None:
            generator.manual_seed(settings.seed)
        ids = input_ids.cpu()
        new: list[int] = []
        eos = self.tokenizer.eos_token_id
        loras = self._active or None
        with torch.inference_mode():
            self.cache.current_seq_len = 0
            if ids.shape[1] > 1:
                self.model.forward(ids[:, :-1], self.cache, preprocess_only=True, loras=loras)
            last = ids[:, -1:]
            for _ in range(settings.max_new_tokens):
                logits = self.model.forward(last, self.cache, loras=loras)[0, -1].float().cpu()
                token = pick_next(logits, settings, torch.tensor(new + ids[0].tolist()), generator)
                new.append(token)
                if streamer is not None:
                    streamer.put(torch.tensor([token]))
                if token == eos:
                    break
                last = torch.tensor([[token]])
        if streamer is not None:
            streamer.end()
        return torch.tensor(new)

    def close(self) -> None:
        self.release_base()
        super().close()
