"""Meeting-note screening: phrase rules flag a note at save; Compliance clears or escalates.

FIEA Art. 38 (2) forbids giving a customer an assertive judgment on an uncertain matter
(断定的判断の提供: 「必ず儲かる」, 「絶対に上がる」). Every meeting write, from any entry
point (screens, /api, /api/v1, the calendar, imports, workers), passes one `before_flush`
listener that screens the note's title, description and next action against the active
rules (`screening_rules`, edited by Compliance on its screen) and adds a `meeting_flags`
row per match in the same transaction. Matching folds what a writer varies without
changing the meaning: full-width and half-width forms (NFKC), letter case, and spaces
between the characters.
"""

import hashlib
import re
import unicodedata

import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.scope import scope_clause
from app.services.errors import Forbidden, ValidationFailed
from models.base import utcnow
from models.meeting import Meeting
from models.product import Product
from models.screening import FlagStatus, MatchKind, MeetingFlag, ScreeningRule

#: The meeting columns screened, in the order a reviewer reads them.
SCREENED_FIELDS = ("title", "description", "next_action")
_SENTENCE_END = "。．.！!？?\n"
#: Decisions a reviewer may take on an open flag.
DECISIONS = {"clear": FlagStatus.cleared, "escalate": FlagStatus.escalated}


def fold(text):
    """`text` as matched (NFKC, lower case, no whitespace), and for each of its characters the index it came from."""
    out, origin = [], []
    for i, ch in enumerate(text or ""):
        for c in unicodedata.normalize("NFKC", ch).lower():
            if not c.isspace():
                out.append(c)
                origin.append(i)
    return "".join(out), origin


def pattern_of(rule):
    """The compiled pattern of `rule`, matched against folded text; ValidationFailed naming `phrase` when invalid."""
    phrase = (rule.phrase or "").strip()
    if not phrase:
        raise ValidationFailed("phrase is required", field="phrase")
    if rule.match == MatchKind.regex:
        try:
            return re.compile(unicodedata.normalize("NFKC", phrase).lower())
        except re.error as exc:
            raise ValidationFailed(f"phrase is not a valid regular expression: {exc}", field="phrase") from None
    return re.compile(re.escape(fold(phrase)[0]))


def sentence_around(text, start, end):
    """The sentence of `text` that holds [start, end) (bounded by 。!? and line ends)."""
    left = max((text.rfind(c, 0, start) for c in _SENTENCE_END), default=-1) + 1
    rights = [i for i in (text.find(c, end) for c in _SENTENCE_END) if i >= 0]
    right = min(rights) + 1 if rights else len(text)
    return text[left:right].strip()


def find_matches(text, rules):
    """[(rule, start, end)] of every rule's matches in `text`, as offsets into `text` itself."""
    folded, origin = fold(text)
    found = []
    for rule, pattern in rules:
        for m in pattern.finditer(folded):
            if m.end() > m.start():
                found.append((rule, origin[m.start()], origin[m.end() - 1] + 1))
    return sorted(found, key=lambda f: (f[1], f[0].id or 0))


def active_rules(session):
    """[(rule, compiled pattern)] of the active rules; a rule whose pattern no longer compiles is skipped."""
    rules = []
    for rule in session.execute(sa.select(ScreeningRule).where(ScreeningRule.active.is_(True)).order_by(ScreeningRule.id)).scalars():
        try:
            rules.append((rule, pattern_of(rule)))
        except ValidationFailed:
            continue
    return rules


def _sentence_hash(text):
    return hashlib.sha256(text.encode()).hexdigest()


def flags_for(meeting, rules, known=(), principal_protected=False):
    """New MeetingFlag rows for `meeting`'s note under `rules`, skipping (rule, field, sentence) keys in `known`.

    `principal_protected`: the meeting is about a principal-protected product, so the rules
    marked `except_principal_protected` do not apply.
    """
    flags, seen = [], set(known)
    if principal_protected:
        rules = [(rule, pattern) for rule, pattern in rules if not rule.except_principal_protected]
    for field in SCREENED_FIELDS:
        text = getattr(meeting, field) or ""
        for rule, start, end in find_matches(text, rules):
            sentence = sentence_around(text, start, end)
            key = (rule.id, field, _sentence_hash(sentence))
            if key in seen:
                continue
            seen.add(key)
            flags.append(
                MeetingFlag(
                    meeting_id=meeting.id, rule_id=rule.id, sales_id=meeting.sales_id, phrase=rule.phrase,
                    reason=rule.reason, field=field, matched=text[start:end][:200], excerpt=text, start=start,
                    sentence_hash=key[2],
                )
            )
    return flags


def _note_changed(meeting):
    state = sa.inspect(meeting)
    return state.pending or any(state.attrs[f].history.has_changes() for f in (*SCREENED_FIELDS, "product_id", "product"))


def _principal_protected(session, meeting):
    """True when the meeting is about a principal-protected product (its relationship wins over the id, as at flush)."""
    product = meeting.product
    if product is None and meeting.product_id:
        product = session.get(Product, meeting.product_id)
    return bool(product is not None and product.principal_protected)


def _before_flush(session, flush_context, instances):
    meetings = [m for m in (*session.new, *session.dirty) if isinstance(m, Meeting) and _note_changed(m)]
    if not meetings:
        return
    with session.no_autoflush:
        rules = active_rules(session)
        if not rules:
            return
        for meeting in meetings:
            if meeting.id is None:
                meeting.id = Meeting.id.default.arg(None)
            known = set()
            if not sa.inspect(meeting).pending:
                known = set(
                    session.execute(
                        sa.select(MeetingFlag.rule_id, MeetingFlag.field, MeetingFlag.sentence_hash).where(
                            MeetingFlag.meeting_id == meeting.id
                        )
                    ).all()
                )
            for flag in flags_for(meeting, rules, known, principal_protected=_principal_protected(session, meeting)):
                session.add(flag)


def install(session_class=Session):
    """Screen every meeting note written through a session of `session_class`, at flush."""
    if not sa.event.contains(session_class, "before_flush", _before_flush):
        sa.event.listen(session_class, "before_flush", _before_flush)


def queue(session, user, status=FlagStatus.open, limit=100):
    """Flags in `user`'s scope with `status`, oldest first (the Compliance queue)."""
    stmt = (
        sa.select(MeetingFlag)
        .join(Meeting, Meeting.id == MeetingFlag.meeting_id)
        .where(scope_clause(MeetingFlag, user), scope_clause(Meeting, user))
        .order_by(MeetingFlag.created_at, MeetingFlag.id)
        .limit(limit)
    )
    if status is not None:
        stmt = stmt.where(MeetingFlag.status == status)
    return list(session.execute(stmt).unique().scalars())


def counts(session, user):
    """{status: number of flags} in `user`'s scope."""
    rows = session.execute(
        sa.select(MeetingFlag.status, sa.func.count())
        .join(Meeting, Meeting.id == MeetingFlag.meeting_id)
        .where(scope_clause(MeetingFlag, user), scope_clause(Meeting, user))
        .group_by(MeetingFlag.status)
    ).all()
    found = {status: n for status, n in rows}
    return {s.value: found.get(s, 0) for s in FlagStatus}


def decide(flag, user, decision, comment):
    """Clear or escalate an open `flag` with a comment (audited at flush); the caller commits.

    Raises ValidationFailed naming `decision` or `comment`, Forbidden when the flag was
    already decided or the reviewer is the meeting's own rep.
    """
    status = DECISIONS.get((decision or "").strip().lower())
    if status is None:
        raise ValidationFailed("decision must be clear or escalate", field="decision")
    comment = (comment or "").strip()
    if not comment:
        raise ValidationFailed("a comment is required to clear or escalate a flag", field="comment")
    if flag.status != FlagStatus.open:
        raise Forbidden(f"this flag was already {flag.status.value}")
    if user.id in (flag.sales_id, flag.meeting.created_by_id):
        raise Forbidden("a flag on your own meeting is decided by someone else")
    # The audit listener records the change (status, comment, decider) as any flagged write.
    flag.status, flag.comment, flag.decided_by_id, flag.decided_at = status, comment, user.id, utcnow()
    return flag


def highlighted(flag):
    """(before, matched, after) of the flagged field's text, for the reviewer's highlight."""
    text, start = flag.excerpt or "", flag.start or 0
    end = start + len(flag.matched or "")
    return text[:start], text[start:end], text[end:]


def check_rule(rule):
    """Validate a rule before it is saved (ValidationFailed naming the field)."""
    pattern_of(rule)
    if not (rule.reason or "").strip():
        raise ValidationFailed("reason is required", field="reason")
