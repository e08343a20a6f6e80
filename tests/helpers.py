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
