"""Approval screens (inbox, my requests, request page) and the /api/v1/approval actions.

Every invariant of the state machine is tried through the screens (form posts as a
logged-in browser) and through the generated API, not only through the service.
"""

import threading
import time

import sqlalchemy as sa

from app.services import approvals as service
from models import ApprovalRequest, ApprovalStatus, ApprovalStep, AuditLog, OutboxEvent, StepDecision

THRESHOLD = 10_000_000
INBOX = "/approvals/pending/"
MINE = "/approvals/mine/"
DECIDE = "/approvalrequestview/decide"


def _status(db, rid):
    db.session.expire_all()
    return db.session.get(ApprovalRequest, rid).status


def _steps(db, rid):
    db.session.expire_all()
    return [
        (s.required_role, s.decision.value if s.decision else None, s.decided_by_id, s.comment)
        for s in db.session.get(ApprovalRequest, rid).steps
    ]


def _decide(client, ids, decision, comment=""):
    return client.post(DECIDE, data={"ids": ids, "decision": decision, "comment": comment, "next": INBOX}, follow_redirects=True)


# --- the "done when" story, through the screens ---------------------------------------------


def test_manager_approves_from_inbox_then_compliance_second_decision_409_history(browser_login, make, db, users):
    """Done when: Manager approves in the inbox; over the threshold it waits for Compliance;
    a second decision is refused (409); the history shows who did what and why."""
    req = make.approval("sales", amount=THRESHOLD + 5_000_000, product_risk=3)
    manager = browser_login("manager")
    page = manager.get(INBOX).get_data(as_text=True)
    assert req.id in page and "¥15,000,000" in page
    assert "AMOUNT_AT_OR_ABOVE_THRESHOLD" in page  # suitability: why compliance must look too
    assert 'data-sequence="1"' in page  # the history is shown in the inbox

    resp = _decide(manager, [req.id], "approve", "顧客の資産状況を確認済み")
    assert resp.status_code == 200 and "alert-success" in resp.get_data(as_text=True)
    assert _status(db, req.id) == ApprovalStatus.PENDING
    assert req.id not in manager.get(INBOX).get_data(as_text=True)
    compliance = browser_login("compliance")
    assert req.id in compliance.get(INBOX).get_data(as_text=True)

    again = _decide(manager, [req.id], "approve", "二重送信").get_data(as_text=True)
    assert "(409)" in again and "already decided" in again
    api_again = manager.post(f"/api/v1/approval/{req.id}/approve", json={})
    assert api_again.status_code in (401, 403)  # API does not accept browser sessions for writes

    _decide(compliance, [req.id], "approve", "適合性確認済み")
    assert _status(db, req.id) == ApprovalStatus.APPROVED
    show = manager.get(f"/approvalrequestview/show/{req.id}").get_data(as_text=True)
    assert 'data-status="APPROVED"' in show
    assert "顧客の資産状況を確認済み" in show and "適合性確認済み" in show
    assert "Manager User" in show and "Compliance User" in show
    assert show.count('data-decision="APPROVED"') == 2


def test_inbox_shows_only_current_step_of_my_role(browser_login, make, db, users):
    small = make.approval("sales")
    big = make.approval("sales2", amount=THRESHOLD)
    customer = make.customer("admin", investment_profile="moderate")
    own = make.approval("manager", customer=customer)
    manager_page = browser_login("manager").get(INBOX).get_data(as_text=True)
    assert small.id in manager_page and big.id in manager_page and own.id not in manager_page
    compliance_page = browser_login("compliance").get(INBOX).get_data(as_text=True)
    assert small.id not in compliance_page and big.id not in compliance_page


def test_bulk_approve_and_reject_need_comment(browser_login, make, db):
    a, b = make.approval("sales"), make.approval("sales2")
    manager = browser_login("manager")
    page = _decide(manager, [a.id, b.id], "reject", "").get_data(as_text=True)
    assert "(400)" in page and "comment" in page
    assert _status(db, a.id) == _status(db, b.id) == ApprovalStatus.PENDING
    page = _decide(manager, [a.id, b.id], "approve").get_data(as_text=True)
    assert _status(db, a.id) == _status(db, b.id) == ApprovalStatus.APPROVED
    c = make.approval("sales")
    _decide(manager, [c.id], "reject", "説明不足")
    assert _steps(db, c.id)[0][1:] == ("REJECTED", db.session.get(ApprovalRequest, c.id).steps[0].decided_by_id, "説明不足")
    assert _status(db, c.id) == ApprovalStatus.REJECTED


def test_screen_refuses_wrong_role_own_request_and_out_of_scope(browser_login, make, db, users):
    req = make.approval("sales", amount=THRESHOLD)
    compliance = browser_login("compliance")
    page = _decide(compliance, [req.id], "approve").get_data(as_text=True)
    assert "(403)" in page and "Manager" in page
    customer = make.customer("admin", investment_profile="moderate")
    own = make.approval("manager", customer=customer)
    page = _decide(browser_login("manager"), [own.id], "approve").get_data(as_text=True)
    assert "(403)" in page and "own request" in page
    page = _decide(browser_login("manager"), ["00000000-0000-0000-0000-000000000000"], "approve").get_data(as_text=True)
    assert "(404)" in page
    # Sales has no can_decide: FAB refuses the endpoint itself.
    sales = browser_login("sales")
    resp = sales.post(DECIDE, data={"ids": [req.id], "decision": "approve"})
    assert resp.status_code == 403
    assert _steps(db, req.id)[0][1] is None


def test_my_requests_recall(browser_login, make, db):
    req = make.approval("sales")
    sales = browser_login("sales")
    page = sales.get(MINE).get_data(as_text=True)
    assert req.id in page and 'data-status="PENDING"' in page and "approval-recall-form" in page
    # Another rep cannot see it, so cannot recall it.
    other = browser_login("sales2").post(f"/approvalrequestview/recall/{req.id}", data={"next": MINE}, follow_redirects=True)
    assert "(404)" in other.get_data(as_text=True)
    # A manager holds no can_recall permission.
    resp = browser_login("manager").post(f"/approvalrequestview/recall/{req.id}", data={})
    assert resp.status_code == 403 and _status(db, req.id) == ApprovalStatus.PENDING
    page = sales.post(f"/approvalrequestview/recall/{req.id}", data={"next": MINE, "comment": "顧客都合"}, follow_redirects=True)
    assert 'data-status="RECALLED"' in page.get_data(as_text=True)
    again = sales.post(f"/approvalrequestview/recall/{req.id}", data={"next": MINE}, follow_redirects=True)
    assert "(409)" in again.get_data(as_text=True)


def test_screen_edit_of_pending_or_final_request_is_refused(browser_login, make, db):
    req = make.approval("sales", amount=1_000_000)
    admin = browser_login("admin")
    form = {"customer": req.customer_id, "product_name": "改ざん", "product_risk": "3", "amount": "1", "comment": ""}
    page = admin.post(f"/approvalrequestview/edit/{req.id}", data=form, follow_redirects=True).get_data(as_text=True)
    assert "locked" in page
    db.session.expire_all()
    assert db.session.get(ApprovalRequest, req.id).product_name == "国内株式ファンド"
    service.recall(req.id, db.session.get(ApprovalRequest, req.id).requester)
    page = admin.post(f"/approvalrequestview/edit/{req.id}", data=form, follow_redirects=True).get_data(as_text=True)
    assert "final" in page


def test_screen_add_routes_and_show_page_offers_actions(browser_login, make, db, users):
    customer = make.customer("sales", investment_profile=None, risk_tolerance=5)
    sales = browser_login("sales")
    resp = sales.post(
        "/approvalrequestview/add",
        data={"customer": customer.id, "product_name": "仕組債", "product_risk": "9", "amount": "2000000", "comment": "提案"},
        follow_redirects=True,
    )
    assert resp.status_code == 200
    req = db.session.execute(sa.select(ApprovalRequest).where(ApprovalRequest.customer_id == customer.id)).unique().scalar_one()
    assert req.requester_id == users["sales"].id
    assert req.compliance_reasons == ["PRODUCT_RISK_ABOVE_TOLERANCE", "NO_INVESTMENT_PROFILE"]
    own_page = sales.get(f"/approvalrequestview/show/{req.id}").get_data(as_text=True)
    assert "approval-recall-form" in own_page and "approval-decide-form" not in own_page
    mgr_page = browser_login("manager").get(f"/approvalrequestview/show/{req.id}").get_data(as_text=True)
    assert "approval-decide-form" in mgr_page and 'data-reason="NO_INVESTMENT_PROFILE"' in mgr_page
    comp_page = browser_login("compliance").get(f"/approvalrequestview/show/{req.id}").get_data(as_text=True)
    assert "approval-decide-form" not in comp_page  # step 1 is not theirs
    assert browser_login("sales2").get(f"/approvalrequestview/show/{req.id}").status_code in (302, 404)


def test_menus_follow_roles(browser_login):
    manager = browser_login("manager").get(INBOX).get_data(as_text=True)
    assert 'href="/approvals/pending/"' in manager
    sales = browser_login("sales").get(MINE).get_data(as_text=True)
    assert 'href="/approvals/mine/"' in sales and 'href="/approvals/pending/"' not in sales


def test_screen_posts_check_csrf_when_enabled(app, browser_login, make, db):
    req = make.approval("sales")
    manager = browser_login("manager")
    resp = manager.post(DECIDE, data={"ids": [req.id], "decision": "approve"}, csrf=False)
    assert resp.status_code == 400
    page = manager.get(INBOX).get_data(as_text=True)
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    resp = manager.post(DECIDE, data={"ids": [req.id], "decision": "approve", "csrf_token": token})
    assert resp.status_code == 302
    assert _status(db, req.id) == ApprovalStatus.APPROVED


def test_open_redirect_is_refused(browser_login, make):
    req = make.approval("sales")
    resp = browser_login("manager").post(DECIDE, data={"ids": [req.id], "decision": "approve", "next": "//evil.example/x"})
    assert resp.status_code == 302 and "evil" not in resp.headers["Location"]


# --- the API ---------------------------------------------------------------------------------


def _api(client, auth, key, rid, action, body=None, **kw):
    return client.post(f"/api/v1/approval/{rid}/{action}", headers=auth(key), json=body if body is not None else {}, **kw)


def test_api_two_steps_with_every_refusal(client, auth, make, db, users):
    req = make.approval("sales", amount=THRESHOLD)
    r = _api(client, auth, "sales2", req.id, "approve")
    assert r.status_code == 403  # Sales holds no can_decide at all
    r = _api(client, auth, "compliance", req.id, "approve")
    assert r.status_code == 403 and "Manager" in r.json["message"]
    r = _api(client, auth, "admin", req.id, "approve")
    assert r.status_code == 403
    r = _api(client, auth, "manager", "00000000-0000-0000-0000-000000000000", "approve")
    assert r.status_code == 404 and "not found" in r.json["message"]
    r = _api(client, auth, "manager", req.id, "reject", {"comment": " "})
    assert r.status_code == 400 and r.json["details"] == {"comment": ["a comment is required to reject"]}
    r = _api(client, auth, "manager", req.id, "approve", {"comment": 5})
    assert r.status_code == 400 and "comment" in r.json["message"]
    r = client.post(f"/api/v1/approval/{req.id}/approve", headers={**auth("manager"), "Content-Type": "application/json"}, data="[1")
    assert r.status_code == 400 and "JSON object" in r.json["message"]

    r = _api(client, auth, "manager", req.id, "approve", {"comment": "了承"})
    assert r.status_code == 200, r.json
    assert r.json["id"] == req.id and r.json["result"]["status"] == "PENDING"
    assert r.json["result"]["nextRequiredRole"] == "Compliance"
    assert r.json["result"]["steps"][0]["decision"] == "APPROVED" and r.json["result"]["steps"][0]["comment"] == "了承"
    r = _api(client, auth, "manager", req.id, "approve")
    assert r.status_code == 409 and "already decided" in r.json["message"]
    r = _api(client, auth, "compliance", req.id, "reject", {"comment": "適合性に懸念"})
    assert r.status_code == 200 and r.json["result"]["status"] == "REJECTED"
    r = _api(client, auth, "compliance", req.id, "approve")
    assert r.status_code == 409 and "REJECTED" in r.json["message"]
    r = _api(client, auth, "sales", req.id, "recall")
    assert r.status_code == 409
    rows = db.session.execute(
        sa.select(AuditLog.action).where(AuditLog.resource_id == req.id, AuditLog.action.in_(["APPROVE", "REJECT"]))
    ).scalars().all()
    assert sorted(a.value for a in rows) == ["APPROVE", "REJECT"]


def test_api_own_request_and_recall(client, auth, make, db, users):
    customer = make.customer("admin", investment_profile="moderate")
    own = make.approval("manager", customer=customer)
    r = _api(client, auth, "manager", own.id, "approve")
    assert r.status_code == 403 and "own request" in r.json["message"]

    req = make.approval("sales")
    assert _api(client, auth, "sales2", req.id, "recall").status_code == 404
    assert _api(client, auth, "manager", req.id, "recall").status_code == 403  # no can_recall
    r = _api(client, auth, "sales", req.id, "recall", {"comment": "取り下げ"})
    assert r.status_code == 200 and r.json["result"]["status"] == "RECALLED"
    r = _api(client, auth, "sales", req.id, "recall")
    assert r.status_code == 409
    assert _api(client, auth, "manager", req.id, "approve").status_code == 409
    types = db.session.execute(
        sa.select(OutboxEvent.type).where(OutboxEvent.aggregate_id == req.id).order_by(OutboxEvent.sequence)
    ).scalars().all()
    assert types == ["APPROVAL_REQUESTED", "APPROVAL_RECALLED"]


def test_api_admin_recall_of_own_request(client, auth, make, db):
    customer = make.customer("admin", investment_profile="moderate")
    req = make.approval("admin", customer=customer)
    assert _api(client, auth, "admin", req.id, "recall").status_code == 200


def test_api_edit_pending_409_and_submit_routes(client, auth, make, db, users):
    customer = make.customer("sales", investment_profile="moderate", risk_tolerance=5)
    r = client.post(
        "/api/v1/approval/",
        headers=auth("sales"),
        json={"customer": customer.id, "product_name": "国内株式ファンド", "product_risk": 3, "amount": THRESHOLD},
    )
    assert r.status_code == 201, r.json
    rid = str(r.json["id"])
    got = client.get(f"/api/v1/approval/{rid}", headers=auth("sales")).json["result"]
    assert got["compliance_reasons"] == ["AMOUNT_AT_OR_ABOVE_THRESHOLD"] and got["status"] == "PENDING"
    r = client.put(f"/api/v1/approval/{rid}", headers=auth("admin"), json={"amount": 1})
    assert r.status_code == 409 and "locked" in str(r.json["message"])
    assert _api(client, auth, "manager", rid, "approve").status_code == 200
    assert _api(client, auth, "compliance", rid, "approve").status_code == 200
    r = client.put(f"/api/v1/approval/{rid}", headers=auth("admin"), json={"product_name": "x"})
    assert r.status_code == 409 and "final" in str(r.json["message"])
    assert _status(db, rid) == ApprovalStatus.APPROVED


def test_api_actions_documented_in_openapi(client, auth):
    spec = client.get("/api/v1/_openapi", headers=auth("admin")).json
    for action in ("approve", "reject", "recall"):
        op = spec["paths"][f"/api/v1/approval/{{pk}}/{action}"]["post"]
        assert {"200", "400", "403", "404", "409"} <= set(map(str, op["responses"]))
        assert "comment" in op["requestBody"]["content"]["application/json"]["schema"]["properties"]


def test_api_two_concurrent_approvals_one_200_one_409(app, make, db, users, tokens, monkeypatch):
    """Two HTTP requests approve the same step at the same moment on PostgreSQL."""
    rid = make.approval("sales", amount=THRESHOLD).id
    monkeypatch.setattr(service, "_after_lock", lambda request: time.sleep(0.3))
    barrier = threading.Barrier(2)
    codes = []

    def call():
        c = app.test_client()
        barrier.wait()
        r = c.post(f"/api/v1/approval/{rid}/approve", headers={"Authorization": f"Bearer {tokens['manager']}"}, json={})
        codes.append(r.status_code)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert sorted(codes) == [200, 409]
    decided = db.session.execute(
        sa.select(sa.func.count())
        .select_from(ApprovalStep)
        .where(ApprovalStep.approval_request_id == rid, ApprovalStep.decision == StepDecision.APPROVED)
    ).scalar()
    assert decided == 1


def test_inbox_pages_and_counts(browser_login, make, db, monkeypatch):
    from views.approvals import PendingDecisionView

    monkeypatch.setattr(PendingDecisionView, "page_size", 2)
    made = [make.approval("sales") for _ in range(3)]
    manager = browser_login("manager")
    first = manager.get(INBOX).get_data(as_text=True)
    total = int(first.split('data-total="', 1)[1].split('"', 1)[0])
    assert total >= 3 and "approval-next-page" in first
    assert made[-1].id in first and made[0].id not in first  # newest first
    assert made[0].id in manager.get(INBOX + "?page=2").get_data(as_text=True)
    assert manager.get(INBOX + "?page=999").status_code == 200
    assert manager.get(INBOX + "?page=abc").status_code == 200
