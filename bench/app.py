"""The production app plus the benchmark's framework floor: `gunicorn bench.app:app`.

- GET /bench/hello: a plain JSON answer, no auth, no database (the framework floor).
Nothing here is registered by `create_app`, so production never serves this route.
"""

from flask import Blueprint, jsonify

from app import create_app

bench = Blueprint("bench", __name__, url_prefix="/bench")


@bench.get("/hello")
def hello():
    """The framework floor: a constant JSON body."""
    return jsonify(success=True, data={"hello": "world"})


app = create_app()
app.register_blueprint(bench)
