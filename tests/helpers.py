"""Small helpers shared by test modules."""


def reload(db, model, pk):
    """Read a row afresh from the database (None if it is gone), ignoring stale identity-map copies."""
    db.session.expire_all()
    return db.session.query(model).filter(model.id == pk).one_or_none()


class StatementLog:
    """SQL statements sent to the database while recording (`before_cursor_execute` on the app's engines)."""

    def __init__(self, app):
        from app import reads
        from app.extensions import db

        with app.app_context():
            # The read engine is made at first use: make it now so its statements are seen too.
            self.engines = [db.engine] + [e for e in (reads.engine(app),) if e is not None]
        self.statements = []

    def _seen(self, conn, cursor, statement, parameters, context, executemany):
        self.statements.append(statement)

    def __enter__(self):
        import sqlalchemy as sa

        for engine in self.engines:
            sa.event.listen(engine, "before_cursor_execute", self._seen)
        return self

    def __exit__(self, *exc):
        import sqlalchemy as sa

        for engine in self.engines:
            sa.event.remove(engine, "before_cursor_execute", self._seen)

    def clear(self):
        """Forget what was recorded so far."""
        self.statements.clear()

    def reading(self, table):
        """The recorded statements whose first FROM is `table`."""
        import re

        out = []
        for sql in self.statements:
            found = re.search(r"\bFROM\s+\(?\s*([a-z_]+)", sql)
            if found and found.group(1) == table:
                out.append(sql)
        return out


def used_before_expiry(app, user_id, use, seconds=2, attempts=5):
    """(token, its expiry, use's result) for a token living `seconds` that `use(token)` used up before it expired.

    JWT expiries are whole seconds, so a token may live up to a second less than asked, and
    a busy machine can take that long to answer: a use that ended after the expiry says
    nothing about the token (its assertions may have met the expiry), so a new one is tried.
    """
    import time
    from datetime import timedelta

    import jwt
    from flask_jwt_extended import create_access_token

    for _ in range(attempts):
        with app.test_request_context():
            token = create_access_token(identity=str(user_id), expires_delta=timedelta(seconds=seconds))
        expires = jwt.decode(token, options={"verify_signature": False})["exp"]
        try:
            result = use(token)
        except AssertionError:
            if time.time() < expires:
                raise
            continue
        if time.time() < expires:
            return token, expires, result
    raise AssertionError(f"no use of a {seconds} s token ended before its expiry in {attempts} tries")


def wait_until_expired(expires):
    """Sleep until the epoch second `expires` has passed (a condition, not a guessed duration)."""
    import time

    while time.time() < expires + 0.01:
        time.sleep(max(0.01, expires + 0.01 - time.time()))


def unique_tag(prefix="t"):
    """A token no other test's rows contain (the database is shared by the whole run)."""
    import uuid

    return prefix + uuid.uuid4().hex[:10]


def mine_and_theirs(make, kind, **fields):
    """The same record made twice with `make.<kind>(**fields)`: one of "sales" and one of "sales2"."""
    factory = getattr(make, kind)
    return factory("sales", **fields), factory("sales2", **fields)


def long_ago():
    """A timestamp further back than any earlier call's (a due date, a request time): the newest test row
    comes first in an oldest-first bounded list, whatever earlier tests left in the session's database."""
    import time
    from datetime import timedelta

    from models.base import utcnow

    return utcnow() - timedelta(days=3650, seconds=time.time())


def cancel_tasks(db, tasks):
    """Cancel `tasks` (a test's leftovers), so they never crowd another test's bounded lists of open tasks."""
    import sqlalchemy as sa

    from models import Task, TaskStatus

    db.session.rollback()
    ids = [t.id for t in tasks]
    if ids:
        db.session.execute(sa.update(Task).where(Task.id.in_(ids)).values(status=TaskStatus.CANCELLED))
        db.session.commit()


def watch_console(page):
    """Collect console errors and uncaught page errors of `page` (CSP refusals show up here too)."""
    errors = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return errors
