"""Datamodel interfaces with CRM behaviour shared by screens and APIs."""

import uuid

from flask_appbuilder.models.sqla.interface import SQLAInterface
from sqlalchemy.orm import joinedload

from app import caching, compat
from app.pagination import cached_count
from app.services.records import soft_delete_customer


def is_uuid(value):
    """True when `value` is a UUID string (every CRM primary key is one)."""
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


class CrmInterface(SQLAInterface):
    """FAB's SQLA interface for UUID-keyed models: a malformed id is simply not found.

    `list_load`: many-to-one relations a list shows (ScopedModelView sets it from its
    list_columns), joined into the page's statement instead of loaded row by row.
    """

    list_load = ()

    def apply_all(self, query, *args, **kwargs):
        """FAB's filters, order and page, plus the list's related rows in the same statement."""
        query = super().apply_all(query, *args, **kwargs)
        if self.list_load:
            query = query.options(*(joinedload(getattr(self.obj, name)) for name in self.list_load))
        return query

    def get(self, id, filters=None, *args, **kwargs):
        """Return the row with primary key `id` within `filters`, or None."""
        if not is_uuid(id):
            return None
        return super().get(id, filters, *args, **kwargs)

    def query_count(self, query, filters=None, select_columns=None):
        """List totals are counted up to a bound, estimated beyond, and cached until a write."""
        counted = compat.filtered_query(self, query, filters, select_columns)
        return cached_count(self.session, counted, caching.model_resources(self.obj))


class SoftDeleteInterface(CrmInterface):
    """Deleting a customer sets deletedAt; the row and its history stay."""

    def delete(self, item, commit=True):
        """Soft-delete `item` instead of removing it."""
        soft_delete_customer(item)
        return self.edit(item, commit=commit)
