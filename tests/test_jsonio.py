"""JSON answers encoded by orjson with Flask's conversions kept (app/jsonio.py)."""

import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal

from flask import jsonify
from flask.json.provider import DefaultJSONProvider

from app.jsonio import OrjsonProvider


@dataclass
class Point:
    x: int
    y: int


SAMPLE = {
    "name": "株式会社テスト",
    "when": datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc),
    "day": date(2026, 11, 23),
    "amount": Decimal("1234.50"),
    "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "point": Point(1, 2),
    "nested": {"b": 1, "a": [1.5, None, True]},
}


def test_the_app_answers_with_orjson(app):
    assert isinstance(app.json, OrjsonProvider)


def test_same_json_as_flasks_own_encoder_with_sorted_keys_and_utf8(app):
    with app.test_request_context():
        body = jsonify(SAMPLE).get_data()
        flask_body = DefaultJSONProvider(app).response(SAMPLE).get_data()
    assert json.loads(body) == json.loads(flask_body)
    assert "株式会社テスト".encode() in body and b"\\u" not in body  # UTF-8, not escapes
    decoded = json.loads(body)
    assert list(decoded) == sorted(decoded)
    assert decoded["when"] == "Mon, 23 Nov 2026 08:00:00 GMT"  # Flask's RFC 822 dates, as before


def test_what_orjson_refuses_falls_back_to_the_standard_encoder(app):
    with app.test_request_context():
        assert json.loads(jsonify(big=2**80).get_data()) == {"big": 2**80}


def test_debug_answers_are_indented(app):
    provider = OrjsonProvider(app)
    provider.compact = False
    with app.test_request_context():
        assert b'\n  "a": 1' in provider.response({"a": 1}).get_data()
