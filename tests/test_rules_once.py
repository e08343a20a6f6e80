"""Rules written once: the next approval step, the reject-comment check and the request's answer."""

import html

from app.services import approvals as service
from models import ApprovalRequest

THRESHOLD = 10_000_000  # at or above: a compliance step (tests/test_approvals.py)


def _fresh(db, request_id):
    db.session.expire_all()
    return db.session.get(ApprovalRequest, request_id)


def test_the_next_step_is_one_rule_read_alike_from_rows_and_from_sql(make, db, users):
    """`current_step` (loaded rows), `next_step` (reactions' query) and the inbox (SQL) agree at every point."""
    req = make.approval("sales", amount=THRESHOLD)

    def pending_ids(key):
        return set(db.session.execute(service.pending_for(users[key]).with_only_columns(ApprovalRequest.id)).scalars())

    for decider, sequence in (("manager", 1), ("compliance", 2)):
        row = _fresh(db, req.id)
        assert service.current_step(row).sequence == sequence
        assert service.next_step(db.session, req.id).sequence == sequence
        assert req.id in pending_ids(decider) and req.id not in pending_ids("compliance" if decider == "manager" else "manager")
        service.approve(req.id, users[decider], "ok")
    row = _fresh(db, req.id)
    assert service.current_step(row) is None and service.next_step(db.session, req.id) is None
    assert req.id not in pending_ids("manager") | pending_ids("compliance")


def test_a_reject_without_comment_says_the_same_everywhere(client, auth, make, browser_login, db):
    """The service's one message on the screen, under /api and under /api/v1."""
    req = make.approval("sales")
    message = service.REJECT_NEEDS_COMMENT
    v1 = client.post(f"/api/v1/approval/{req.id}/reject", headers=auth("manager"), json={"comment": " "})
    assert v1.status_code == 400 and v1.json["details"] == {"comment": [message]}
    api = client.post(f"/api/approvals/{req.id}/reject", headers=auth("manager"), json={})
    assert api.status_code == 400 and api.json["details"] == {"comment": [message]}
    put = client.put(f"/api/approvals/{req.id}", headers=auth("manager"), json={"status": "REJECTED"})
    assert put.status_code == 400 and put.json["details"] == {"comment": [message]}
    page = browser_login("manager").post(
        "/approvalrequestview/decide",
        data={"ids": [req.id], "decision": "reject", "comment": "", "next": "/approvals/pending/"},
        follow_redirects=True,
    )
    assert message in html.unescape(page.get_data(as_text=True))
    assert _fresh(db, req.id).steps[0].decision is None


def test_one_answer_for_a_request_under_api_and_api_v1(client, auth, make, db):
    """/api/approvals/<id> and /api/v1's decision answer are the service's payload (steps, current step)."""
    req = make.approval("sales", amount=THRESHOLD)
    expected = service.payload(_fresh(db, req.id))
    got = client.get(f"/api/approvals/{req.id}", headers=auth("manager")).json["data"]
    assert {k: got[k] for k in expected} == expected
    decided = client.post(f"/api/v1/approval/{req.id}/approve", headers=auth("manager"), json={"comment": "了承"}).json["result"]
    expected = service.payload(_fresh(db, req.id))
    assert decided == expected and decided["currentStep"] == 2
    got = client.get(f"/api/approvals/{req.id}", headers=auth("manager")).json["data"]
    assert {k: got[k] for k in expected} == expected
