"""Merging LoRAs into a base model, combining adapters, and exporting (HF, Meta state_dict, GGUF LoRA).

The default merge streams tensor by tensor: each base tensor is read from its shard with plain file
reads (no mmap, so untouched pages never count as resident memory), updated in fp32, cast back and
written straight into its output shard. Peak memory is about one tensor plus the adapters, whatever
the model size. Nothing in this package imports torch at import time.
"""
