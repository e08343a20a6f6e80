"""Kafka client settings from the app config (seed names kept), topic list and creation.

Clients are never built at import: librdkafka threads do not survive fork, so the relay
and consumer build theirs lazily in the process that uses them.
"""

import logging
import time

from app.events import TOPICS, topic_name

log = logging.getLogger(__name__)

DLQ_SUFFIX = ".dlq"
CLIENT_LOG = logging.getLogger("crm.kafka.client")


def base_config(config):
    """Return the librdkafka settings shared by producers, consumers and the admin client."""
    conf = {
        "bootstrap.servers": config["KAFKA_BROKERS"],
        "client.id": config["KAFKA_CLIENT_ID"],
        # librdkafka's own lines through Python logging (app/logs.py's format), not raw to stderr:
        # a process's output stays one JSON object per line in production.
        "logger": CLIENT_LOG,
    }
    protocol = config.get("KAFKA_SECURITY_PROTOCOL")
    if config.get("KAFKA_USERNAME"):
        conf.update(
            {
                "security.protocol": protocol or "SASL_SSL",
                "sasl.mechanism": config["KAFKA_SASL_MECHANISM"],
                "sasl.username": config["KAFKA_USERNAME"],
                "sasl.password": config["KAFKA_PASSWORD"],
            }
        )
    elif protocol:
        conf["security.protocol"] = protocol
    return conf


def producer_config(config):
    """Idempotent producer settings: acks=all, ordered retries, one partitioner everywhere."""
    conf = base_config(config)
    conf.update(
        {
            "enable.idempotence": True,
            "acks": "all",
            "partitioner": "murmur2_random",  # the Java client's, so every producer agrees
            "linger.ms": 5,
            "message.timeout.ms": int(config["KAFKA_DELIVERY_TIMEOUT_MS"]),
        }
    )
    return conf


def consumer_config(config, group):
    """At-least-once consumer settings: offsets stored by hand after the database commit."""
    conf = base_config(config)
    conf.update(
        {
            "group.id": group,
            "enable.auto.offset.store": False,
            "enable.auto.commit": True,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": int(config["KAFKA_SESSION_TIMEOUT_MS"]),
            # Brokers that do not answer a fetch before its max wait (tansu) cost this much latency.
            "fetch.wait.max.ms": int(config["KAFKA_FETCH_WAIT_MAX_MS"]),
        }
    )
    return conf


def event_topics(config):
    """Return the five event topics with the configured prefix."""
    prefix = config["KAFKA_TOPIC_PREFIX"]
    return [topic_name(family, prefix) for family in TOPICS]


def dlq_topic(topic):
    """Return the dead-letter topic of `topic`."""
    return topic + DLQ_SUFFIX


def ensure_topics(config, timeout=15.0):
    """Create the event topics and their dead-letter topics when missing; return their names."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    wanted = []
    for topic in event_topics(config):
        wanted += [topic, dlq_topic(topic)]
    admin = AdminClient(base_config(config))
    deadline = time.monotonic() + timeout
    while True:
        try:
            existing = set(admin.list_topics(timeout=5).topics)
            break
        except KafkaException as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("Kafka not reachable for topic creation (%s); retrying", exc)
            time.sleep(1)
    missing = [t for t in wanted if t not in existing]
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(t, num_partitions=int(config["KAFKA_TOPIC_PARTITIONS"]),
                         replication_factor=int(config["KAFKA_REPLICATION_FACTOR"]))
                for t in missing
            ]
        )
        for topic, future in futures.items():
            try:
                future.result(timeout=timeout)
                log.info("Created topic %s", topic)
            except KafkaException as exc:
                # Another process may have created it first.
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise
    return wanted
