"""Map errors raised inside libraries (torch, transformers, safetensors, OS) to one actionable line."""

from __future__ import annotations

import errno


def translate(error: BaseException) -> str:
    name = type(error).__name__
    text = " ".join(str(error).split()) or name
    if len(text) > 300:
        text = text[:297] + "..."
    if "weights_only" in text:  # torch's refusal of a pickle; its advice (weights_only=False) would run the pickle's code
        return "a pickle file holds more than plain tensors, and loading it could run code; lorakit loads only tensors from pickles (convert the file to safetensors)"
    if isinstance(error, MemoryError) or "out of memory" in text.lower():
        return f"out of memory ({text}); try a smaller --micro-batch-size, --cutoff-len, or --load-in-8bit/--load-in-4bit"
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return "no space left on the device; free some disk space or choose another --output"
    if isinstance(error, NotADirectoryError) or (isinstance(error, OSError) and error.errno == errno.ENOTDIR):
        return f"a file stands where a folder should be: {getattr(error, 'filename', '') or text}; move it or choose another path"
    if isinstance(error, PermissionError):
        return f"permission denied: {getattr(error, 'filename', '') or text}; choose a folder you can write to"
    if isinstance(error, FileNotFoundError):
        return f"file not found: {getattr(error, 'filename', '') or text}"
    if "SafetensorError" in name or "HeaderTooLarge" in text or "safetensors" in text.lower():
        return f"a safetensors file is damaged or incomplete ({text}); download or save it again"
    if "size mismatch" in text:
        return f"tensor shapes do not match ({text}); the adapter was probably made for another base model"
    return f"{name}: {text} (set LORAKIT_DEBUG=1 for the traceback)"
