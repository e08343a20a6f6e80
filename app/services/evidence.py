"""The evidence pack of one approval request: what was known, said and decided about the sale.

One JSON document and one PDF built from it: the customer card and product frozen at
submit (`suitability_snapshot`), the routing reasons, the elderly-customer checks and
`executableFrom`, the customer's meeting notes around the proposal (with their screening
flags and decisions), every step with its decider, comment and time, the request's
attachments (name and SHA-256) and its audit rows with their chain hashes
(app/audit_chain.py). The JSON is canonical (sorted keys, no spaces), so its SHA-256 names
its content; both hashes are kept in `evidence_packs`, the files in the storage
(app/storage.py, beside the attachments). `verify` reads the files back and recomputes.

A pack is built when the request is decided (the APPROVAL_APPROVED / APPROVAL_REJECTED
reaction, app/reactions.py) and on demand by a Manager, Compliance or an Admin.
"""

import hashlib
import io
import json
from datetime import timedelta

import sqlalchemy as sa
from flask import current_app

from app import storage
from app.scope import sees_all
from app.services.errors import NotFound
from models.approval import ApprovalRequest, ApprovalStatus
from models.attachment import Attachment, OwnerType
from models.audit import AuditLog
from models.base import new_id, utcnow
from models.evidence import EvidencePack
from models.meeting import Meeting
from models.screening import MeetingFlag

SCHEMA = 1
TRIGGERS = ("decision", "manual")


def _iso(value):
    return value.isoformat() if value is not None else None


def _name(user):
    if user is None:
        return None
    return " ".join(p for p in (user.first_name, user.last_name) if p and p != "-") or user.email


def _meetings(session, request, until):
    """The customer's meetings from EVIDENCE_MEETING_DAYS before the proposal to `until`, with their flags."""
    since = request.requested_at - timedelta(days=int(current_app.config["EVIDENCE_MEETING_DAYS"]))
    meetings = session.execute(
        sa.select(Meeting)
        .where(Meeting.customer_id == request.customer_id, Meeting.scheduled_at >= since, Meeting.scheduled_at <= until)
        .order_by(Meeting.scheduled_at, Meeting.id)
    ).unique().scalars().all()
    flags = {}
    if meetings:
        for flag in session.execute(
            sa.select(MeetingFlag).where(MeetingFlag.meeting_id.in_([m.id for m in meetings])).order_by(MeetingFlag.created_at)
        ).unique().scalars():
            flags.setdefault(flag.meeting_id, []).append(
                {"phrase": flag.phrase, "matched": flag.matched, "field": flag.field, "status": flag.status.value,
                 "comment": flag.comment, "decidedBy": _name(flag.decided_by), "decidedAt": _iso(flag.decided_at)}
            )
    return [
        {"id": m.id, "scheduledAt": _iso(m.scheduled_at), "title": m.title, "description": m.description,
         "nextAction": m.next_action, "status": m.status.value if m.status else None, "sales": _name(m.sales),
         "flags": flags.get(m.id, [])}
        for m in meetings
    ]


def _attachments(session, request):
    rows = session.execute(
        sa.select(Attachment)
        .where(Attachment.owner_type == OwnerType.approval_request, Attachment.owner_id == request.id,
               Attachment.deleted_at.is_(None))
        .order_by(Attachment.uploaded_at, Attachment.id)
    ).scalars()
    return [{"filename": a.filename, "contentType": a.content_type, "size": a.size_bytes, "sha256": a.sha256,
             "uploadedAt": _iso(a.uploaded_at)} for a in rows]


def _audit(session, request):
    """The audit rows of the request and its steps, oldest first, with their place in the chain."""
    step_ids = [str(s.id) for s in request.steps]
    rows = session.execute(
        sa.select(AuditLog)
        .where(
            sa.or_(
                sa.and_(AuditLog.resource_type == "approval_request", AuditLog.resource_id == str(request.id)),
                sa.and_(AuditLog.resource_type == "approval_step", AuditLog.resource_id.in_(step_ids or ["-"])),
            )
        )
        .order_by(AuditLog.timestamp, AuditLog.id)
    ).unique().scalars()
    return [
        {"id": r.id, "at": _iso(r.timestamp), "user": _name(r.user), "action": r.action.value,
         "resourceType": r.resource_type, "resourceId": r.resource_id, "changes": r.changes,
         "seq": r.seq, "rowHash": r.row_hash}
        for r in rows
    ]


def contents(session, request, now=None):
    """The pack's document for `request` (a dict that `canonical` turns into the JSON file)."""
    now = now or utcnow()
    snapshot = request.suitability_snapshot or {}
    customer = request.customer
    return {
        "schema": SCHEMA,
        "builtAt": _iso(now),
        "request": {
            "id": request.id, "status": request.status.value, "productName": request.product_name,
            "productRisk": request.product_risk, "amount": str(request.amount), "comment": request.comment,
            "requestedAt": _iso(request.requested_at), "processedAt": _iso(request.processed_at),
            "requester": _name(request.requester),
            "executableFrom": request.executable_from.isoformat() if request.executable_from else None,
            "complianceReasons": list(request.compliance_reasons or []),
        },
        "customer": {"id": customer.id, "name": customer.name} if customer else None,
        "card": snapshot.get("card"),
        "cardState": snapshot.get("cardState"),
        "product": snapshot.get("product"),
        "reasons": snapshot.get("reasons", []),
        "elderly": snapshot.get("elderly"),
        "snapshotTakenAt": snapshot.get("takenAt"),
        "steps": [
            {"sequence": s.sequence, "role": s.required_role, "kind": s.kind,
             "decision": s.decision.value if s.decision else None, "decidedBy": _name(s.decided_by),
             "comment": s.comment, "decidedAt": _iso(s.decided_at)}
            for s in sorted(request.steps, key=lambda s: s.sequence)
        ],
        "meetings": _meetings(session, request, request.processed_at or now),
        "attachments": _attachments(session, request),
        "audit": _audit(session, request),
    }


def canonical(document):
    """The JSON file's bytes: sorted keys, no spaces, UTF-8 (the same document, the same bytes)."""
    return json.dumps(document, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")


def _text(value):
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "はい" if value else "いいえ"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def _when(iso):
    """An ISO timestamp of the document in the display time zone, to the minute ("—" for none)."""
    from datetime import datetime

    from app.i18n import display_zone

    if not iso:
        return "—"
    return datetime.fromisoformat(iso).astimezone(display_zone()).strftime("%Y-%m-%d %H:%M")


def render_pdf(document, json_sha256):
    """The PDF of `document` (app/pdf.py, Japanese font), naming the JSON's SHA-256 on its first page."""
    from app.pdf import Document

    req = document["request"]
    customer = document["customer"]["name"] if document["customer"] else ""
    doc = Document("証跡パック (Evidence pack)", subtitle=f"{req['productName']} / {customer}")
    doc.key_values([
        ("依頼 ID", req["id"]), ("顧客", customer), ("状態", req["status"]), ("金額 (円)", req["amount"]),
        ("依頼者", req["requester"]), ("依頼日時", _when(req["requestedAt"])), ("決裁日時", _when(req["processedAt"])),
        ("執行可能日", req["executableFrom"] or "—"), ("作成日時", _when(document["builtAt"])),
    ])
    doc.paragraph("JSON の SHA-256:")
    doc.paragraph(json_sha256)
    doc.heading("顧客カード (申請時点)")
    card = document.get("card") or {}
    doc.key_values([(k, _text(v)) for k, v in sorted(card.items())] or [("カード", "なし")])
    doc.key_values([("カードの状態", _text(document.get("cardState")))])
    doc.heading("商品 (申請時点)")
    doc.key_values([(k, _text(v)) for k, v in sorted((document.get("product") or {}).items())] or [("商品", "—")])
    doc.heading("審査理由")
    for r in document.get("reasons") or []:
        doc.paragraph(f"{r.get('code')}: {r.get('detail') or ''}")
    if not document.get("reasons"):
        doc.paragraph("(なし)")
    doc.heading("高齢顧客の確認")
    doc.key_values([(k, _text(v)) for k, v in sorted((document.get("elderly") or {}).items())] or [("確認", "—")])
    doc.heading("承認ステップ")
    for s in document["steps"]:
        kind = f" ({s['kind']})" if s["kind"] else ""
        doc.paragraph(f"{s['sequence']}. {s['role']}{kind}: {s['decision'] or '未決'} / {s['decidedBy'] or '—'} / {_when(s['decidedAt'])}")
        if s["comment"]:
            doc.paragraph(f"コメント: {s['comment']}")
    doc.heading("面談記録")
    for m in document["meetings"]:
        doc.paragraph(f"{_when(m['scheduledAt'])} {m['title']} ({m['sales'] or ''})")
        if m["description"]:
            doc.paragraph(m["description"])
        if m["nextAction"]:
            doc.paragraph(f"次回アクション: {m['nextAction']}")
        for f in m["flags"]:
            doc.paragraph(f"禁止表現チェック: 「{f['matched']}」 {f['status']} {f['comment'] or ''}")
    if not document["meetings"]:
        doc.paragraph("(該当なし)")
    doc.heading("添付ファイル")
    for a in document["attachments"]:
        doc.paragraph(f"{a['filename']} ({a['contentType']}, {a['size']} bytes) SHA-256 {a['sha256']}")
    if not document["attachments"]:
        doc.paragraph("(なし)")
    doc.heading("監査ログ")
    doc.table(["日時", "利用者", "操作", "対象", "連番"],
              [[_when(a["at"]), a["user"], a["action"], a["resourceType"], a["seq"]] for a in document["audit"]])
    return doc.to_bytes()


def _store():
    return storage.from_config(current_app.config)


def build(session, request, user=None, trigger="manual", now=None):
    """Build, store and record a pack of `request` (the caller commits); returns the EvidencePack row."""
    if trigger not in TRIGGERS:
        raise ValueError(f"trigger must be one of {TRIGGERS}")
    document = contents(session, request, now=now)
    data = canonical(document)
    json_sha = hashlib.sha256(data).hexdigest()
    pdf = render_pdf(document, json_sha)
    pack_id = new_id()
    base = f"evidence/{request.id}/{pack_id}"
    store = _store()
    store.put(f"{base}.json", io.BytesIO(data))
    store.put(f"{base}.pdf", io.BytesIO(pdf))
    pack = EvidencePack(
        id=pack_id, approval_request_id=request.id, trigger=trigger, request_status=request.status.value,
        json_sha256=json_sha, pdf_sha256=hashlib.sha256(pdf).hexdigest(), json_key=f"{base}.json", pdf_key=f"{base}.pdf",
        json_size=len(data), pdf_size=len(pdf), created_by_id=getattr(user, "id", None),
    )
    session.add(pack)
    session.flush()
    return pack


def on_decision(session, request):
    """The pack of a request just decided, once (a redelivered outcome event builds no second one)."""
    if request.status not in (ApprovalStatus.APPROVED, ApprovalStatus.REJECTED):
        return None
    exists = session.execute(
        sa.select(EvidencePack.id).where(EvidencePack.approval_request_id == request.id, EvidencePack.trigger == "decision")
    ).first()
    if exists:
        return None
    return build(session, request, None, trigger="decision")


def packs_of(session, request_id):
    """The packs of one request, newest first."""
    return list(session.execute(
        sa.select(EvidencePack).where(EvidencePack.approval_request_id == request_id)
        .order_by(EvidencePack.created_at.desc(), EvidencePack.id)
    ).scalars())


def readable_request(session, request_id, user):
    """The request `request_id` when `user` may read its evidence (Manager, Compliance, Admin), else NotFound."""
    request = session.get(ApprovalRequest, str(request_id)) if request_id else None
    if request is None or not sees_all(user):
        raise NotFound("ApprovalRequest not found")
    return request


def read(pack, kind):
    """The bytes of the pack's `kind` file ("json" or "pdf")."""
    with _store().get(pack.json_key if kind == "json" else pack.pdf_key) as fh:
        return fh.read()


def verify(pack):
    """{"json": bool, "pdf": bool}: whether each stored file still has the SHA-256 recorded at build."""
    out = {}
    for kind, expected in (("json", pack.json_sha256), ("pdf", pack.pdf_sha256)):
        try:
            out[kind] = hashlib.sha256(read(pack, kind)).hexdigest() == expected
        except storage.StorageError:
            out[kind] = False
    return out
