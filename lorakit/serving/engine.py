"""The continuous-batching engine: one thread, one forward pass per token for every running row.

Each iteration drops cancelled rows, admits waiting sequences (prefilled in one padded forward,
then joined to the batch, :mod:`lorakit.serving.kv_batch`), and runs one decode step for the whole
batch. How the
adapters are applied is decided per forward pass from the rows' mixes:

- every row wants the same non-empty mix, and it can be folded: the weights hold
  ``W + sum w_i s_i B_i A_i`` (lorakit's lazy folding, :mod:`lorakit.loaders.folding`; switching back
  to the base is a pointer swap on the CPU), so one hot adapter runs at the base's speed;
- otherwise the bare base plus per-row deltas (:mod:`lorakit.serving.row_loras`).

A prefill of newcomers whose mix differs from the folded one uses the delta path, so joining never
refolds the running batch. Everything else that changes the model (loading, evicting) runs inside
:meth:`Engine.paused`, which parks the loop between two iterations: a plain lock would starve,
because the loop takes it again the moment it lets go (measured: requests waited up to 7 s to get
their adapter while a batch ran, and batches stayed at 2-3 rows instead of 8).
"""

from __future__ import annotations

import collections
import contextlib
import sys
import threading

from lorakit.serving.api_errors import ApiError
from lorakit.serving.kv_batch import KVBatch, plain_dynamic_cache, zero_padding
from lorakit.serving.sampling import RowSampler, pick_tokens
from lorakit.serving.sequences import Sequence


class Engine:
    def __init__(self, model, tokenizer, device, max_batch: int = 8, max_queue: int = 64, row_loras=None, folding=None):
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.max_batch, self.max_queue = max_batch, max_queue
        self.rows, self.folding = row_loras, folding
        self.folded: tuple = ()
        self.lock = threading.RLock()
        self.tokenizer_lock = threading.Lock()  # fast tokenizers must not encode and decode at once
        self._wake = threading.Condition()
        self.waiting: collections.deque[Sequence] = collections.deque()
        self.running: list[Sequence] = []
        self.kv = KVBatch()
        self.on_finished = lambda seq: None  # the server releases the sequence's adapters here
        self.eos_ids = _eos_ids(model, tokenizer)
        config = getattr(model, "config", None)
        self.context = int(getattr(config, "max_position_embeddings", 0) or 0) or 1 << 30
        self._batchable: bool | None = None  # known after the first prefill
        self.max_prefill_tokens = 4096  # padded tokens in one prefill forward
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(self.eos_ids), 0)
        self.pad_id = int(pad)
        self._cache_arg = _cache_argument(model)
        self._stopping = False
        self._pausers = 0
        self._thread: threading.Thread | None = None
        self.steps = 0

    # ---- the outside world ---------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="lorakit-engine", daemon=True)
        self._thread.start()

    def submit(self, seq: Sequence) -> None:
        with self._wake:
            if self._stopping:
                raise ApiError(503, "the server is shutting down", code="shutting_down")
            free_rows = max(0, self.max_batch - len(self.running))
            if len(self.waiting) >= self.max_queue + free_rows:
                raise ApiError(429, f"the queue is full ({self.max_queue} requests waiting); retry shortly",
                               code="queue_full", headers={"Retry-After": "1"})
            seq.sampler = RowSampler(seq.params, seq.prompt_ids, self.device)
            self.waiting.append(seq)
            self._wake.notify()

    def cancel(self, seq: Sequence) -> None:
        """Free a sequence at the next token boundary (its client went away)."""
        seq.cancelled = True
        with self._wake:
            self._wake.notify()

    @contextlib.contextmanager
    def paused(self):
        """Hold the model still between two iterations (adapters loaded or evicted meanwhile)."""
        with self._wake:
            self._pausers += 1
        try:
            with self.lock:
                yield
        finally:
            with self._wake:
                self._pausers -= 1
                self._wake.notify_all()

    def busy(self) -> int:
        return len(self.waiting) + len(self.running)

    def stop(self, timeout: float = 10.0) -> None:
        """Cancel what is left and end the thread (the server calls it after its grace period)."""
        with self._wake:
            self._stopping = True
            for seq in list(self.waiting) + list(self.running):
                seq.cancelled = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def stop_accepting(self) -> None:
        with self._wake:
            self._stopping = True

    # ---- the loop ------------------------------------------------------------------------------------
    def _run(self) -> None:
        import torch

        while True:
            with self._wake:
                while self._pausers or (not self.waiting and not self.running and not self._stopping):
                    self._wake.wait()
                if self._stopping and not self.waiting and not self.running:
                    return
            finished: list[Sequence] = []
            try:
                with self.lock, torch.inference_mode():
                    self._iteration(finished)
            except Exception as error:  # one bad step must not take the server down
                print(f"lorakit serve: engine step failed: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
                with self._wake:
                    victims = self.running + [seq for seq in finished if seq.finish is None]
                    self.running, self.kv = [], KVBatch()
                for seq in victims:
                    seq.fail(f"internal error while generating: {type(error).__name__}")
                    finished.append(seq)
            for seq in finished:
                self.on_finished(seq)

    def _iteration(self, finished: list[Sequence]) -> None:
        gone = [i for i, seq in enumerate(self.running) if seq.cancelled]
        if gone:
            finished.extend(self.running[i] for i in gone)
            keep = [i for i, seq in enumerate(self.running) if not seq.cancelled]
            self.kv.keep(keep)
            self.running = [self.running[i] for i in keep]
        newcomers = self._admit(finished)
        if newcomers:
            self._prefill(newcomers, finished)
        if self.running:
            self._decode(finished)

    def _admit(self, finished: list[Sequence]) -> list[Sequence]:
        """Waiting sequences that fit in the batch, for one prefill (their padded tokens bounded)."""
        if self._batchable is None:
            room = 1 if not self.running else 0  # the first prefill tells whether the cache can be joined
        else:
            room = (self.max_batch if self._batchable else 1) - len(self.running)
        taken: list[Sequence] = []
        longest = 0
        with self._wake:
            while len(taken) < room and self.waiting:
                seq = self.waiting[0]
                if seq.cancelled:
                    finished.append(self.waiting.popleft())
                    continue
                longest = max(longest, len(seq.prompt_ids))
                if taken and longest * (len(taken) + 1) > self.max_prefill_tokens:
                    break
                taken.append(self.waiting.popleft())
        return taken

    def _use(self, mixes: list[tuple], decoding: bool) -> None:
        """Fold the one shared mix, or unfold and give each row its own delta."""
        first = mixes[0]
        uniform = all(mix == first for mix in mixes)
        foldable = self.folding is not None and all(name in self.folding.adapters for name, _ in first)
        if uniform and (not first or (foldable and (decoding or first == self.folded or not self.running))):
            self._fold(first)
            if self.rows is not None:
                self.rows.clear()
            return
        self._fold(())
        if self.rows is not None:
            self.rows.set_rows(mixes)

    def _fold(self, mix: tuple) -> None:
        if self.folding is None or mix == self.folded:
            return
        for name, weight in mix:
            self.folding.adapters[name].weight = weight
        self.folding.apply([name for name, _ in mix])
        self.folding.sync()
        self.folded = mix

    def _ban_eos(self, logits, rows: list[Sequence]):
        """Rows still short of their ``min_tokens`` cannot pick an end-of-sequence token."""
        early = [i for i, seq in enumerate(rows) if len(seq.generated) < seq.min_tokens]
        if early and self.eos_ids:
            logits = logits.clone()
            for i in early:
                logits[i, list(self.eos_ids)] = float("-inf")
        return logits

    def _prefill(self, seqs: list[Sequence], finished: list[Sequence]) -> None:
        """One forward for every newcomer, left-padded to the longest prompt, then joined to the batch.

        Rows are masked and given their own positions, so each sees what it would see alone; the
        padding columns of the new cache are zeroed (the kernels leave garbage there, and a NaN in a
        masked value would still poison the sum).
        """
        import torch

        self._use([seq.mix for seq in seqs], decoding=False)
        longest = max(len(seq.prompt_ids) for seq in seqs)
        pads = [longest - len(seq.prompt_ids) for seq in seqs]
        ids = torch.tensor([[self.pad_id] * pad + seq.prompt_ids for seq, pad in zip(seqs, pads)], dtype=torch.long, device=self.device)
        mask = torch.tensor([[0] * pad + [1] * (longest - pad) for pad in pads], dtype=torch.long, device=self.device)
        extra = {}
        if any(pads):
            extra = {"attention_mask": mask,
                     "position_ids": torch.tensor([[0] * pad + list(range(longest - pad)) for pad in pads], dtype=torch.long, device=self.device)}
        out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1, **extra)
        cache = _returned_cache(out)
        if self._batchable is None:
            self._batchable = plain_dynamic_cache(cache)  # sliding-window caches cannot be padded and joined: one row at a time
        if any(pads):
            zero_padding(cache, pads)
        tokens = pick_tokens(self._ban_eos(out.logits[:, -1], seqs), [seq.sampler for seq in seqs], [seq.generated for seq in seqs])
        start = len(self.running)
        self.kv.add(cache, mask)
        self.running.extend(seqs)
        self._advance(start, tokens, finished)

    def _decode(self, finished: list[Sequence]) -> None:
        import torch

        rows = self.running
        self._use([seq.mix for seq in rows], decoding=True)
        ids = torch.tensor([[seq.generated[-1]] for seq in rows], dtype=torch.long, device=self.device)
        positions = torch.tensor([[seq.position] for seq in rows], dtype=torch.long, device=self.device)
        mask = self.kv.step_mask()
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **{self._cache_arg: self.kv.cache})
        self.kv.cache = _returned_cache(out)
        tokens = pick_tokens(self._ban_eos(out.logits[:, -1], rows), [seq.sampler for seq in rows], [seq.generated for seq in rows])
        self.steps += 1
        self._advance(0, tokens, finished)

    def _advance(self, first: int, tokens, finished: list[Sequence]) -> None:
        """Give ``running[first:]`` their new tokens; rows that ended, were cancelled or reached the
        context leave the batch (and its cache)."""
        keep = list(range(first))
        for index, (seq, token) in enumerate(zip(self.running[first:], tokens), start=first):
            with self.tokenizer_lock:
                ended = seq.advance(token, self.tokenizer, self.eos_ids)
            if ended or seq.cancelled or seq.position + 1 >= self.context:
                if not ended:
                    seq.finish = seq.finish or "length"
                    if not seq.cancelled:
                        seq.emit("done", {"finish_reason": "length", "usage": seq.usage(), "text": seq.sent})
                finished.append(seq)
            else:
                keep.append(index)
        if len(keep) != len(self.running):
            self.kv.keep(keep)
            self.running = [self.running[i] for i in keep]


def _eos_ids(model, tokenizer) -> set[int]:
    ids: set[int] = set()
    for value in (getattr(getattr(model, "generation_config", None), "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(v for v in value if isinstance(v, int))
    return ids


def _cache_argument(model) -> str:
    """transformers 5.24 renamed ``past_key_values`` to ``cache`` (the old name warns)."""
    import inspect

    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return "past_key_values"
    return "cache" if "cache" in parameters else "past_key_values"


def _returned_cache(out):
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values
