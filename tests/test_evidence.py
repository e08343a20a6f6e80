"""Evidence packs (app/services/evidence.py): built at the decision and on demand, read back as JSON
and as PDF text, their SHA-256 recorded and checked, for Managers, Compliance and Admins only."""

import hashlib
import io
import json
import subprocess
from datetime import timedelta

import pytest
import sqlalchemy as sa

from app import reactions, storage
from app.context import acting_as
from app.services import approvals, evidence
from models import ApprovalRequest, OutboxEvent, ProcessedEvent
from models.base import utcnow
from tests.helpers import reload, unique_tag
from tests.test_cards import product, save_card, submit

THRESHOLD = 10_000_000  # at or above: a Compliance step too


def pdf_text(data, tmp_path):
    path = tmp_path / "pack.pdf"
    path.write_bytes(data)
    return subprocess.run(["pdftotext", "-enc", "UTF-8", str(path), "-"], capture_output=True, text=True, check=True).stdout


def decided_request(db, users, make):
    """A customer with a card, a flagged meeting and a request approved by Manager and Compliance."""
    customer = make.customer("sales", name=f"証跡顧客{unique_tag('e')}")
    save_card(db, users, customer)
    make.meeting("sales", customer=customer, title="商品説明", description="この商品は必ず儲かると説明した",
                 scheduled_at=utcnow() - timedelta(days=2))
    prod = product(db, name=f"証跡ファンド{unique_tag('f')}", risk_rating=4)
    req = submit(db, users, customer, prod, amount=THRESHOLD)
    approvals.approve(req.id, users["manager"], "担当者の説明を確認")
    approvals.approve(req.id, users["compliance"], "適合性に問題なし")
    db.session.commit()
    return customer, prod, reload(db, ApprovalRequest, req.id)


def packs(db, request_id):
    db.session.expire_all()
    return evidence.packs_of(db.session, request_id)


def test_the_decision_builds_one_pack_holding_everything_known_about_the_sale(app, db, users, make, tmp_path):
    customer, prod, req = decided_request(db, users, make)
    [pack] = packs(db, req.id)
    assert (pack.trigger, pack.request_status) == ("decision", "APPROVED")
    data = evidence.read(pack, "json")
    assert hashlib.sha256(data).hexdigest() == pack.json_sha256
    doc = json.loads(data)
    assert data == evidence.canonical(doc)  # the canonical bytes: the hash names the content
    assert doc["customer"]["name"] == customer.name
    assert doc["product"]["name"] == prod.name and doc["product"]["riskRating"] == 4
    assert doc["card"]["version"] == 1 and doc["card"]["occupation"] == "会社員"
    assert doc["elderly"]["ageAtProposal"] is not None
    assert [(s["role"], s["decision"], s["comment"]) for s in doc["steps"]] == [
        ("Manager", "APPROVED", "担当者の説明を確認"), ("Compliance", "APPROVED", "適合性に問題なし")]
    assert all(s["decidedBy"] and s["decidedAt"] for s in doc["steps"])
    [meeting] = doc["meetings"]
    assert meeting["description"] == "この商品は必ず儲かると説明した" and meeting["flags"][0]["matched"] == "必ず儲か"
    actions = [a["action"] for a in doc["audit"]]
    assert "CREATE" in actions and actions.count("APPROVE") == 2
    text = pdf_text(evidence.read(pack, "pdf"), tmp_path)
    for expected in ("証跡パック", customer.name, prod.name, "適合性に問題なし", "必ず儲かると説明した", pack.json_sha256):
        assert expected in text, expected


def test_a_redelivered_outcome_event_builds_no_second_pack(db, users, make):
    _c, _p, req = decided_request(db, users, make)
    row = db.session.execute(
        sa.select(OutboxEvent).where(OutboxEvent.aggregate_id == req.id, OutboxEvent.type == "APPROVAL_APPROVED")
    ).scalar_one()
    envelope = dict(row.envelope)
    with acting_as(None):
        evidence_before = len(packs(db, req.id))
        db.session.query(ProcessedEvent).filter_by(event_id=row.id, handler="seal_evidence").delete()
        reactions.apply_event(db.session, envelope)  # the handler runs again: it finds the pack
        db.session.commit()
    assert len(packs(db, req.id)) == evidence_before == 1


def test_the_pack_keeps_the_card_frozen_at_submit_after_the_card_changes(db, client, auth, users, make):
    customer, _p, req = decided_request(db, users, make)
    save_card(db, users, customer, occupation="自営業", changeReason="転職")
    signed = b"%PDF-1.4 signed form"
    upload = client.post(f"/api/approvals/{req.id}/attachments", headers=auth("sales"),
                         data={"file": (io.BytesIO(signed), "署名済み.pdf")}, content_type="multipart/form-data")
    assert upload.status_code == 201, upload.get_data(as_text=True)
    pack = evidence.build(db.session, reload(db, ApprovalRequest, req.id), users["compliance"], trigger="manual")
    db.session.commit()
    doc = json.loads(evidence.read(pack, "json"))
    assert doc["card"]["version"] == 1 and doc["card"]["occupation"] == "会社員"
    assert [(a["filename"], a["sha256"]) for a in doc["attachments"]] == [("署名済み.pdf", hashlib.sha256(signed).hexdigest())]


def test_a_changed_file_fails_verify_and_is_not_served(app, db, client, auth, users, make):
    _c, _p, req = decided_request(db, users, make)
    [pack] = packs(db, req.id)
    base = f"/api/approvals/{req.id}/evidence/{pack.id}"
    ok = client.get(f"{base}/verify", headers=auth("compliance"))
    assert ok.status_code == 200 and ok.json["data"] == {"json": True, "pdf": True, "intact": True, "jsonSha256": pack.json_sha256}
    store = storage.from_config(app.config)
    doc = json.loads(evidence.read(pack, "json"))
    doc["steps"][1]["comment"] = "改ざん"
    store.put(pack.json_key, io.BytesIO(evidence.canonical(doc)))
    bad = client.get(f"{base}/verify", headers=auth("compliance"))
    assert bad.json["data"]["json"] is False and bad.json["data"]["intact"] is False
    refused = client.get(f"{base}/json", headers=auth("compliance"))
    assert refused.status_code == 409 and "json" in refused.get_data(as_text=True)
    assert client.get(f"{base}/pdf", headers=auth("compliance")).status_code == 200


def test_only_managers_compliance_and_admins_see_or_build_packs(db, client, auth, users, make):
    _c, _p, req = decided_request(db, users, make)
    [pack] = packs(db, req.id)
    for key in ("sales", "sales2"):
        assert client.get(f"/api/approvals/{req.id}/evidence", headers=auth(key)).status_code == 404
        assert client.post(f"/api/approvals/{req.id}/evidence", headers=auth(key)).status_code == 404
        assert client.get(f"/api/approvals/{req.id}/evidence/{pack.id}/pdf", headers=auth(key)).status_code == 404
    listed = client.get(f"/api/approvals/{req.id}/evidence", headers=auth("manager"))
    assert listed.status_code == 200 and [p["id"] for p in listed.json["data"]] == [pack.id]
    assert "jsonKey" not in listed.json["data"][0]
    built = client.post(f"/api/approvals/{req.id}/evidence", headers=auth("admin"))
    assert built.status_code == 201 and built.json["data"]["trigger"] == "manual"
    pdf = client.get(f"/api/approvals/{req.id}/evidence/{pack.id}/pdf", headers=auth("manager"))
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf" and pdf.data.startswith(b"%PDF")
    assert client.get(f"/api/approvals/{req.id}/evidence/{pack.id}/exe", headers=auth("manager")).status_code == 404


def test_the_request_page_lists_packs_and_builds_one_by_post(db, browser_login, users, make):
    _c, _p, req = decided_request(db, users, make)
    [pack] = packs(db, req.id)
    screen = browser_login("compliance")
    page = screen.get(f"/approvalrequestview/show/{req.id}").get_data(as_text=True)
    assert pack.json_sha256 in page and "evidence-build-form" in page
    assert screen.get(f"/approvalrequestview/evidence/{req.id}").status_code == 405  # never a GET
    assert screen.post(f"/approvalrequestview/evidence/{req.id}", csrf=False).status_code == 400
    assert len(packs(db, req.id)) == 1
    assert screen.post(f"/approvalrequestview/evidence/{req.id}").status_code == 302
    assert len(packs(db, req.id)) == 2
    download = screen.get(f"/approvalrequestview/evidence/{req.id}/{pack.id}.pdf")
    assert download.status_code == 200 and download.data.startswith(b"%PDF")
    sales = browser_login("sales")
    assert "evidence-build-form" not in sales.get(f"/approvalrequestview/show/{req.id}").get_data(as_text=True)
    assert sales.get(f"/approvalrequestview/evidence/{req.id}/{pack.id}.pdf").status_code == 404
