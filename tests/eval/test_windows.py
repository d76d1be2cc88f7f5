"""The window plan against a literal simulation of the documented loop (pure Python, no torch)."""

import pytest

from lorakit.errors import UsageError
from lorakit.evaluation.windows import (
    batches,
    check_window_settings,
    plan_document,
    plan_windows,
)


def documented_scoring(n, max_length, stride):
    """(position, first context position) of every token the documented loop scores."""
    scored, prev_end = [], 0
    for begin in range(0, n, stride):
        end = min(begin + max_length, n)
        trg_len = end - prev_end
        labels = list(range(begin, end))
        for index in range(len(labels) - trg_len):
            labels[index] = None  # -100
        # the model's shift: position i of the window predicts labels[i + 1]
        scored += [(label, begin) for label in labels[1:] if label is not None]
        prev_end = end
        if end == n:
            break
    return scored


def planned_scoring(n, max_length, stride):
    return [(w.begin + p, w.begin) for w in plan_document(0, n, max_length, stride) for p in range(w.first_target, w.length)]


@pytest.mark.parametrize("max_length", [2, 3, 5, 8])
def test_plan_scores_what_the_documented_loop_scores(max_length):
    for stride in range(1, max_length + 1):
        for n in range(0, 40):
            assert planned_scoring(n, max_length, stride) == documented_scoring(n, max_length, stride), (n, max_length, stride)


def test_with_overlap_every_token_but_the_first_is_scored_once():
    positions = [p for p, _ in planned_scoring(1000, 64, 16)]
    assert positions == list(range(1, 1000))


def test_without_overlap_each_window_loses_its_first_token():
    windows = plan_document(0, 100, 10, 10)
    assert len(windows) == 10 and all(w.first_target == 1 for w in windows)
    assert len(planned_scoring(100, 10, 10)) == 100 - 10


def test_windows_never_exceed_max_length_and_short_documents_are_skipped():
    windows = plan_windows([0, 1, 2, 300], 32, 8)
    assert {w.doc for w in windows} == {2, 3}
    assert max(w.length for w in windows) == 32


@pytest.mark.parametrize(
    "max_length, stride, context, expected",
    [
        (1, 1, None, "--max-length must be at least 2"),
        (8, 0, None, "--stride must be at least 1"),
        (8, 9, None, "--stride (9) is larger than --max-length (8)"),
        (4096, 512, 2048, "exceeds the model's context of 2048"),
    ],
)
def test_bad_settings_get_one_clear_line(max_length, stride, context, expected):
    with pytest.raises(UsageError) as raised:
        check_window_settings(max_length, stride, context)
    assert expected in raised.value.one_line()
    assert "\n" not in raised.value.one_line()


def test_batches_hold_one_shape_and_every_window_once():
    windows = plan_windows([100, 37, 64], 16, 8)
    seen = []
    for batch in batches(windows, 5):
        assert len(batch) <= 5 and len({w.shape for w in batch}) == 1
        seen += batch
    assert sorted(seen, key=lambda w: (w.doc, w.begin)) == sorted(windows, key=lambda w: (w.doc, w.begin))
