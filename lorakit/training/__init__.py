"""Training: datasets (formats, chat, raw text, masking) and the training loop.

Keep this file free of imports: ``lorakit --help`` and the built-in formatter plugin import
sub-modules of this package at start-up, and torch/transformers must stay out of that path.
"""
