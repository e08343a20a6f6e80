"""The production app plus the benchmark's framework floor: `gunicorn bench.app:app`.

- GET /bench/hello: a plain JSON answer, no auth, no database (the framework floor).
- BENCH_OFF=name,...: switch speed modules off in this process, for their ABAB on and off
  (bench/ab.py `--variant norawsql=:BENCH_OFF=rawsql`): `rawsql` (list pages through
  SQLAlchemy's execution instead of the DBAPI cursor), `reads` (cacheable reads on the
  request's Session, not the autocommit engine), `orjson` (Flask's own JSON provider),
  `signatures` (every token's signature verified on every use). The fast-path middleware
  has its own setting (CACHE_WSGI_HITS=0).
Nothing here is registered by `create_app`, so production never serves this route or
runs without these modules.
"""

import os

from flask import Blueprint, jsonify

from app import create_app

bench = Blueprint("bench", __name__, url_prefix="/bench")


@bench.get("/hello")
def hello():
    """The framework floor: a constant JSON body."""
    return jsonify(success=True, data={"hello": "world"})


def switch_off(app, names):
    """Run `app` without the speed modules `names` (BENCH_OFF)."""
    from app import rawsql, reads

    if "rawsql" in names:
        rawsql.rows = lambda connection, stmt, params: None  # every caller then executes through SQLAlchemy
    if "reads" in names:
        app.extensions[reads.ENGINE_KEY] = False
    if "orjson" in names:
        from flask.json.provider import DefaultJSONProvider

        app.json = DefaultJSONProvider(app)
    if "signatures" in names:

        class Forgetful(dict):
            """A memo that keeps nothing: every token's signature is verified each time."""

            def __setitem__(self, key, value):
                pass

        with app.app_context():
            app.appbuilder.sm.jwt_manager.verified_signatures = Forgetful()


app = create_app()
app.register_blueprint(bench)
switch_off(app, {n for n in os.environ.get("BENCH_OFF", "").split(",") if n})
