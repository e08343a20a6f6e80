"""Small helpers shared by test modules."""


def reload(db, model, pk):
    """Read a row afresh from the database (None if it is gone), ignoring stale identity-map copies."""
    db.session.expire_all()
    return db.session.query(model).filter(model.id == pk).one_or_none()
