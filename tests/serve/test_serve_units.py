"""The pieces without a model: the mixture grammar, stop strings and held-back text, the address rule."""

from __future__ import annotations

import pytest

from lorakit.serving.mixes import MixError, parse_adapters_field, parse_mix
from lorakit.serving.sequences import Sequence
from lorakit.serving.setup import check_address, is_loopback


def _mix(text, defaults=None):
    return parse_mix(text, "base-id", lambda name: (defaults or {}).get(name, 1.0))


def test_mixture_grammar():
    assert _mix("base-id") == ()
    assert _mix("a") == (("a", 1.0),)
    assert _mix("b:0.3+a:0.7") == (("a", 0.7), ("b", 0.3))
    assert _mix(" a : 2 + b ", {"b": 0.25}) == (("a", 2.0), ("b", 0.25))
    assert _mix("org/name:rev:0.5") == (("org/name:rev", 0.5),)  # the weight follows the last ':'
    assert _mix("a:0+b") == (("b", 1.0),)  # a zero term changes nothing
    assert _mix("a:-1e-1") == (("a", -0.1),)
    for bad in ("", "a+", "+a", "a++b", ":0.5", "a:", "a+a", "a:1e999", "base-id+a"):
        with pytest.raises(MixError):
            _mix(bad)


def test_adapters_body_field():
    assert parse_adapters_field({"b": 0.5, "a": 1}) == (("a", 1.0), ("b", 0.5))
    assert parse_adapters_field([{"name": "a", "weight": 0.7}, {"name": "b"}]) == (("a", 0.7), ("b", 1.0))
    for bad in ("a", [1], {"a": "x"}, [{"weight": 1}], {"a": True}):
        with pytest.raises(MixError):
            parse_adapters_field(bad)


class _Tokens:
    """Decodes ids as characters (id 0 is the end of sequence, 9 an incomplete UTF-8 byte)."""

    def decode(self, ids, skip_special_tokens=True):
        return "".join("\ufffd" if i == 9 else chr(96 + i) for i in ids if i != 0)


def _run(tokens, stops=(), max_tokens=50):
    events = []
    seq = Sequence([1], (), None, max_tokens, stops, lambda kind, data: events.append((kind, data)))
    for token in tokens:
        if seq.advance(token, _Tokens(), {0}):
            break
    return "".join(d["text"] for k, d in events if k == "text"), events[-1]


def test_stop_strings_are_cut_and_never_streamed_in_part():
    text, last = _run([1, 2, 3, 4, 5], stops=("cd",))
    assert text == "ab" and last[1]["finish_reason"] == "stop" and last[1]["text"] == "ab"
    text, last = _run([1, 2, 3, 1], stops=("cx",), max_tokens=4)  # 'c' was held back, then released
    assert text == "abca" and last[1]["finish_reason"] == "length"


def test_incomplete_characters_wait_and_eos_stops():
    events = []
    seq = Sequence([1], (), None, 10, (), lambda kind, data: events.append((kind, data)))
    seq.advance(9, _Tokens(), {0})
    assert events == []  # nothing certain yet
    seq.advance(1, _Tokens(), {0})
    assert seq.advance(0, _Tokens(), {0}) and events[-1][1]["finish_reason"] == "stop"
    assert events[-1][1]["usage"] == {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4}


def test_address_rule():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and not is_loopback("0.0.0.0")
    check_address("127.0.0.1", None, False)
    check_address("0.0.0.0", "key", False)
    check_address("0.0.0.0", None, True)
    from lorakit.errors import UsageError

    with pytest.raises(UsageError, match="needs --api-key"):
        check_address("192.168.1.5", None, False)
