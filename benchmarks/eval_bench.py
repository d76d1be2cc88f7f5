"""eval: strided perplexity tokens/s of lorakit eval against a straightforward transformers loop.

Model: the real SmolLM2-135M-Instruct, lorakit's default precision (fp32 on CPU, bf16 on CUDA).
Data: the start of WikiText-2 raw test (shared/data/wikitext2_test.raw.txt): 4,000 characters with
--quick (about 1,000 tokens), 40,000 otherwise (about 9,000); max length 512, stride 256.
lorakit side: what ``lorakit eval`` runs once the model is loaded (tokenize the dataset, plan the
windows, score them in batches: lorakit.evaluation.documents / windows / scoring) on a session from
``lorakit.inference.planning.open_session``.
Reference: the loop of the transformers documentation ("Perplexity of fixed-length models"), one
window at a time, ``model(input_ids, labels=target_ids).loss`` on a model loaded the plain way, with
the exact token count (the labels left after the model's shift).
Both models are loaded before timing; each timed call tokenizes and scores the whole text.
Interleaved, one warm-up round, 3 runs with --quick, 5 otherwise.
Checked before the ratio: both perplexities and token counts agree (relative difference < 1e-5 in
fp32, < 2e-3 in bf16, where batched and single-window matmuls round differently).
Target: tokens/s >= 1.0x the reference.
"""

from __future__ import annotations

import math
from pathlib import Path

from benchmarks.harness import REPO_ROOT, device_label, failed, interleave, record
from benchmarks.models import load_reference, smollm2

NAME = "eval"
MAX_LENGTH, STRIDE = 512, 256
DATA = REPO_ROOT.parent / "shared" / "data" / "wikitext2_test.raw.txt"


def reference_loop(model, tokenizer, text: str, device: str) -> tuple[float, int]:
    """(mean NLL, tokens) the documented way, one window per forward pass."""
    import torch

    input_ids = tokenizer(text, return_tensors="pt").input_ids
    seq_len = input_ids.size(1)
    nll_sum, n_tokens, prev_end = 0.0, 0, 0
    for begin in range(0, seq_len, STRIDE):
        end = min(begin + MAX_LENGTH, seq_len)
        trg_len = end - prev_end
        window = input_ids[:, begin:end].to(device)
        target_ids = window.clone()
        target_ids[:, :-trg_len] = -100
        with torch.no_grad():
            loss = model(window, labels=target_ids).loss
        counted = int((target_ids[:, 1:] != -100).sum())
        nll_sum += loss.item() * counted
        n_tokens += counted
        prev_end = end
        if end == seq_len:
            break
    return nll_sum / n_tokens, n_tokens


def lorakit_eval(session, dataset_path: Path) -> tuple[float, int]:
    from lorakit.evaluation.documents import tokenize_dataset
    from lorakit.evaluation.scoring import WindowScorer, auto_batch_size, vocab_size
    from lorakit.evaluation.sources import resolve_dataset
    from lorakit.evaluation.windows import plan_windows

    tokenized = tokenize_dataset(resolve_dataset(str(dataset_path)), session.tokenizer)
    windows = plan_windows([int(doc.ids.numel()) for doc in tokenized.documents], MAX_LENGTH, STRIDE)
    batch = auto_batch_size(session.device(), MAX_LENGTH, STRIDE, vocab_size(session))
    total = WindowScorer(session, tokenized.documents, batch).score(windows)
    return total.mean_nll, total.tokens


def run(quick: bool) -> list[dict]:
    import tempfile

    from lorakit.inference.planning import open_session
    from lorakit.loaders.devices import torch_dtype
    from lorakit.loaders.options import LoadOptions

    if not DATA.is_file():
        return [failed(NAME, f"{DATA} is missing", metric="tokens_per_s", target=">= 1.0")]
    text = DATA.read_text(encoding="utf-8")[: 4_000 if quick else 40_000]
    model_dir = smollm2()
    options = LoadOptions()
    session, _ = open_session(str(model_dir), options=options, quiet=True)
    device = session.device()
    label = device_label(device)
    dtype = torch_dtype(options.dtype, device)
    model, tokenizer = load_reference(model_dir, device, dtype)
    with tempfile.TemporaryDirectory(prefix="lorakit-bench-eval-") as tmp:
        dataset = Path(tmp) / "wikitext-slice.txt"
        dataset.write_text(text, encoding="utf-8")
        results: dict[str, tuple[float, int]] = {}

        def lorakit_side():
            results["lorakit"] = lorakit_eval(session, dataset)

        def reference_side():
            results["reference"] = reference_loop(model, tokenizer, text, device)

        samples = interleave({"lorakit": lorakit_side, "reference": reference_side}, repeats=3 if quick else 5, warmup=1)
    (mine_nll, mine_tokens), (ref_nll, ref_tokens) = results["lorakit"], results["reference"]
    mine_ppl, ref_ppl = math.exp(mine_nll), math.exp(ref_nll)
    difference = abs(mine_ppl - ref_ppl) / ref_ppl
    tolerance = 1e-5 if str(dtype).endswith("float32") else 2e-3
    checked = f"ppl {mine_ppl:.5f} vs {ref_ppl:.5f} (rel diff {difference:.1e}), {mine_tokens} vs {ref_tokens} tokens"
    ok = difference < tolerance and mine_tokens == ref_tokens
    rates = {side: [ref_tokens / sample["seconds"] for sample in samples[side]] for side in samples}
    return [
        record(NAME, "tokens_per_s", rates["lorakit"], rates["reference"], target=">= 1.0", checked=checked, check_ok=ok,
               device=label, unit="tok/s", note=f"SmolLM2-135M, {ref_tokens} tokens, max length {MAX_LENGTH}, stride {STRIDE}"),
    ]
