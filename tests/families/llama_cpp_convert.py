"""Run llama.cpp's ``convert_hf_to_gguf.py`` on a tiny test model (F32), with two test-only patches.

The tiny models use a BPE tokenizer llama.cpp has never seen, so its pre-tokenizer check (a hash of
known tokenizers) would refuse it, and some families try sentencepiece first. Neither matters for
logits computed from token ids: the patches name the pre-tokenizer ``default`` and skip sentencepiece.
Usage: ``python llama_cpp_convert.py LLAMA_CPP_DIR MODEL_DIR OUT.gguf``.
"""

import sys

llama_cpp_dir, model_dir, out = sys.argv[1:4]
sys.path.insert(0, llama_cpp_dir)
sys.path.insert(1, f"{llama_cpp_dir}/gguf-py")
import conversion.base as base  # noqa: E402


def _no_sentencepiece(self):
    raise FileNotFoundError("test models have no tokenizer.model")


import conversion  # noqa: E402

_get_model_class = conversion.get_model_class


def _gpt2_vocab_class(name, mmproj=False):
    cls = _get_model_class(name, mmproj)
    cls.set_vocab = base.TextModel._set_vocab_gpt2  # the tiny models ship a BPE tokenizer.json only
    return cls


base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "default"
base.TextModel._create_vocab_sentencepiece = _no_sentencepiece
conversion.get_model_class = _gpt2_vocab_class
sys.argv = ["convert_hf_to_gguf.py", model_dir, "--outfile", out, "--outtype", "f32"]
import runpy  # noqa: E402

runpy.run_path(f"{llama_cpp_dir}/convert_hf_to_gguf.py", run_name="__main__")
