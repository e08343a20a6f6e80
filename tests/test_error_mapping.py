"""One mapping of database refusals for /api and /api/v1 (app/services/errors.from_database)."""

import pytest
import sqlalchemy as sa

from app.services import errors
from views.base import ScopedModelApi


class _Orig(Exception):
    def __init__(self, sqlstate):
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


CASES = [
    (sa.exc.IntegrityError("INSERT", {}, _Orig("23505")), 409),  # unique: the record exists already
    (sa.exc.IntegrityError("INSERT", {}, _Orig("23503")), 400),  # foreign key: refers to nothing
    (sa.exc.IntegrityError("INSERT", {}, _Orig("23514")), 400),  # CHECK
    (sa.exc.DataError("INSERT", {}, _Orig("22001")), 400),  # value too long
]


@pytest.mark.parametrize("exc,status", CASES)
def test_the_same_status_under_api_and_api_v1(app, exc, status):
    from views.api import handle_error

    assert errors.from_database(exc).status == status
    with app.test_request_context("/api/customers", method="POST"):
        response, code = handle_error(exc)
        assert code == status and response.json["details"] == {"reason": "integrity" if isinstance(exc, sa.exc.IntegrityError) else "data"}
    api = next(v for v in app.appbuilder.baseviews if isinstance(v, ScopedModelApi))
    with app.test_request_context("/api/v1/customer/", method="POST"):
        answer = api._guarded(lambda: (_ for _ in ()).throw(exc))
        assert answer.status_code == status and answer.json["message"] == errors.from_database(exc).message


def test_an_operational_error_is_no_bad_input(app):
    """A lost connection is the server's failure (500), never a 400 blaming the input."""
    exc = sa.exc.OperationalError("SELECT 1", {}, _Orig("08006"))
    assert errors.from_database(exc) is None
    api = next(v for v in app.appbuilder.baseviews if isinstance(v, ScopedModelApi))
    with app.test_request_context("/api/v1/customer/", method="POST"):
        assert api._guarded(lambda: (_ for _ in ()).throw(exc)).status_code == 500
