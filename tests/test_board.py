"""The approvals board (issue 21 part 5) through the screens: columns and counts per role,
the scope rule (a rep never sees another rep's cards), and deciding from a card (CSRF, the
right role, the service's errors, nothing written by a refused or forged decision)."""

import re
import uuid
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


def _board(client, **args):
    """The board page's HTML (`args`: its query string, e.g. customer=<id> to find one's own cards)."""
    resp = client.get(BOARD, query_string=args)
    assert resp.status_code == 200
    return resp.get_data(as_text=True)


def _counts(client, **args):
    return {key: count for key, (count, _) in _columns(_board(client, **args)).items()}


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
    """One sales request in each column, all for one customer, plus one of sales2 waiting for a Manager."""
    customer = make.customer("sales", investment_profile="moderate", risk_tolerance=5)
    waiting = make.approval("sales", customer=customer)
    big = make.approval("sales", customer=customer, amount=THRESHOLD + 1)
    service.approve(big.id, users["manager"], "一次承認")  # now waits for Compliance
    approved = make.approval("sales", customer=customer)
    service.approve(approved.id, users["manager"])
    rejected = make.approval("sales", customer=customer)
    service.reject(rejected.id, users["manager"], "説明不足")
    recalled = make.approval("sales", customer=customer)
    service.recall(recalled.id, users["sales"])
    other = make.approval("sales2")
    return {"manager": waiting, "compliance": big, "approved": approved, "rejected": rejected, "recalled": recalled,
            "other": other, "customer": customer}


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
    mine = made["customer"].id
    for key in keys:
        client = browser_login(key)
        delta = {col: n - before[key][col] for col, n in _counts(client).items()}
        assert delta == expected_delta[key], key
        # Narrowed to the one customer, a column holds exactly its request (sales2: none, out of scope).
        columns = _columns(_board(client, customer=mine))
        for col in COLUMNS:
            expected = [] if key == "sales2" else [made[col].id]
            assert columns[col] == (len(expected), expected), (key, col)
        theirs = _columns(_board(client, customer=made["other"].customer_id))
        assert theirs["manager"][1] == ([] if key == "sales" else [made["other"].id]), key

    html = _board(browser_login("manager"), customer=mine)
    card = _card(html, made["compliance"].id)
    assert made["compliance"].customer.name in card and "国内株式ファンド" in card and "¥10,000,001" in card
    assert 'data-reason="AMOUNT_AT_OR_ABOVE_THRESHOLD"' in card  # why Compliance must look
    assert re.search(r'class="board-age"[^>]*>\d+分<', card)  # age, in Japanese by default


def test_decision_forms_only_where_the_caller_may_decide(browser_login, make, users):
    """Manager: forms on the manager column (not their own); Compliance: on its column; Sales: none."""
    made = _five_requests(make, users)
    mine = made["customer"].id
    own = make.approval("manager", customer=make.customer("admin", investment_profile="moderate"))
    manager = _board(browser_login("manager"), customer=mine)
    assert "board-decide-form" in _card(manager, made["manager"].id)
    assert "board-decide-form" in _card(_board(browser_login("manager"), customer=made["other"].customer_id), made["other"].id)
    assert 'name="csrf_token"' in _card(manager, made["manager"].id)
    for key in ("compliance", "approved", "rejected", "recalled"):
        assert _card(manager, made[key].id) and "board-decide-form" not in _card(manager, made[key].id)
    mine_own = _board(browser_login("manager"), customer=own.customer_id)
    assert _card(mine_own, own.id) and "board-decide-form" not in _card(mine_own, own.id)  # nobody decides their own
    compliance = _board(browser_login("compliance"), customer=mine)
    assert "board-decide-form" in _card(compliance, made["compliance"].id)
    assert "board-decide-form" not in _card(compliance, made["manager"].id)
    sales = _board(browser_login("sales"), customer=mine)
    assert _card(sales, made["manager"].id) and "board-decide-form" not in sales  # read-only


def test_sales_never_sees_sales2_cards_nor_deleted_customers(browser_login, make, db):
    mine, theirs = make.approval("sales"), make.approval("sales2")
    gone = make.approval("sales")
    db.session.execute(sa.update(Customer).where(Customer.id == gone.customer_id).values(deleted_at=utcnow()))
    db.session.commit()
    sales, sales2 = browser_login("sales"), browser_login("sales2")
    assert mine.id in _board(sales, customer=mine.customer_id)
    assert theirs.id in _board(sales2, customer=theirs.customer_id)
    for client, other in ((sales, theirs), (sales2, mine)):
        # Neither the whole board, nor narrowed to the other's customer or its name, shows the other's card.
        for args in ({}, {"customer": other.customer_id}, {"q": other.customer.name}):
            html = _board(client, **args)
            assert other.id not in html and other.customer.name not in html.replace(f'value="{other.customer.name}"', ""), args
    for client in (sales, browser_login("manager")):
        assert gone.id not in _board(client, customer=gone.customer_id) and gone.id not in _board(client)


def test_stale_requests_are_highlighted(browser_login, make, db, app, monkeypatch):
    old, fresh = make.approval("sales"), make.approval("sales")
    # requested_at is locked by the ORM guard once submitted: back-date it as an import would.
    db.session.execute(sa.update(ApprovalRequest).where(ApprovalRequest.id == old.id)
                       .values(requested_at=utcnow() - timedelta(hours=30)))
    db.session.commit()
    manager = browser_login("manager")
    html = _board(manager, customer=old.customer_id)
    assert 'data-stale="1"' in _card(html, old.id) and "board-card-stale" in _card(html, old.id)
    assert re.search(r'class="board-age"[^>]*>1日<', _card(html, old.id))
    assert _card(_board(manager, customer=fresh.customer_id), fresh.id)
    assert "data-stale" not in _card(_board(manager, customer=fresh.customer_id), fresh.id)
    monkeypatch.setitem(app.config, "APPROVAL_REMINDER_HOURS", 48)
    assert "data-stale" not in _card(_board(manager, customer=old.customer_id), old.id)


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

    back = f"{BOARD}?customer={req.customer_id}"
    page = manager.post(DECIDE, data={**form, "next": back}, follow_redirects=True)
    text = page.get_data(as_text=True)
    assert page.request.path == BOARD and "alert-success" in text
    assert _columns(text)["approved"][1] == [req.id]  # back on the same, narrowed board
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


def test_every_card_is_reachable_page_by_page_and_by_text(browser_login, make, monkeypatch):
    from app.services import approval_board

    customer = make.customer("sales", investment_profile="moderate", name=f"ページ送り商事{uuid.uuid4().hex[:6]}")
    made = [make.approval("sales", customer=customer).id for _ in range(3)]
    monkeypatch.setattr(approval_board, "CARD_LIMIT", 2)
    manager = browser_login("manager")
    first = _board(manager, customer=customer.id)
    assert _columns(first)["manager"] == (3, made[:2])  # oldest first
    more = re.search(r'class="btn btn-xs btn-default board-next" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    assert "page_manager=2" in more and f"customer={customer.id}" in more
    second = manager.get(more).get_data(as_text=True)
    assert _columns(second)["manager"] == (3, made[2:])
    by_name = _columns(_board(manager, q=customer.name[-8:]))  # part of the customer's name
    assert by_name["manager"][0] == 3
    assert _columns(_board(manager, q="%"))["manager"] == (0, [])  # LIKE's wildcards are text here


def test_bad_filters_answer_400_naming_the_field(browser_login):
    manager = browser_login("manager")
    for args, field in (({"page_approved": "x"}, "page_approved"), ({"page_manager": "0"}, "page_manager"),
                        ({"q": "a" * 201}, "q"), ({"q": "nul\x00"}, "q"), ({"customer": "c" * 37}, "customer")):
        resp = manager.get(BOARD, query_string=args)
        assert resp.status_code == 400 and field in resp.get_data(as_text=True), args
