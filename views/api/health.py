"""/ready: readiness of the process's dependencies (database, Redis, Kafka when enabled)."""

import sqlalchemy as sa
from flask import Blueprint, current_app, jsonify

from app.extensions import db
from app.tokens import redis_client

bp = Blueprint("crm_health", __name__)


def _check_database():
    db.session.execute(sa.text("SELECT 1"))
    db.session.rollback()


def _check_redis():
    client = redis_client()
    if client is None:
        raise RuntimeError("REDIS_URL is not set")
    client.ping()


def kafka_settings(config):
    """librdkafka settings from the seed's variable names (SASL/PLAIN over TLS when a user is set)."""
    settings = {"bootstrap.servers": config["KAFKA_BROKERS"], "client.id": config.get("KAFKA_CLIENT_ID", "crm")}
    if config.get("KAFKA_USERNAME"):
        settings.update(
            {
                "security.protocol": "SASL_SSL",
                "sasl.mechanism": config.get("KAFKA_SASL_MECHANISM", "PLAIN"),
                "sasl.username": config["KAFKA_USERNAME"],
                "sasl.password": config.get("KAFKA_PASSWORD", ""),
            }
        )
    return settings


def _check_kafka():
    from confluent_kafka.admin import AdminClient

    AdminClient(kafka_settings(current_app.config)).list_topics(timeout=3)


@bp.get("/ready")
def ready():
    """200 when every dependency answers, else 503 naming what is down."""
    checks = {"database": _check_database}
    if current_app.config.get("REDIS_URL"):
        checks["redis"] = _check_redis
    if current_app.config.get("KAFKA_ENABLED"):
        checks["kafka"] = _check_kafka
    results, down = {}, []
    for name, check in checks.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:  # any failure means "down"; say which and why
            if name == "database":
                db.session.rollback()
            results[name] = f"down: {type(exc).__name__}"
            down.append(name)
    if down:
        return jsonify(status="unavailable", down=down, checks=results,
                       error="Service Unavailable", message=f"down: {', '.join(down)}", details=results), 503
    return jsonify(status="ready", checks=results)
