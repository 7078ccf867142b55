"""Bad input for every model and known setting, and property tests for the codecs."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smarttrade.errors import DecodeError, ValidationError
from smarttrade.models import Calc, FootprintLevel, OrderFlowBucket, Quote, Session, Trade, decode, encode
from smarttrade.stores.configs import MAX_DEPTH, MAX_VALUE_BYTES, _tolerant, validate_setting

BAD = [
    (Quote, '{"price":"abc"}', r"Expected float, got str - at \$.price"),
    (Quote, '{"price":5.2,"volume":-1}', r"Expected int >= 0 - at \$.volume"),
    (Quote, '{"price":0}', r"Expected float > 0.0 - at \$.price"),
    (Quote, '{"price":5.2,"bid":"x"}', r"\$.bid"),
    (Quote, '{"price":5.2,"symbol":"d:ol"}', r"\$.symbol"),
    (Quote, '{"price":1e999}', r"\$.price"),
    (Quote, "[1,2]", "Expected object, got array"),
    (Quote, "not json", "malformed"),
    (Trade, '{"price":1,"volume":0,"side":"buy","time":1}', r"\$.volume"),
    (Trade, '{"price":1,"volume":1,"side":"hold","time":1}', r"Invalid enum value 'hold' - at \$.side"),
    (Trade, '{"price":1,"volume":1,"side":"buy","time":-5}', r"\$.time"),
    (Trade, '{"price":1,"volume":1,"side":"buy"}', "missing required field time"),
    (OrderFlowBucket, '{"trades":{"a":1}}', r"\$.trades"),
    (OrderFlowBucket, '{"trades":[{"price":1}]}', r"\$.trades\[0\]"),
    (FootprintLevel, '{"buy_volume":-3}', r"\$.buy_volume"),
    (FootprintLevel, '{"buy_volume":1,"imbalance":1.5}', r"\$.imbalance"),
    (Calc, '{"period":14}', "missing required field value"),
    (Calc, '{"value":1,"period":0}', r"\$.period"),
    (Session, '{"subscriptions":["DOL"]}', "missing required field socket_id"),
    (Session, '{"socket_id":"a","subscriptions":"DOL"}', r"\$.subscriptions"),
    (Session, '{"socket_id":"a","user_id":"has space"}', r"\$.user_id"),
]


@pytest.mark.parametrize(("kind", "raw", "message"), BAD)
def test_bad_values_name_the_field(kind: type, raw: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message) as info:
        decode(kind, raw, "somekey")
    assert str(info.value).startswith("somekey: ")


def test_lenient_numbers_typed_by_hand() -> None:
    assert decode(Quote, '{"price":"5.234","volume":"1000"}', "k") == Quote(price=5.234, volume=1000)


def _nested(depth: int) -> list[object]:
    """[[[...]]] ``depth`` lists deep, built without recursion."""
    value: list[object] = []
    for _ in range(depth - 1):
        value = [value]
    return value


BAD_SETTINGS = [
    ("theme", "blue", "theme: Invalid enum value 'blue'"),
    ("theme", 3, "theme: Expected str"),
    ("symbols", "DOL", "symbols: Expected array"),
    ("symbols", ["DOL", "not a symbol"], r"symbols: .* at \$\[1\]"),
    ("alerts", {"DOL": {"price": -1, "type": "above"}}, r"alerts.DOL: Expected float > 0.0 - at \$.price"),
    ("alerts", {"DOL": {"price": 5.25, "type": "sideways"}}, r"alerts.DOL: Invalid enum value 'sideways'"),
    ("alerts", {"DOL": {"price": 5.25}}, "alerts.DOL: Object missing required field type"),
    (
        "alerts",
        {"DOL": {"price": 5.25, "type": "above", "x": 1}},
        "alerts.DOL: Object contains unknown field x",
    ),
    ("alerts", ["DOL"], "alerts: Expected object"),
    ("layout", "x" * (MAX_VALUE_BYTES + 1), "layout: value is .* bytes; the cap is"),
    ("layout", object(), "layout: not JSON-serialisable"),
    ("layout", float("nan"), r"layout: nan is not a finite number; JSON has no NaN or Infinity - at \$$"),
    ("layout", {"a": [1, float("inf")]}, r"layout: inf is not a finite number.* - at \$.a\[1\]"),
    ("layout", {"w": -float("inf")}, r"layout: -inf is not a finite number.* - at \$.w"),
    ("layout", {float("nan"): 1}, r"layout: nan is not a finite number.* - at \$ \(a key\)"),
    ("layout", (1, {2.5, float("nan")}), "layout: nan is not a finite number"),
    ("alerts", {"DOL": {"price": float("nan"), "type": "above"}}, "alerts: nan is not a finite number"),
    ("layout", _nested(3000), "^layout: nested too deeply$"),
    ("layout", _nested(MAX_DEPTH + 1), "^layout: nested too deeply$"),
    ("layout", [{"a": _nested(MAX_DEPTH)}], "^layout: nested too deeply$"),
    ("symbols", _nested(3000), "^symbols: nested too deeply$"),
    ("alerts", {"DOL": _nested(3000)}, "^alerts: nested too deeply$"),
    ("Bad Name", "x", "setting: 'Bad Name' is not a setting name"),
]


@pytest.mark.parametrize(("name", "value", "message"), BAD_SETTINGS)
def test_bad_settings_name_the_setting(name: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        validate_setting(name, value)


def test_nesting_up_to_the_limit_is_fine() -> None:
    assert validate_setting("layout", _nested(MAX_DEPTH)) == b"[" * MAX_DEPTH + b"]" * MAX_DEPTH


DEEP_ARRAY = b"[" * 3000 + b"]" * 3000
DEEP_OBJECT = b'{"a":' * 3000 + b"1" + b"}" * 3000


@pytest.mark.parametrize(
    ("kind", "raw"),
    [
        (Any, b"[" * 3000),
        (Any, DEEP_ARRAY),
        (Any, DEEP_OBJECT),
        (list, DEEP_ARRAY),
        (dict[str, Any], DEEP_OBJECT),
        (dict[str, Any], b'{"a":' + DEEP_ARRAY + b"}"),
    ],
)
def test_decoding_deep_nesting_is_a_decode_error(kind: object, raw: bytes) -> None:
    with pytest.raises(DecodeError) as info:
        decode(kind, raw, "somekey")
    assert str(info.value) == "somekey: nested too deeply"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'"dark"', "dark"),
        (b"dark", "dark"),
        (b"[1,{}]", [1, {}]),
        (b"\xff[", "\ufffd["),
        (b"[" * 3000, "[" * 3000),
        (b"[" * 3000 + b"]" * 3000, "[" * 3000 + "]" * 3000),
    ],
)
def test_tolerant_reads(raw: bytes, expected: object) -> None:
    assert _tolerant(raw) == expected


def test_good_settings() -> None:
    assert validate_setting("theme", "dark") == b'"dark"'
    assert validate_setting("symbols", ["DOL", "WINZ25"]) == b'["DOL","WINZ25"]'
    alerts = {"DOL": {"price": 5.25, "type": "above"}, "WIN": {"price": 130000, "type": "below"}}
    assert msgspec.json.decode(validate_setting("alerts", alerts)) == {
        "DOL": {"price": 5.25, "type": "above"},
        "WIN": {"price": 130000.0, "type": "below"},
    }
    assert validate_setting("anything", {"a": [1, None]}) == b'{"a":[1,null]}'


# -- properties -------------------------------------------------------------------------------

symbols = st.from_regex(r"[A-Z][A-Z0-9]{2,8}", fullmatch=True)
prices = st.floats(min_value=1e-6, max_value=1e12, allow_nan=False, allow_infinity=False)
volumes = st.one_of(st.integers(min_value=1, max_value=10**12), st.floats(min_value=1e-8, max_value=1e12))
epochs = st.one_of(st.integers(min_value=0, max_value=4_102_444_800), st.floats(min_value=0, max_value=4.1e9))
trades = st.builds(Trade, price=prices, volume=volumes, side=st.sampled_from(["buy", "sell"]), time=epochs)
models = st.one_of(
    st.builds(
        Quote,
        symbol=symbols,
        price=prices,
        volume=volumes,
        timestamp=epochs,
        bid=st.none() | prices,
        ask=st.none() | prices,
    ),
    trades,
    st.builds(OrderFlowBucket, symbol=symbols, trades=st.lists(trades, max_size=20)),
    st.builds(
        Calc,
        indicator=st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True),
        value=st.floats(min_value=-1e12, max_value=1e12),
        timestamp=epochs,
        period=st.none() | st.integers(min_value=1, max_value=1000),
    ),
    st.builds(
        Session,
        user_id=st.from_regex(r"[A-Za-z0-9_.@-]{1,40}", fullmatch=True),
        socket_id=st.text(min_size=1, max_size=40),
        connected_at=epochs,
        subscriptions=st.lists(symbols, max_size=10),
    ),
)


@settings(max_examples=300, deadline=None)
@given(models)
def test_codec_round_trip(value: object) -> None:
    assert decode(type(value), encode(value), "k") == value


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from([Quote, Trade, OrderFlowBucket, FootprintLevel, Calc, Session]),
    st.one_of(
        st.binary(max_size=200),
        st.text(max_size=200).map(str.encode),
        st.recursive(
            st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=10),
            lambda inner: (
                st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
            ),
            max_leaves=20,
        ).map(lambda v: msgspec.json.encode(v) if _encodable(v) else b"{}"),
    ),
)
def test_decoding_anything_gives_a_model_or_a_decode_error(kind: type, raw: bytes) -> None:
    try:
        value = decode(kind, raw, "k")
    except DecodeError as exc:
        assert str(exc).startswith("k: ")
    else:
        assert isinstance(value, kind)


def _encodable(value: object) -> bool:
    try:
        msgspec.json.encode(value)
    except (TypeError, ValueError, msgspec.EncodeError):
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["theme", "symbols", "alerts"]) | st.text(max_size=30),
    st.recursive(
        st.none() | st.text(max_size=8) | st.floats() | st.integers(),
        lambda i: st.lists(i, max_size=3) | st.dictionaries(st.text(max_size=5), i, max_size=3),
        max_leaves=10,
    ),
)
def test_settings_validation_never_crashes(name: str, value: object) -> None:
    try:
        data = validate_setting(name, value)
    except ValidationError:
        return
    assert isinstance(data, bytes)
    assert msgspec.json.decode(data) == value  # what was accepted is what is stored: no NaN -> null


nested_brackets = st.builds(
    lambda opener, depth, tail: opener * depth + tail,
    st.sampled_from([b"[", b"{", b'{"a":', b"[1,", b'"']),
    st.integers(min_value=1, max_value=5000),
    st.binary(max_size=20),
)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300) | nested_brackets)
def test_tolerant_read_never_raises(raw: bytes) -> None:
    value = _tolerant(raw)
    assert value is None or isinstance(value, (str, int, float, bool, list, dict))
