"""JSON answers encoded by orjson (Flask's provider otherwise).

The standard library encodes a list page's dicts value by value in Python; orjson encodes
the same JSON in C. Only `response()` (what `jsonify`
calls) changes: keys stay sorted, dates and dataclasses still go through Flask's own
conversions (RFC 822 dates, as before), and text is sent as UTF-8 instead of \\u escapes
(the same JSON, fewer bytes for Japanese text). `dumps`/`loads` (sessions,
templates, FAB) stay Flask's.
"""

import orjson
from flask.json.provider import DefaultJSONProvider

from app import compat

_OPTIONS = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_NON_STR_KEYS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_APPEND_NEWLINE
)


class OrjsonProvider(DefaultJSONProvider):
    """Flask's JSON provider with `response()` encoded by orjson."""

    def response(self, *args, **kwargs):
        """The JSON response `jsonify` builds, encoded by orjson (Flask's encoder for what orjson refuses)."""
        obj = compat.response_object(self, args, kwargs)
        app = compat.provider_app(self)
        options = _OPTIONS
        if (self.compact is None and app.debug) or self.compact is False:
            options |= orjson.OPT_INDENT_2
        try:
            body = orjson.dumps(obj, default=self.default, option=options)
        except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits: the standard encoder takes it
            return super().response(*args, **kwargs)
        return app.response_class(body, mimetype=self.mimetype)
