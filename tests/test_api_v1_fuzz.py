"""Schemathesis against FAB's own spec (/api/v1/_openapi), in-process over WSGI, with a Sales token.

Whatever the generated input, /api/v1 answers 2xx or 4xx, never a 500 (issue 18, item 13).
`tests/test_api_fuzz.py` does the same for /api with Hypothesis alone. Each operation gets
a bounded number of examples; half of the generated ids are swapped for a row the Sales
user owns, so PUT and DELETE bodies reach validation instead of stopping at 404.
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

EXAMPLES_PER_OPERATION = 30


@pytest.fixture(scope="module")
def fab_schema(app, tokens):
    """FAB's OpenAPI document as the Sales user gets it, loaded from the app itself (no server)."""
    return schemathesis.openapi.from_wsgi("/api/v1/_openapi", app, headers={"Authorization": f"Bearer {tokens['sales']}"})


def _resource(path):
    parts = path.strip("/").split("/")  # api, v1, <resource>, ...
    return parts[2] if len(parts) > 2 else None


def test_fab_api_never_answers_500(fab_schema, client, auth, make):
    customer = make.customer("sales")
    owned = {
        "customer": customer.id,
        "meeting": make.meeting("sales", customer=customer).id,
        "task": make.task("sales", customer=customer).id,
        "approval": make.approval("sales").id,
    }
    headers = auth("sales")
    failures = []
    operations = [result.ok() for result in fab_schema.get_all_operations()]
    assert len(operations) >= 20, [op.label for op in operations]
    for operation in operations:
        resource = _resource(operation.path)

        # No shrinking: a failure reports the example found, and the run stays within its time bound.
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            phases=[Phase.explicit, Phase.generate],
        )
        @given(case=operation.as_strategy(), real_id=st.booleans())
        def run(case, real_id):
            if real_id and "pk" in (case.path_parameters or {}) and resource in owned:
                case.path_parameters["pk"] = owned[resource]
            resp = case.call(session=client, headers=headers)  # a fresh app context per request, as served
            assert resp.status_code < 500, (case.method, case.formatted_path, case.body, case.query, resp.text[:300])

        try:
            run()
        except AssertionError as exc:
            failures.append(str(exc)[:600])
    assert failures == [], "\n".join(failures)


# --- each server error the run above found, as a plain regression test ------------------------


@pytest.mark.parametrize(
    "body,field",
    [
        ({"title": "対象なし", "user": {"id": 3}}, "user"),  # the example: an object where `user` is expected
        ({"title": "対象なし", "user": "deep"}, "user"),
        ({"title": "対象なし", "user": 2**40}, "user"),
        ({"title": "対象なし", "user": True}, "user"),
        ({"title": "対象なし", "customer": {"x": 1}}, "customer"),
        ({"title": "対象なし", "customer": "00000000-0000-0000-0000-000000000000"}, "customer"),
        ({"title": "対象なし", "customer": "not-a-uuid"}, "customer"),
    ],
)
def test_a_related_field_takes_only_an_existing_id(client, auth, db, body, field):
    from models import Customer, Task

    customers = db.session.query(Customer).count()
    resp = client.post("/api/v1/task/", json=body, headers=auth("sales"))
    assert resp.status_code == 400, resp.get_data(as_text=True)
    assert field in resp.json["message"]
    db.session.expire_all()
    assert db.session.query(Customer).count() == customers  # no related row made up from the id
    assert db.session.query(Task).filter_by(title="対象なし").count() == 0


def test_a_related_field_still_takes_a_real_id(client, auth, users, make):
    customer = make.customer("sales")
    body = {"title": "本物の参照", "customer": customer.id, "user": users["sales"].id, "status": "TODO", "priority": "LOW"}
    assert client.post("/api/v1/task/", json=body, headers=auth("sales")).status_code == 201
    body["user"] = str(users["sales"].id)  # an id sent as a string is the same id
    assert client.post("/api/v1/task/", json=body, headers=auth("sales")).status_code == 201


@pytest.mark.parametrize("q", ["(page:-1)", "(page:-2700,page_size:20)", "(page:41736774070871242309632)"])
def test_a_page_the_database_cannot_offset_is_a_400(client, auth, q):
    for resource in ("meeting", "customer", "approval"):
        resp = client.get(f"/api/v1/{resource}/?q={q}", headers=auth("sales"))
        assert resp.status_code == 400 and "page" in resp.json["message"]
    resp = client.get("/api/v1/meeting/_info?q=(add_columns:(customer:(page:-1,page_size:10)),keys:!(add_columns))", headers=auth("sales"))
    assert resp.status_code == 400 and "page" in resp.json["message"]


def test_a_nul_character_is_a_400_naming_the_field(client, auth, make, db):
    from models import Meeting

    customer = make.customer("sales")
    body = {"customer": customer.id, "title": "NUL\x00入り", "scheduled_at": "2026-12-01T10:00:00+09:00"}
    resp = client.post("/api/v1/meeting/", json=body, headers=auth("sales"))
    assert resp.status_code == 400 and "title" in resp.json["message"]
    meeting = make.meeting("sales", customer=customer)
    resp = client.put(f"/api/v1/meeting/{meeting.id}", json={"location": "\x00"}, headers=auth("sales"))
    assert resp.status_code == 400 and "location" in resp.json["message"]
    db.session.expire_all()
    assert db.session.get(Meeting, meeting.id).location is None


def test_a_huge_amount_is_a_400_naming_the_field(client, auth, make):
    customer = make.customer("sales", investment_profile="moderate")
    body = {"customer": customer.id, "product_name": "巨額", "amount": 8.58e26}
    resp = client.post("/api/v1/approval/", json=body, headers=auth("sales"))
    assert resp.status_code == 400 and "amount" in str(resp.json["message"])


def test_token_login_without_provider_is_a_400(client, users):
    from tests.conftest import PASSWORD

    resp = client.post("/api/v1/security/login", json={"username": users["sales"].email, "password": PASSWORD})
    assert resp.status_code == 400 and "provider" in resp.json["message"]
    ok = client.post("/api/v1/security/login", json={"username": users["sales"].email, "password": PASSWORD, "provider": "db"})
    assert ok.status_code == 200 and ok.json["access_token"]


def test_the_spec_writes_numeric_bounds_as_numbers(client, auth):
    spec = client.get("/api/v1/_openapi", headers=auth("sales")).json
    for name in ("ApprovalRequestApi.post", "ApprovalRequestApi.put", "ApprovalRequestApi.get"):
        amount = spec["components"]["schemas"][name]["properties"]["amount"]
        assert amount["minimum"] == 0 and not isinstance(amount["minimum"], str)
    assert spec["paths"]["/api/v1/security/login"]["post"]["requestBody"]  # FAB's description of the login kept
