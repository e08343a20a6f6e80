"""RQ jobs of the reports: build one report, and the repeating sweep of expired report files."""

import sqlalchemy as sa
from flask import current_app

from app.extensions import redis_client
from app.services import reports
from workers.runtime import with_app


@with_app
def report_job(run_id):
    """Build the report run `run_id` (enqueued by name after its request committed)."""
    status = reports.build(run_id)
    return status.value if status is not None else "not queued"


@with_app
def sweep_job(chain=None):
    """Repeating RQ job: delete report files past REPORT_RETENTION_DAYS."""
    from app.extensions import db
    from workers.schedules import continue_chain

    if chain is not None and not continue_chain(current_app.config, redis_client(), "report-sweep", chain):
        return "superseded"
    session = sa.orm.Session(bind=db.engine)
    try:
        return reports.sweep_expired(session)
    finally:
        session.close()
