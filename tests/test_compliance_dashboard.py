"""The Compliance dashboard (app/services/compliance_dashboard.py, views/compliance.py): stale cards,
flagged notes, elderly-customer cases, reasons and trends, each moved by the records behind it."""

from datetime import timedelta

import sqlalchemy as sa

from app.services import compliance_dashboard as board
from models import CustomerCard, ProductType, User
from models.base import utcnow
from tests.helpers import unique_tag
from tests.test_cards import birth_for_age, product, save_card, submit


def figures(db, users, key="compliance"):
    db.session.expire_all()
    return board.figures(db.session, db.session.get(User, users[key].id))


def test_each_block_moves_with_the_records_behind_it(app, db, users, make):
    before = figures(db, users)
    # A card reviewed longer ago than CARD_REVIEW_MONTHS: stale, listed with when it was reviewed.
    stale = make.customer("sales", name=f"見直し顧客{unique_tag('s')}")
    card = save_card(db, users, stale)
    months = app.config["CARD_REVIEW_MONTHS"]
    db.session.execute(sa.update(CustomerCard).where(CustomerCard.id == card.id)
                       .values(reviewed_at=utcnow() - timedelta(days=31 * months + 40)))
    db.session.commit()
    make.customer("sales")  # no card at all
    make.meeting("sales", customer=stale, description="元本保証ですと伝えた")  # a flagged note
    elderly = make.customer("sales", investment_profile="moderate")
    save_card(db, users, elderly, dateOfBirth=birth_for_age(81).isoformat(), riskTolerance=9)
    req = submit(db, users, elderly, product(db, risk_rating=5, complex=True, product_type=ProductType.structured_bonds),
                 amount=20_000_000)
    after = figures(db, users)

    assert after["cards"]["stale"] == before["cards"]["stale"] + 1
    assert after["cards"]["withoutCard"] == before["cards"]["withoutCard"] + 1
    assert stale.name in {c["customerName"] for c in after["cards"]["staleList"]} or before["cards"]["stale"] >= board.LIST_LIMIT
    assert after["flags"]["counts"]["open"] == before["flags"]["counts"]["open"] + 1
    assert after["elderly"]["supervisorPending"] == before["elderly"]["supervisorPending"] + 1
    [case] = [c for c in after["elderly"]["cases"] if c["id"] == req.id]
    assert case["age"] == 81 and case["supervisor"] is True and case["status"] == "PENDING"
    totals, totals_before = dict(after["reasonTotals"]), dict(before["reasonTotals"])
    assert totals["AMOUNT_AT_OR_ABOVE_THRESHOLD"] == totals_before.get("AMOUNT_AT_OR_ABOVE_THRESHOLD", 0) + 1
    for series in ("flags", "routed", "elderly"):  # this week is the last point of each trend
        assert after["trend"][series][-1] == before["trend"][series][-1] + 1, series
    assert len(after["weeks"]) == board.WEEKS and after["weeks"] == sorted(after["weeks"])


def test_a_sales_rep_counts_only_their_own_and_cannot_open_the_screen(db, users, make, browser_login):
    theirs = figures(db, users, "sales2")
    make.meeting("sales", description="絶対に上がります")
    assert figures(db, users, "sales2")["flags"]["counts"] == theirs["flags"]["counts"]
    assert browser_login("sales").get("/compliance/").status_code in (302, 403)


def test_the_screen_shows_every_block_with_its_chart(db, users, make, browser_login):
    meeting = make.meeting("sales", title=f"ダッシュボード{unique_tag('d')}", description="必ず儲かりますよ")
    page = browser_login("compliance").get("/compliance/").get_data(as_text=True)
    for block in ("stale-cards", "flags", "elderly", "reasons", "trend"):
        assert f'data-block="{block}"' in page, block
    assert meeting.title in page and 'data-chart-kind="trend"' in page and "chart.umd.min.js" in page
    assert browser_login("manager").get("/compliance/").status_code == 200
