"""The engine itself, below HTTP: newcomers prefilled together, adapter loads that do not starve."""

from __future__ import annotations

import threading
import time

from serve_helpers import open_tiny_runtime, wait_idle

from lorakit.serving.sampling import SamplingParams
from lorakit.serving.sequences import Sequence

GREEDY = SamplingParams(temperature=0.0)


def _prefills(model) -> list:
    """Record the (rows, columns) of every forward that prefills (more than one column)."""
    seen = []

    def hook(module, args, kwargs):
        ids = kwargs.get("input_ids")
        if ids is not None and ids.shape[1] > 1:
            seen.append(tuple(ids.shape))

    model.register_forward_pre_hook(hook, with_kwargs=True)
    return seen


def _run(runtime, jobs, max_tokens=10) -> list[list[int]]:
    seqs = []
    for mix, prompt in jobs:
        runtime.acquire(mix)
        seqs.append(Sequence(list(prompt), mix, GREEDY, max_tokens, ignore_eos=True))
    with runtime.engine._wake:  # all of them waiting when the engine next looks: one admission
        for seq in seqs:
            runtime.engine.submit(seq)
    assert wait_idle(runtime.engine, 60)
    return [seq.generated for seq in seqs]


def test_newcomers_share_one_padded_prefill_and_match_their_solo_runs(tiny_model_dir, serve_loras):
    runtime = open_tiny_runtime(tiny_model_dir, serve_loras)
    try:
        prefills = _prefills(runtime.session.model)
        a, b = (("a", 1.0),), (("b", 1.0),)
        jobs = [((), [5, 9, 13]), (a, [7, 3, 11, 2, 8, 21, 4, 6, 30]), (b, [17, 18, 19, 20, 23]), (a + b, [40, 41, 42, 43, 44, 45, 46]),
                ((("a", 0.5), ("b", 0.5)), [12, 14])]
        solo = [_run(runtime, [job])[0] for job in jobs]
        assert len(prefills) == len(jobs) and all(rows == 1 for rows, _ in prefills)
        prefills.clear()
        together = _run(runtime, jobs)
        assert together == solo
        assert prefills == [(len(jobs), 9)]  # one forward, left-padded to the longest prompt
    finally:
        runtime.close()


def test_a_bounded_prefill_splits_long_newcomers(tiny_model_dir, serve_loras):
    runtime = open_tiny_runtime(tiny_model_dir, serve_loras)
    try:
        prefills = _prefills(runtime.session.model)
        _run(runtime, [((), [3, 4])])  # the first prefill runs alone (it tells whether caches can be joined)
        prefills.clear()
        runtime.engine.max_prefill_tokens = 60
        prompts = [list(range(1, 21)), list(range(2, 22)), list(range(3, 23)), list(range(4, 24))]
        _run(runtime, [((), p) for p in prompts], max_tokens=3)
        assert prefills == [(3, 20), (1, 20)]
    finally:
        runtime.close()


def test_loading_an_adapter_does_not_wait_for_the_running_batch(tiny_model_dir, serve_loras):
    """A lock the loop takes again at once would starve the loader until the batch drained."""
    runtime = open_tiny_runtime(tiny_model_dir, serve_loras, max_loaded_loras=4)
    # forwards as slow as a real model's (the loop holds the model for each one and lets go only briefly)
    runtime.session.model.register_forward_pre_hook(lambda module, args: time.sleep(0.02))
    try:
        long = Sequence([5, 6, 7], (), GREEDY, 150, ignore_eos=True)
        runtime.engine.submit(long)
        deadline = time.monotonic() + 30
        while len(long.generated) < 5 and time.monotonic() < deadline:
            time.sleep(0.005)
        loaded = threading.Event()

        def load():
            runtime.acquire((("b", 1.0),))
            loaded.set()

        threading.Thread(target=load, daemon=True).start()
        assert loaded.wait(30)
        assert long.finish is None, "the adapter loaded only after the running sequence had finished"
        assert "b" in runtime.pool.loaded
        runtime.engine.cancel(long)
        assert wait_idle(runtime.engine, 30)
        runtime.release((("b", 1.0),))
    finally:
        runtime.close()


def test_paused_holds_the_loop_between_iterations(tiny_model_dir, serve_loras):
    runtime = open_tiny_runtime(tiny_model_dir, serve_loras)
    engine = runtime.engine
    try:
        long = Sequence([5, 6, 7], (), GREEDY, 300, ignore_eos=True)
        engine.submit(long)
        while len(long.generated) < 3:
            time.sleep(0.005)
        with engine.paused():
            held = len(long.generated)
            time.sleep(0.3)
            assert len(long.generated) == held  # no step while an adapter would be swapped in
        engine.cancel(long)
        assert wait_idle(engine, 30)
        assert 3 <= len(long.generated) < 300
    finally:
        runtime.close()
