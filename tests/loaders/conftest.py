"""The shared GPTQ checkpoints (tiny RTN-packed, SmolLM2 by GPTQModel) for the loader tests."""

from gptq_fixtures import smollm2_gptq_dir, tiny_gptq_dir  # noqa: F401
