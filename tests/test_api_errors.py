"""Bad input never answers 500: malformed JSON, wrong types, unknown enums, oversized bodies, bad ids.

Also the answers every response carries (security headers, CORS), /ready and the OpenAPI
document of /api.
"""

import json
import uuid

import pytest

from tests.services import free_port


def envelope_ok(resp, status):
    """The error answer has the contract's shape and status."""
    assert resp.status_code == status, (resp.status_code, resp.get_data(as_text=True)[:300])
    assert set(resp.json) == {"error", "message", "details"}, resp.json
    return resp.json


BAD_BODIES = [
    # (path, raw body, content type, status, field named in details)
    ("/api/customers", b"{not json", "application/json", 400, "body"),
    ("/api/customers", b"[1, 2]", "application/json", 400, "body"),
    ("/api/customers", b"name=x", "application/x-www-form-urlencoded", 400, "body"),
    ("/api/customers", json.dumps({"name": 42}).encode(), "application/json", 400, "name"),
    ("/api/customers", json.dumps({"name": "x", "size": "HUGE"}).encode(), "application/json", 400, "size"),
    ("/api/customers", json.dumps({"name": "x", "riskTolerance": "high"}).encode(), "application/json", 400, "riskTolerance"),
    ("/api/customers", json.dumps({"name": "x", "riskTolerance": 11}).encode(), "application/json", 400, "riskTolerance"),
    ("/api/customers", json.dumps({"name": "x", "riskTolerance": True}).encode(), "application/json", 400, "riskTolerance"),
    ("/api/customers", json.dumps({"name": "x", "email": "nope"}).encode(), "application/json", 400, "email"),
    ("/api/customers", json.dumps({"name": "x" * 201}).encode(), "application/json", 400, "name"),
    ("/api/customers", json.dumps({"name": "x", "assignedSalesId": "abc"}).encode(), "application/json", 400, "assignedSalesId"),
    ("/api/customers", json.dumps({"name": "x", "investmentProfile": ["moderate"]}).encode(), "application/json", 400, "investmentProfile"),
    ("/api/tasks", json.dumps({"title": "t", "status": "DONE"}).encode(), "application/json", 400, "status"),
    ("/api/tasks", json.dumps({"title": "t", "dueDate": "tomorrow"}).encode(), "application/json", 400, "dueDate"),
    ("/api/tasks", json.dumps({"title": "t", "customerId": "not-a-uuid"}).encode(), "application/json", 400, "customerId"),
    ("/api/tasks", json.dumps({"title": "t", "customerId": str(uuid.uuid4())}).encode(), "application/json", 400, "customerId"),
    ("/api/tasks", json.dumps({"title": ""}).encode(), "application/json", 400, "title"),
    ("/api/meetings", json.dumps({"title": "m"}).encode(), "application/json", 400, "customerId"),
    ("/api/meetings", json.dumps({"customerId": str(uuid.uuid4()), "title": "m", "date": 5}).encode(), "application/json", 400, "scheduledAt"),
    ("/api/approvals", json.dumps({"customerId": str(uuid.uuid4()), "productName": "p", "amount": "lots"}).encode(), "application/json", 400, "amount"),
    ("/api/approvals", json.dumps({"customerId": str(uuid.uuid4()), "productName": "p", "amount": "NaN"}).encode(), "application/json", 400, "amount"),
    ("/api/auth/login", json.dumps({"email": ["a"], "password": "x"}).encode(), "application/json", 400, "email"),
    ("/api/auth/register", json.dumps({"email": "a@b.c", "password": 12345678, "name": "n"}).encode(), "application/json", 400, "password"),
]


@pytest.mark.parametrize("path,raw,ctype,status,field", BAD_BODIES)
def test_bad_bodies_are_4xx_naming_the_field(client, auth, path, raw, ctype, status, field):
    """Each malformed or wrongly typed body answers a 4xx naming the culprit."""
    headers = {} if path.startswith("/api/auth") else auth("sales")
    resp = client.post(path, data=raw, content_type=ctype, headers=headers)
    body = envelope_ok(resp, status)
    assert field in body["details"], body


def test_approval_amount_rules_come_from_the_service(client, auth, make):
    """amount ≤ 0 is refused by the approval service's rule, not a copy of it."""
    customer = make.customer("sales", investment_profile="moderate")
    resp = client.post("/api/approvals", json={"customerId": customer.id, "productName": "p", "amount": -5}, headers=auth("sales"))
    assert "amount" in envelope_ok(resp, 400)["details"]


BAD_QUERIES = [
    ("/api/customers?page=abc", 400),
    ("/api/customers?page=0", 400),
    ("/api/customers?limit=-1", 400),
    ("/api/customers?investmentProfile=reckless", 400),
    ("/api/tasks?status=DONE", 400),
    ("/api/tasks?priority=1", 400),
    ("/api/tasks?customerId=xyz", 400),
    ("/api/approvals?status=MAYBE", 400),
    ("/api/meetings?from=yesterday", 400),
    ("/api/reports/task-trends?days=x", 400),
    ("/api/notifications?isRead=maybe", 400),
    ("/api/customers/not-a-uuid", 404),
    (f"/api/customers/{uuid.uuid4()}", 404),
    ("/api/tasks/%00%ff", 404),
    (f"/api/approvals/{uuid.uuid4()}", 404),
    ("/api/reports/export/users", 404),
    ("/api/nothing-here", 404),
]


@pytest.mark.parametrize("path,status", BAD_QUERIES)
def test_bad_queries_and_ids(client, auth, path, status):
    """Junk in the query string or path is a 400/404 envelope."""
    envelope_ok(client.get(path, headers=auth("admin")), status)


def test_huge_limit_is_clamped(client, auth):
    """Page sizes above 100 are clamped, not refused."""
    resp = client.get("/api/customers?limit=100000", headers=auth("admin"))
    assert resp.status_code == 200 and resp.json["pagination"]["limit"] == 100


def test_oversized_body_is_413(client, auth, app):
    """A body over MAX_CONTENT_LENGTH answers 413 with the envelope."""
    cap = app.config["API_MAX_CONTENT_LENGTH"]
    assert cap < app.config["MAX_CONTENT_LENGTH"], "the /api cap is tighter than the app-wide one"
    big = json.dumps({"name": "x", "address": "a" * cap})
    body = envelope_ok(client.post("/api/customers", data=big, content_type="application/json", headers=auth("sales")), 413)
    assert body["details"]["maxBytes"] == cap
    huge_login = json.dumps({"email": "a@b.c", "password": "p" * cap})
    envelope_ok(client.post("/api/auth/login", data=huge_login, content_type="application/json"), 413)


def test_wrong_method_is_405_envelope(client, auth):
    """An unsupported method answers 405 with Allow and the envelope."""
    resp = client.post("/api/reports/dashboard", headers=auth("admin"))
    envelope_ok(resp, 405)
    assert "GET" in resp.headers["Allow"]


def test_duplicate_customer_email_is_409(client, auth):
    """Email unique among live customers: the service's rule answers 409; a soft delete frees it."""
    email = f"dup-{uuid.uuid4().hex[:8]}@example.jp"
    first = client.post("/api/customers", json={"name": "A", "email": email}, headers=auth("admin"))
    assert first.status_code == 201
    envelope_ok(client.post("/api/customers", json={"name": "B", "email": email.upper()}, headers=auth("admin")), 409)
    assert client.delete(f"/api/customers/{first.json['id']}", headers=auth("admin")).status_code == 200
    assert client.get(f"/api/customers/{first.json['id']}", headers=auth("admin")).status_code == 404
    assert client.post("/api/customers", json={"name": "B", "email": email}, headers=auth("admin")).status_code == 201


def test_sales_cannot_assign_to_another_rep(client, auth, users):
    """The records service's ownership rule holds through /api."""
    resp = client.post("/api/customers", json={"name": "X", "assignedSalesId": str(users["sales2"].id)}, headers=auth("sales"))
    assert "assignedSalesId" in envelope_ok(resp, 400)["details"]


def test_meeting_aliases_and_task_lists(client, auth, make):
    """Meeting `summary`/`date` aliases are accepted and echoed; overdue and upcoming task lists filter."""
    from datetime import timedelta

    from models.base import utcnow

    customer = make.customer("sales")
    resp = client.post(
        "/api/meetings",
        json={"customerId": customer.id, "title": "初回面談", "summary": "概要", "date": "2026-12-24T10:00:00Z"},
        headers=auth("sales"),
    )
    assert resp.status_code == 201, resp.json
    data = resp.json["data"]
    assert data["description"] == data["summary"] == "概要" and data["scheduledAt"].startswith("2026-12-24T10:00")
    late = make.task("sales", due_date=utcnow() - timedelta(days=1))
    soon = make.task("sales", due_date=utcnow() + timedelta(days=1))
    later = make.task("sales", due_date=utcnow() + timedelta(days=10))
    overdue = {t["id"] for t in client.get("/api/tasks/overdue?limit=100", headers=auth("sales")).json["data"]}
    upcoming = {t["id"] for t in client.get("/api/tasks/upcoming?limit=100", headers=auth("sales")).json["data"]}
    assert late.id in overdue and soon.id not in overdue and later.id not in overdue
    assert soon.id in upcoming and late.id not in upcoming and later.id not in upcoming
    done = client.put(f"/api/tasks/{late.id}/complete", headers=auth("sales")).json["data"]
    assert done["status"] == "COMPLETED" and done["completedAt"]
    assert late.id not in {t["id"] for t in client.get("/api/tasks/overdue?limit=100", headers=auth("sales")).json["data"]}


def test_security_headers_on_every_answer(client, auth, browser_login):
    """JSON, errors and FAB screens all carry the hardening headers; screens get a script nonce."""
    for resp in (
        client.get("/health"),
        client.get("/api/customers", headers=auth("sales")),
        client.get("/api/customers"),
        client.get("/api/v1/customer/", headers=auth("sales")),
    ):
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
        assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
        assert "Strict-Transport-Security" not in resp.headers  # production only
    page = browser_login("sales").get("/customerview/list/")
    assert page.status_code == 200
    csp = page.headers["Content-Security-Policy"]
    nonce = csp.split("'nonce-")[1].split("'")[0]
    html = page.get_data(as_text=True)
    scripts = html.count("<script")
    assert scripts and html.count(f'nonce="{nonce}"') >= scripts, "every FAB <script> carries this response's nonce"
    assert "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]


def test_hsts_in_production_config_only():
    """ProductionConfig turns HSTS on; the others leave it off."""
    from config import DevelopmentConfig, ProductionConfig, TestConfig

    assert ProductionConfig.SECURITY_HSTS is True
    assert DevelopmentConfig.SECURITY_HSTS is False and TestConfig.SECURITY_HSTS is False


def test_cors_for_configured_origins_only(config_class, app):
    """An allowed origin gets CORS headers (preflight too); another origin gets none."""
    from app import create_app

    cors_app = create_app(type("CorsConfig", (config_class,), {"CORS_ORIGINS": "https://crm.example.jp, https://admin.example.jp"}))
    c = cors_app.test_client()
    pre = c.options(
        "/api/customers",
        headers={"Origin": "https://crm.example.jp", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "Authorization, Content-Type"},
    )
    assert pre.status_code == 200 and pre.headers["Access-Control-Allow-Origin"] == "https://crm.example.jp"
    assert "authorization" in pre.headers["Access-Control-Allow-Headers"].lower()
    got = c.get("/api/customers", headers={"Origin": "https://crm.example.jp"})
    assert got.status_code == 401 and got.headers["Access-Control-Allow-Origin"] == "https://crm.example.jp"
    evil = c.get("/api/customers", headers={"Origin": "https://evil.example.com"})
    assert "Access-Control-Allow-Origin" not in evil.headers
    assert "Access-Control-Allow-Origin" not in app.test_client().get("/api/customers", headers={"Origin": "https://crm.example.jp"}).headers


def test_ready_names_what_is_down(config_class, app, private_redis):
    """/ready is 200 with database and Redis up, 503 naming Redis when a private Redis stops, and Kafka when enabled but unreachable."""
    from app import create_app

    assert app.test_client().get("/ready").json == {"status": "ready", "checks": {"database": "ok", "redis": "ok"}}
    private = create_app(type("ReadyConfig", (config_class,), {
        "REDIS_URL": private_redis.url,
        "KAFKA_ENABLED": True,
        "KAFKA_BROKERS": f"127.0.0.1:{free_port()}",
    }))
    c = private.test_client()
    resp = c.get("/ready")
    assert resp.status_code == 503 and resp.json["down"] == ["kafka"], resp.json
    private_redis.stop()
    resp = c.get("/ready")
    assert resp.status_code == 503 and resp.json["down"] == ["redis", "kafka"], resp.json
    assert resp.json["checks"]["database"] == "ok"
    assert c.get("/health").status_code == 200  # liveness does not depend on them


def test_openapi_document_lists_every_path(client):
    """/api/openapi.json describes the /api paths beside FAB's /api/v1/_openapi."""
    spec = client.get("/api/openapi.json").json
    assert spec["openapi"].startswith("3.")
    for path in ("/api/auth/login", "/api/customers", "/api/customers/{customer_id}", "/api/tasks/{task_id}/complete",
                 "/api/approvals/{request_id}/approve", "/api/notifications/read-all", "/api/reports/export/{kind}",
                 "/api/audit/entity/{resource_type}/{resource_id}"):
        assert path in spec["paths"], path
    assert "security" not in spec["paths"]["/api/auth/login"]["post"]
    assert spec["paths"]["/api/customers"]["get"]["security"] == [{"bearer": []}]
