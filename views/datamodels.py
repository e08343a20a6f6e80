"""Datamodel interfaces with CRM behaviour shared by screens and APIs."""

from flask_appbuilder.models.sqla.interface import SQLAInterface

from app import caching
from app.pagination import cached_count
from app.services.records import soft_delete_customer


class CachedCountInterface(SQLAInterface):
    """List totals are counted at most up to a bound, estimated beyond, and cached until a write."""

    def query_count(self, query, filters=None, select_columns=None):
        """Return the (bounded, cached) total of the filtered, scoped query."""
        counted = self._apply_inner_all(query, filters, select_columns=select_columns, aliases_mapping={})
        return cached_count(self.session, counted, caching.model_resources(self.obj))


class SoftDeleteInterface(CachedCountInterface):
    """Deleting a customer sets deletedAt; the row and its history stay."""

    def delete(self, item, commit=True):
        """Soft-delete `item` instead of removing it."""
        soft_delete_customer(item)
        return self.edit(item, commit=commit)
