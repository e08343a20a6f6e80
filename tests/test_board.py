"""The approvals board (issue 21 part 5) through the screens: columns and counts per role,
the scope rule (a rep never sees another rep's cards), and deciding from a card (CSRF, the
right role, the service's errors, nothing written by a refused or forged decision)."""

import re
from datetime import timedelta

import sqlalchemy as sa

from app.services import approvals as service
from models import ApprovalRequest, ApprovalStatus, AuditLog, Customer, OutboxEvent
from models.base import utcnow

BOARD = "/approvals/board/"
DECIDE = "/approvalrequestview/decide"
THRESHOLD = 10_000_000
COLUMNS = ("manager", "compliance", "approved", "rejected", "recalled")


def _columns(html):
    """{column key: (count shown, [card ids in that column])} of a board page."""
    out = {}
    for section in html.split('<section class="board-column')[1:]:
        key = re.search(r'data-column="(\w+)"', section).group(1)
        count = int(re.search(r'data-count="(\d+)"', section).group(1))
        out[key] = (count, re.findall(r'class="board-card[^"]*" data-id="([^"]+)"', section))
    assert tuple(out) == COLUMNS, html[:500]
    return out


def _board(client):
    resp = client.get(BOARD)
    assert resp.status_code == 200
    return resp.get_data(as_text=True)


def _counts(client):
    return {key: count for key, (count, _) in _columns(_board(client)).items()}


def _card(html, item_id):
    """The HTML of one card (empty when it is not on the page)."""
    found = re.search(rf'<article class="board-card[^"]*" data-id="{item_id}".*?</article>', html, re.S)
    return found.group(0) if found else ""


def _writes(db, item_id):
    """What a decision would have written about `item_id`: its steps' decisions, audit rows, outbox rows."""
    db.session.expire_all()
    req = db.session.get(ApprovalRequest, item_id)
    audits = db.session.execute(sa.select(sa.func.count()).select_from(AuditLog).where(AuditLog.resource_id == item_id)).scalar()
    outbox = db.session.execute(sa.select(sa.func.count()).select_from(OutboxEvent).where(OutboxEvent.aggregate_id == item_id)).scalar()
    return req.status, [s.decision for s in req.steps], audits, outbox


def _five_requests(make, users):
    """One sales request in each column, plus one of sales2 waiting for a Manager."""
    waiting = make.approval("sales")
    big = make.approval("sales", amount=THRESHOLD + 1)
    service.approve(big.id, users["manager"], "一次承認")  # now waits for Compliance
    approved = make.approval("sales")
    service.approve(approved.id, users["manager"])
    rejected = make.approval("sales")
    service.reject(rejected.id, users["manager"], "説明不足")
    recalled = make.approval("sales")
    service.recall(recalled.id, users["sales"])
    other = make.approval("sales2")
    return {"manager": waiting, "compliance": big, "approved": approved, "rejected": rejected, "recalled": recalled,
            "other": other}


def test_columns_and_counts_per_role(browser_login, make, users):
    """Each column counts what the role may see; a request sits in exactly its column."""
    keys = ("sales", "sales2", "manager", "compliance")
    before = {key: _counts(browser_login(key)) for key in keys}
    made = _five_requests(make, users)
    one_each = {key: 1 for key in COLUMNS}
    expected_delta = {
        "sales": one_each,
        "sales2": {**{key: 0 for key in COLUMNS}, "manager": 1},
        "manager": {**one_each, "manager": 2},
        "compliance": {**one_each, "manager": 2},
    }
    for key in keys:
        html = _board(browser_login(key))
        columns = _columns(html)
        delta = {col: columns[col][0] - before[key][col] for col in COLUMNS}
        assert delta == expected_delta[key], key
        for col in COLUMNS:
            if key != "sales2":
                assert made[col].id in columns[col][1], (key, col)
            assert all(made[col].id not in columns[other][1] for other in COLUMNS if other != col)

    html = _board(browser_login("manager"))
    card = _card(html, made["compliance"].id)
    assert made["compliance"].customer.name in card and "国内株式ファンド" in card and "¥10,000,001" in card
    assert 'data-reason="AMOUNT_AT_OR_ABOVE_THRESHOLD"' in card  # why Compliance must look
    assert re.search(r'class="board-age"[^>]*>\d+分<', card)  # age, in Japanese by default


def test_decision_forms_only_where_the_caller_may_decide(browser_login, make, users):
    """Manager: forms on the manager column (not their own); Compliance: on its column; Sales: none."""
    made = _five_requests(make, users)
    own = make.approval("manager", customer=make.customer("admin", investment_profile="moderate"))
    manager = _board(browser_login("manager"))
    assert "board-decide-form" in _card(manager, made["manager"].id)
    assert "board-decide-form" in _card(manager, made["other"].id)
    assert 'name="csrf_token"' in _card(manager, made["manager"].id)
    for key in ("compliance", "approved", "rejected", "recalled"):
        assert _card(manager, made[key].id) and "board-decide-form" not in _card(manager, made[key].id)
    assert _card(manager, own.id) and "board-decide-form" not in _card(manager, own.id)  # nobody decides their own
    compliance = _board(browser_login("compliance"))
    assert "board-decide-form" in _card(compliance, made["compliance"].id)
    assert "board-decide-form" not in _card(compliance, made["manager"].id)
    sales = _board(browser_login("sales"))
    assert _card(sales, made["manager"].id) and "board-decide-form" not in sales  # read-only


def test_sales_never_sees_sales2_cards_nor_deleted_customers(browser_login, make, db):
    mine, theirs = make.approval("sales"), make.approval("sales2")
    gone = make.approval("sales")
    db.session.execute(sa.update(Customer).where(Customer.id == gone.customer_id).values(deleted_at=utcnow()))
    db.session.commit()
    sales, sales2 = _board(browser_login("sales")), _board(browser_login("sales2"))
    assert mine.id in sales and theirs.id not in sales and theirs.customer.name not in sales
    assert theirs.id in sales2 and mine.id not in sales2 and mine.customer.name not in sales2
    assert gone.id not in sales and gone.id not in _board(browser_login("manager"))


def test_stale_requests_are_highlighted(browser_login, make, db, app, monkeypatch):
    old, fresh = make.approval("sales"), make.approval("sales")
    # requested_at is locked by the ORM guard once submitted: back-date it as an import would.
    db.session.execute(sa.update(ApprovalRequest).where(ApprovalRequest.id == old.id)
                       .values(requested_at=utcnow() - timedelta(hours=30)))
    db.session.commit()
    html = _board(browser_login("manager"))
    assert 'data-stale="1"' in _card(html, old.id) and "board-card-stale" in _card(html, old.id)
    assert re.search(r'class="board-age"[^>]*>1日<', _card(html, old.id))
    assert "data-stale" not in _card(html, fresh.id)
    monkeypatch.setitem(app.config, "APPROVAL_REMINDER_HOURS", 48)
    assert "data-stale" not in _card(_board(browser_login("manager")), old.id)


def test_decide_from_card_needs_csrf_and_goes_through_the_service(browser_login, make, db, users):
    req = make.approval("sales")
    manager = browser_login("manager")
    form = {"ids": [req.id], "decision": "approve", "comment": "確認済み", "next": BOARD}
    before = _writes(db, req.id)
    assert manager.post(DECIDE, data=form, csrf=False).status_code == 400  # no token: refused
    assert _writes(db, req.id) == before

    page = manager.post(DECIDE, data={**form, "decision": "reject", "comment": ""}, follow_redirects=True)
    text = page.get_data(as_text=True)
    assert page.request.path == BOARD and "(400)" in text and "a comment is required to reject" in text
    assert _writes(db, req.id) == before

    page = manager.post(DECIDE, data=form, follow_redirects=True)
    text = page.get_data(as_text=True)
    assert page.request.path == BOARD and "alert-success" in text
    assert req.id in _columns(text)["approved"][1]
    status, decisions, audits, _ = _writes(db, req.id)
    assert status == ApprovalStatus.APPROVED and audits > before[2]
    assert db.session.execute(sa.select(AuditLog.user_id).where(
        AuditLog.resource_id == req.id, AuditLog.action == "APPROVE")).scalar_one() == users["manager"].id

    stale = manager.post(DECIDE, data=form, follow_redirects=True).get_data(as_text=True)  # a second tab's old card
    assert "(409)" in stale


def test_wrong_role_and_forged_decisions_write_nothing(browser_login, make, db):
    theirs = make.approval("sales2")
    big = make.approval("sales", amount=THRESHOLD)
    before_theirs, before_big = _writes(db, theirs.id), _writes(db, big.id)
    form = {"decision": "approve", "comment": "偽造", "next": BOARD}
    # A Sales user forging a decision (on another rep's request, and on their own): no can_decide.
    sales = browser_login("sales")
    assert sales.post(DECIDE, data={**form, "ids": [theirs.id]}).status_code == 403
    assert sales.post(DECIDE, data={**form, "ids": [big.id]}).status_code == 403
    # Nor may they recall a request outside their scope: it is not found.
    page = sales.post(f"/approvalrequestview/recall/{theirs.id}", data={"next": BOARD}, follow_redirects=True)
    assert "(404)" in page.get_data(as_text=True)
    # Compliance before the Manager step: the wrong role for the current step.
    page = browser_login("compliance").post(DECIDE, data={**form, "ids": [big.id]}, follow_redirects=True)
    assert "(403)" in page.get_data(as_text=True)
    # A Manager forging an id that is no request: not found.
    page = browser_login("manager").post(DECIDE, data={**form, "ids": ["00000000-0000-0000-0000-000000000000"]},
                                         follow_redirects=True)
    assert "(404)" in page.get_data(as_text=True)
    assert _writes(db, theirs.id) == before_theirs and _writes(db, big.id) == before_big


def test_board_needs_login_and_is_in_the_menu(app, browser_login):
    assert app.test_client().get(BOARD).status_code in (302, 401)
    for key in ("sales", "manager", "compliance", "admin"):
        assert 'href="/approvals/board/"' in browser_login(key).get("/").get_data(as_text=True), key
