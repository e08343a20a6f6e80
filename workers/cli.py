"""`flask --app wsgi crm worker|consume`: the worker processes' commands (wsgi adds them to `crm`)."""

import click
from flask import current_app
from flask.cli import with_appcontext


@click.command("consume")
@click.option("--group", default=None, help="Kafka consumer group (default KAFKA_CONSUMER_GROUP).")
@with_appcontext
def consume_command(group):
    """Consume the event topics and run the reactions (Kafka mode)."""
    from workers import consumer

    if not current_app.config.get("KAFKA_ENABLED"):
        raise click.ClickException("KAFKA_ENABLED is off: events are drained in-process, nothing to consume")
    consumer.run(current_app._get_current_object(), group)


@click.command("worker")
@click.option("--burst", is_flag=True, help="Stop when the queue is empty (tests, one-off runs).")
@click.option("--fork/--no-fork", default=False, show_default=True,
              help="Run each job in a forked work-horse (RQ's default) instead of in this process.")
@with_appcontext
def worker_command(burst, fork):
    """Run an RQ worker with its scheduler (relay, sweep, reminders, mail) on RQ_QUEUE."""
    from rq import SimpleWorker, Worker

    from app import kafka
    from app.delivery import queue
    from app.extensions import redis_client
    from workers import runtime, schedules

    app = current_app._get_current_object()
    config = app.config
    if not config.get("REDIS_URL"):
        raise click.ClickException("REDIS_URL is not set")
    runtime.set_app(app)
    if config.get("KAFKA_ENABLED"):
        try:
            kafka.ensure_topics(config, timeout=30)
        except Exception as exc:  # noqa: BLE001 - the relay retries; topics are created on the next start
            click.echo(f"Could not create topics yet: {exc}", err=True)
    import time

    import redis

    from app import metrics

    schedules.start_watchdog(app)
    if int(config["WORKER_METRICS_PORT"]):
        metrics.serve_process(config, config["WORKER_METRICS_PORT"])
    # Without fork the relay keeps its Kafka producer and DB pool between jobs (the producer
    # is still built lazily, in the process that uses it); --fork isolates each job instead.
    worker_class = runtime.stopping_aware(Worker if fork else SimpleWorker)
    backoff = 1
    while True:
        try:
            conn = redis_client()
            schedules.bootstrap(config)
            worker_class([queue(config, conn)], connection=conn).work(with_scheduler=True, burst=burst)
            return
        except redis.ConnectionError as exc:
            # RQ gives up when Redis vanishes mid-job; wait for it instead of dying (the outbox
            # keeps the events, the sweep publishes them once Redis is back).
            click.echo(f"Redis unavailable ({exc}); worker restarting in {backoff}s", err=True)
            time.sleep(backoff)
            backoff = min(backoff * 2, 30)


def add_commands(group):
    """Add the worker commands to the app's `crm` command group."""
    group.add_command(consume_command)
    group.add_command(worker_command)
