"""Saved views: a user's named filters and sort of a list screen; each user reads and deletes only their own.

What is stored is the list's own query string, kept to the arguments that say what the
list shows (FAB's `_flt_<n>_<column>` filters, `_oc_<View>` / `_od_<View>` sort and
`psize_<View>` page size, and `all`, the list's "show everything"); the page number and
anything else are dropped, so opening a view starts at its first page.
"""

import re
from urllib.parse import parse_qsl, urlencode

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.services.errors import Conflict, NotFound, ValidationFailed
from app.services.inputs import text_field
from models.saved_view import NAME_MAX, QUERY_MAX, SavedView

#: The query-string arguments a saved view keeps.
KEPT_ARGUMENT = re.compile(r"^(_flt_\d+_[A-Za-z0-9_.]+|_oc_\w+|_od_\w+|psize_\w+|all)$")
#: Saved views one user may keep on one screen (the dropdown stays short).
PER_SCREEN_MAX = 50


def list_arguments(raw):
    """The list arguments of the query string `raw` that say what the list shows, re-encoded in a stable order."""
    pairs = [(k, v) for k, v in parse_qsl(raw or "", keep_blank_values=True) if KEPT_ARGUMENT.match(k)]
    return urlencode(sorted(pairs))


def clean_query(raw):
    """`list_arguments` of `raw` as a saved view stores them, or ValidationFailed naming `query` when too long."""
    return text_field(list_arguments(raw), "query", QUERY_MAX, required=False)


def clean_name(raw):
    """The view's name (stripped), or ValidationFailed naming `name`."""
    return text_field(raw, "name", NAME_MAX)


def mine(user, screen=None):
    """The saved views of `user` (of one `screen` when given), by screen and name."""
    stmt = sa.select(SavedView).where(SavedView.user_id == user.id)
    if screen is not None:
        stmt = stmt.where(SavedView.screen == screen)
    return db.session.execute(stmt.order_by(SavedView.screen, SavedView.name)).scalars().all()


def save(user, screen, name, query, screens):
    """Save (or, under a name already used on `screen`, replace) a view of `user`; commit and return it.

    `screens`: the list screens a view may be saved for (an unknown one is a 400 naming `screen`).
    """
    if screen not in screens:
        raise ValidationFailed("screen is not a list screen", field="screen")
    name, query = clean_name(name), clean_query(query)
    found = db.session.execute(
        sa.select(SavedView).where(SavedView.user_id == user.id, SavedView.screen == screen, SavedView.name == name)
    ).scalar_one_or_none()
    if found is None:
        count = db.session.execute(
            sa.select(sa.func.count()).select_from(SavedView).where(SavedView.user_id == user.id, SavedView.screen == screen)
        ).scalar()
        if count >= PER_SCREEN_MAX:
            raise ValidationFailed(f"at most {PER_SCREEN_MAX} saved views per list: delete one first", field="name")
        found = SavedView(user_id=user.id, screen=screen, name=name)
        db.session.add(found)
    found.query = query
    try:
        db.session.commit()
    except IntegrityError:
        # Another request saved the same name a moment before: the unique key held.
        db.session.rollback()
        raise Conflict("a view of that name was saved at the same moment: try again", field="name") from None
    return found


def delete(user, view_id):
    """Delete the saved view `view_id` of `user` and commit; another user's (or none) is NotFound."""
    found = db.session.execute(
        sa.select(SavedView).where(SavedView.id == str(view_id)[:36], SavedView.user_id == user.id)
    ).scalar_one_or_none()
    if found is None:
        raise NotFound("no such saved view")
    screen = found.screen
    db.session.delete(found)
    db.session.commit()
    return screen
