"""Datamodel interfaces with CRM behaviour shared by screens and APIs."""

from flask_appbuilder.models.sqla.interface import SQLAInterface

from app.services.records import soft_delete_customer


class SoftDeleteInterface(SQLAInterface):
    """Deleting a customer sets deletedAt; the row and its history stay."""

    def delete(self, item, commit=True):
        """Soft-delete `item` instead of removing it."""
        soft_delete_customer(item)
        return self.edit(item, commit=commit)
