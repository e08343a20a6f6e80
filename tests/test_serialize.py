"""app/serialize.py: the row serializer of the /api lists gives exactly what column_values gives."""

from datetime import timedelta
from decimal import Decimal

import sqlalchemy as sa

from app.serialize import column_values, row_columns, row_serializer


def test_row_serializer_equals_column_values_for_every_model(db, make):
    """Enums, datetimes, decimals, JSON, booleans, None and integer user ids: the same dicts."""
    from models import ApprovalRequest, AuditLog, Customer, Meeting, Notification, Task
    from models.base import utcnow

    customer = make.customer("sales", phone=None, industry="金融")
    make.task("sales", customer=customer, due_date=utcnow() + timedelta(days=1))
    make.meeting("sales", customer=customer)
    make.approval("sales", customer=customer)
    make.approval("sales", customer=customer, amount=Decimal("1234.50"))
    db.session.commit()
    checked = set()
    for model in (Customer, Task, Meeting, ApprovalRequest, Notification, AuditLog):
        # The session-wide database holds other tests' rows: one order, so both sides read the same 50.
        objects = db.session.execute(sa.select(model).order_by(model.id).limit(50)).scalars().all()
        rows = db.session.execute(sa.select(*row_columns(model)).order_by(model.id).limit(50)).all()
        by_id = {row.id: row for row in rows}
        serialize = row_serializer(model)
        for obj in objects:
            if obj.id in by_id:
                assert serialize(by_id[obj.id]) == column_values(obj), model.__name__
                checked.add(model.__name__)
    assert {"Customer", "Task", "Meeting", "ApprovalRequest", "AuditLog"} <= checked


def test_row_serializer_leaves_out_secrets_and_renders_user_ids_as_strings(db, make):
    from models import Customer

    customer = make.customer("sales")
    row = db.session.execute(sa.select(*row_columns(Customer)).where(Customer.id == customer.id)).one()
    data = row_serializer(Customer)(row)
    assert isinstance(data["assignedSalesId"], str) and data["assignedSalesId"] == str(customer.assigned_sales_id)
    assert data["createdAt"].endswith("+00:00") and "password" not in data
