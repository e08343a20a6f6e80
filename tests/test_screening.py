"""Meeting-note screening (app/services/screening.py): phrases flagged at save from every entry point,
the Compliance queue with the phrase highlighted, clear / escalate with a comment, audited."""

import re
import uuid

import pytest
import sqlalchemy as sa

from app.services import screening
from app.services.errors import Forbidden, ValidationFailed
from models import AuditLog, Meeting, MeetingFlag, ScreeningRule
from models.screening import FlagStatus, MatchKind


def flags_of(db, meeting_id):
    db.session.expire_all()
    return list(db.session.execute(sa.select(MeetingFlag).where(MeetingFlag.meeting_id == meeting_id).order_by(MeetingFlag.field, MeetingFlag.start)).scalars())


def rule(phrase, kind=MatchKind.literal, reason="test"):
    return ScreeningRule(id=0, phrase=phrase, match=kind, reason=reason, active=True)


# ----------------------------------------------------------------- matching


@pytest.mark.parametrize(
    "text, found",
    [
        ("この商品は必ず儲かるとお伝えした", "必ず儲か"),
        ("必ず儲かりますよ", "必ず儲か"),
        ("必ずもうかります", "必ずもうか"),
        ("この商品は必ず　儲かる", "必ず　儲か"),  # a full-width space between
        ("価格は絶対に上がります", "絶対に"),
        ("元本保証の商品ではありません", "元本保証"),
        ("確実に値上がりします", "確実に値上が"),
        ("損はさせません", "損はさせません"),
    ],
)
def test_the_default_rules_find_each_phrase_as_written(db, text, found):
    rules = screening.active_rules(db.session)
    hits = screening.find_matches(text, rules)
    assert found in [text[s:e] for _r, s, e in hits]


@pytest.mark.parametrize(
    "text",
    ["リスクについて説明し、元本割れの可能性があることを伝えた", "分配金は変動します。将来の成果を保証するものではありません", "", None],
)
def test_notes_without_the_phrases_are_not_flagged(db, text):
    assert screening.find_matches(text, screening.active_rules(db.session)) == []


def test_folding_maps_back_to_the_text_as_written():
    r = rule("ABC")
    text = "前置き ａ ｂ ｃ 後"
    [(_r, start, end)] = screening.find_matches(text, [(r, screening.pattern_of(r))])
    assert text[start:end] == "ａ ｂ ｃ"


def test_a_bad_rule_is_refused_naming_the_field():
    with pytest.raises(ValidationFailed) as bad:
        screening.check_rule(rule("(unclosed", MatchKind.regex))
    assert bad.value.field == "phrase"
    with pytest.raises(ValidationFailed) as empty:
        screening.check_rule(rule("  "))
    assert empty.value.field == "phrase"
    with pytest.raises(ValidationFailed) as no_reason:
        screening.check_rule(rule("ok", reason=" "))
    assert no_reason.value.field == "reason"


# ----------------------------------------------------------------- flagged at save, from every entry point


def test_a_meeting_note_is_flagged_at_save_and_once_per_sentence(db, make):
    meeting = make.meeting("sales", description="来期は必ず儲かると申し上げた。リスクも説明した。")
    [flag] = flags_of(db, meeting.id)
    assert (flag.matched, flag.field, flag.status, flag.sales_id) == ("必ず儲か", "description", FlagStatus.open, meeting.sales_id)
    assert screening.highlighted(flag) == ("来期は", "必ず儲か", "ると申し上げた。リスクも説明した。")
    row = db.session.get(Meeting, meeting.id)
    row.description = row.description + "追記。"  # the flagged sentence unchanged: no second flag
    db.session.commit()
    assert len(flags_of(db, meeting.id)) == 1
    row = db.session.get(Meeting, meeting.id)
    row.next_action = "次回も必ず儲かると伝える"  # a new sentence in another field
    db.session.commit()
    assert [(f.field, f.matched) for f in flags_of(db, meeting.id)] == [("description", "必ず儲か"), ("next_action", "必ず儲か")]


def test_flagged_from_the_api_from_fab_api_v1_and_from_the_screen(db, client, auth, make, users, browser_login):
    customer = make.customer("sales")
    api = client.post(
        "/api/meetings", headers=auth("sales"),
        json={"customerId": customer.id, "title": "API面談", "description": "絶対に上がります", "scheduledAt": "2030-01-10T10:00:00Z"},
    )
    assert api.status_code == 201, api.get_data(as_text=True)
    assert [f.phrase for f in flags_of(db, api.json["data"]["id"])] == ["絶対に"]

    mine = make.meeting("sales", customer=customer, title="v1面談")
    v1 = client.put(f"/api/v1/meeting/{mine.id}", headers=auth("sales"), json={"description": "元本保証です"})
    assert v1.status_code == 200, v1.get_data(as_text=True)
    assert [f.phrase for f in flags_of(db, mine.id)] == ["元本保証"]

    screen = browser_login("sales")
    other = make.meeting("sales", customer=customer, title="画面面談")
    resp = screen.post(
        f"/meetingview/edit/{other.id}",
        data={"customer": customer.id, "title": "画面面談", "description": "損はさせません", "type": "visit",
              "status": "scheduled", "scheduled_at": "2030-01-11 10:00:00", "sales": str(users["sales"].id)},
    )
    assert resp.status_code == 302, resp.get_data(as_text=True)[:400]
    assert [f.matched for f in flags_of(db, other.id)] == ["損はさせません"]


def test_an_inactive_rule_flags_nothing_and_a_new_rule_applies_at_once(db, make):
    phrase = f"特別金利{uuid.uuid4().hex[:4]}"
    new = ScreeningRule(phrase=phrase, match=MatchKind.literal, reason="テスト用", active=True)
    db.session.add(new)
    db.session.commit()
    try:
        flagged = make.meeting("sales", description=f"{phrase}をご案内")
        assert [f.phrase for f in flags_of(db, flagged.id)] == [phrase]
        new = db.session.get(ScreeningRule, new.id)
        new.active = False
        db.session.commit()
        quiet = make.meeting("sales", description=f"{phrase}をご案内")
        assert flags_of(db, quiet.id) == []
    finally:
        db.session.execute(sa.delete(ScreeningRule).where(ScreeningRule.phrase == phrase))
        db.session.commit()


# ----------------------------------------------------------------- the queue and its decisions


def test_compliance_clears_and_escalates_with_a_comment_audited(db, client, auth, make):
    one = make.meeting("sales", description="必ず儲かります")
    two = make.meeting("sales2", description="絶対に上がります")
    [f1], [f2] = flags_of(db, one.id), flags_of(db, two.id)
    listed = client.get("/api/screening/flags?status=open&limit=500", headers=auth("compliance"))
    assert listed.status_code == 200
    assert {f1.id, f2.id} <= {f["id"] for f in listed.json["data"]}

    no_comment = client.post(f"/api/screening/flags/{f1.id}/clear", headers=auth("compliance"), json={"comment": "  "})
    assert no_comment.status_code == 400 and "comment" in no_comment.get_data(as_text=True)
    bad = client.post(f"/api/screening/flags/{f1.id}/approve", headers=auth("compliance"), json={"comment": "x"})
    assert bad.status_code == 400 and "decision" in bad.get_data(as_text=True)
    assert flags_of(db, one.id)[0].status == FlagStatus.open  # nothing half written

    cleared = client.post(f"/api/screening/flags/{f1.id}/clear", headers=auth("compliance"), json={"comment": "文脈上問題なし"})
    assert cleared.status_code == 200 and cleared.json["data"]["status"] == "cleared"
    escalated = client.post(f"/api/screening/flags/{f2.id}/escalate", headers=auth("compliance"), json={"comment": "要指導"})
    assert escalated.status_code == 200 and escalated.json["data"]["status"] == "escalated"
    again = client.post(f"/api/screening/flags/{f1.id}/escalate", headers=auth("compliance"), json={"comment": "x"})
    assert again.status_code == 403

    audit = db.session.execute(
        sa.select(AuditLog).where(AuditLog.resource_type == "meeting_flag", AuditLog.resource_id.in_([f1.id, f2.id]), AuditLog.action == "UPDATE")
    ).scalars().all()
    decided = {a.resource_id: a.changes["after"] for a in audit}
    assert decided[f1.id]["status"] == "cleared" and decided[f1.id]["comment"] == "文脈上問題なし"
    assert decided[f2.id]["status"] == "escalated"


def test_sales_cannot_read_or_decide_and_a_manager_only_reads(db, client, auth, make):
    flag = flags_of(db, make.meeting("sales", description="必ず儲かる").id)[0]
    assert client.get("/api/screening/flags", headers=auth("sales")).status_code == 403
    assert client.post(f"/api/screening/flags/{flag.id}/clear", headers=auth("sales"), json={"comment": "自分で解除"}).status_code == 403
    assert client.get(f"/api/screening/flags/{flag.id}", headers=auth("manager")).status_code == 200
    assert client.post(f"/api/screening/flags/{flag.id}/clear", headers=auth("manager"), json={"comment": "x"}).status_code == 403
    assert flags_of(db, flag.meeting_id)[0].status == FlagStatus.open


def test_nobody_decides_a_flag_on_their_own_meeting(db, users, make):
    flag = flags_of(db, make.meeting("compliance", description="必ず儲かる").id)[0]
    with pytest.raises(Forbidden):
        screening.decide(flag, users["compliance"], "clear", "自分の面談")
    db.session.rollback()


def test_the_queue_screen_highlights_the_phrase_escaped_and_decides_by_post(db, browser_login, make):
    marker = uuid.uuid4().hex[:6]
    meeting = make.meeting("sales", title=f"画面キュー{marker}", description=f"<script>alert(1)</script>{marker} 必ず儲かる と説明")
    [flag] = flags_of(db, meeting.id)
    screen = browser_login("compliance")
    page = screen.get("/screening/").get_data(as_text=True)
    assert '<mark class="screening-hit">必ず儲か</mark>' in page
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
    assert screen.get(f"/screening/{flag.id}/decide").status_code == 405  # never a GET
    no_token = screen.post(f"/screening/{flag.id}/decide", data={"decision": "clear", "comment": "ok"}, csrf=False)
    assert no_token.status_code == 400
    assert flags_of(db, meeting.id)[0].status == FlagStatus.open
    done = screen.post(f"/screening/{flag.id}/decide", data={"decision": "clear", "comment": "確認済み"})
    assert done.status_code == 302
    assert flags_of(db, meeting.id)[0].status == FlagStatus.cleared
    cleared = screen.get("/screening/?status=cleared").get_data(as_text=True)
    assert f"画面キュー{marker}" in cleared and "確認済み" in cleared
    assert browser_login("sales").get("/screening/").status_code in (302, 403)


def test_the_rules_screen_refuses_a_broken_pattern(db, browser_login):
    screen = browser_login("compliance")
    phrase = f"(broken{uuid.uuid4().hex[:4]}"
    resp = screen.post("/screeningruleview/add", data={"phrase": phrase, "match": "regex", "reason": "x", "active": "y"})
    assert resp.status_code in (200, 302)
    assert db.session.execute(sa.select(ScreeningRule).where(ScreeningRule.phrase == phrase)).first() is None


def test_principal_protection_is_flagged_only_for_a_product_that_is_not(db, client, auth, make, browser_login, users):
    from tests.test_cards import product

    protected = product(db, name=f"元本保証型{uuid.uuid4().hex[:4]}", principal_protected=True, risk_rating=1)
    risky = product(db, name=f"仕組債{uuid.uuid4().hex[:4]}", principal_protected=False, risk_rating=5)
    customer = make.customer("sales")
    note = "元本保証の商品です"
    ok = client.post("/api/meetings", headers=auth("sales"), json={
        "customerId": customer.id, "title": "保証型", "description": note, "scheduledAt": "2030-02-01T10:00:00Z",
        "productId": protected.id})
    assert ok.status_code == 201, ok.get_data(as_text=True)
    assert ok.json["data"]["productId"] == protected.id and flags_of(db, ok.json["data"]["id"]) == []
    flagged = client.post("/api/meetings", headers=auth("sales"), json={
        "customerId": customer.id, "title": "仕組債", "description": note, "scheduledAt": "2030-02-01T11:00:00Z",
        "productId": risky.id})
    assert [f.matched for f in flags_of(db, flagged.json["data"]["id"])] == ["元本保証"]
    # Moving the meeting to the other product screens the note again.
    moved = client.put(f"/api/meetings/{ok.json['data']['id']}", headers=auth("sales"), json={"productId": risky.id})
    assert moved.status_code == 200 and [f.matched for f in flags_of(db, ok.json["data"]["id"])] == ["元本保証"]
    bad = client.post("/api/meetings", headers=auth("sales"), json={
        "customerId": customer.id, "title": "x", "scheduledAt": "2030-02-01T12:00:00Z", "productId": str(uuid.uuid4())})
    assert bad.status_code == 400 and "productId" in bad.get_data(as_text=True)
    # Other rules still apply to a principal-protected product's meeting.
    other = make.meeting("sales", customer=customer, description="絶対に上がります", product_id=protected.id)
    assert [f.matched for f in flags_of(db, other.id)] == ["絶対に"]
    # From the screen: the product select, then the same rule.
    screen = browser_login("sales")
    meeting = make.meeting("sales", customer=customer, title="画面保証型")
    resp = screen.post(
        f"/meetingview/edit/{meeting.id}",
        data={"customer": customer.id, "title": "画面保証型", "description": note, "type": "visit", "status": "scheduled",
              "scheduled_at": "2030-02-02 10:00:00", "sales": str(users["sales"].id), "product": protected.id},
    )
    assert resp.status_code == 302, resp.get_data(as_text=True)[:400]
    assert flags_of(db, meeting.id) == [] and db.session.get(Meeting, meeting.id).product_id == protected.id
