"""Merging LoRAs into a base model, combining adapters, and exporting (HF, Meta state_dict, GGUF LoRA).

The default merge streams tensor by tensor: each base tensor a LoRA changes is read from its shard
with plain file reads (no mmap, so untouched pages never count as resident memory) into one reused
buffer, updated in fp32 in place, cast back and written straight into its output shard; a tensor
that keeps its bytes is copied file to file in the kernel. Peak memory is about one tensor plus the
adapters, whatever the model size. Nothing in this package imports torch at import time, and a merge
without verification never imports transformers or PEFT.
"""
