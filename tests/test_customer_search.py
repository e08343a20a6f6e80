"""Customer search (models/customer.py): one LIKE on search_text finds what three ILIKEs found."""

import uuid

import pytest
import sqlalchemy as sa
from flask_appbuilder import Model

from models.customer import SEARCH_SEPARATOR, Customer, search_clause, search_per_field
from views.api.common import like_pattern

# name, email, phone: case pairs in several scripts, wildcards, a backslash, empty fields.
ROWS = [
    ("ABC商事", "Info@ABC.example", "03-1111-2222"),
    ("abc物産", None, None),
    ("ÀÉÎ Trading", "sales@aei.example", None),
    ("ＡＢＣ全角", "zenkaku@example.jp", "０３－１２３４"),
    ("Straße GmbH", None, "+49 30 1234"),
    ("İstanbul Finans", "ist@example.tr", None),
    ("ΣΊΣΥΦΟΣ Ltd", "sisyphos@example.gr", None),
    ("テック商会", "tech@example.jp", None),
    ("ﾃｯｸ半角", None, None),
    ("100% 投資", "pct@example.jp", "03_5555"),
    ("back\\slash", None, None),
    ("foo", "bar@example.jp", None),
    ("改行\n入り", None, None),
]
TERMS = [
    "abc", "ABC", "Abc商", "àéî", "ÀÉ", "ａｂｃ", "ＡＢＣ", "straße", "STRASSE", "İst", "ist", "σίσυφ", "ΣΊΣ",
    "テック", "ﾃｯｸ", "%", "_", "0%", "3_5", "\\", "k\\s", "@EXAMPLE.JP", "03-1111", "-", "foo", "o\nb", "foo\nbar@", "\n", "行\n入",
]


def old_clause(pattern):
    """The search before search_text: each field ILIKE the pattern."""
    return sa.or_(*(column.ilike(pattern, escape="\\") for column in (Customer.name, Customer.email, Customer.phone)))


def found(conn, ids, clause, pattern):
    """The ids among `ids` that `clause(bind parameter)` selects for `pattern`."""
    stmt = sa.select(Customer.id).where(Customer.id.in_(ids), clause(sa.bindparam("p")))
    return set(conn.execute(stmt, {"p": pattern}).scalars())


def assert_same_as_three_ilikes(conn):
    """Insert ROWS, then every term finds the same customers both ways (and the corpus finds some)."""
    ids = []
    for name, email, phone in ROWS:
        ids.append(str(uuid.uuid4()))
        conn.execute(sa.insert(Customer.__table__).values(
            id=ids[-1], name=name, email=email and f"{uuid.uuid4().hex[:6]}.{email}", phone=phone,
            risk_tolerance=5, created_at=sa.func.now(), updated_at=sa.func.now(),
        ))
    hits = {}
    for term in TERMS:
        pattern = like_pattern(term)
        per_field = search_per_field(term)
        new = found(conn, ids, lambda p: search_clause(p, per_field), pattern)
        assert new == found(conn, ids, old_clause, pattern), term
        hits[term] = len(new)
    # Wildcards are literal, nothing matches across two fields (a newline inside one does),
    # ASCII case folds everywhere.
    assert [hits[t] for t in ("ABC", "%", "_", "k\\s", "@EXAMPLE.JP", "o\nb", "foo\nbar@", "行\n入", "\n")] == [2, 1, 1, 1, 4, 0, 0, 1, 1]
    return ids, hits


def test_search_equals_three_ilikes_on_postgresql(db):
    """The database's lower() on both sides is what ILIKE does, in every script ILIKE folds."""
    conn = db.session.connection()
    try:
        _ids, hits = assert_same_as_three_ilikes(conn)
        # Case folded beyond ASCII (PostgreSQL's lower() is Unicode-aware), as ILIKE does.
        assert [hits[t] for t in ("ａｂｃ", "àéî", "σίσυφ")] == [1, 1, 1]
    finally:
        db.session.rollback()


def test_search_equals_three_ilikes_on_sqlite():
    """The embedded default: search_text is a virtual column, lower() folds ASCII only, as LIKE does there."""
    engine = sa.create_engine("sqlite://")
    Model.metadata.create_all(engine, tables=[Model.metadata.tables["ab_user"], Customer.__table__])
    with engine.begin() as conn:
        _ids, hits = assert_same_as_three_ilikes(conn)
    # SQLite's lower() and LIKE fold ASCII only: so did SQLAlchemy's ilike there.
    assert [hits[t] for t in ("ａｂｃ", "àéî", "σίσυφ")] == [0, 0, 0]


def test_a_search_across_two_fields_finds_nothing(db):
    """"foo" + the separator is in search_text ("foo\\n….bar@…"), in no one field: not a match."""
    conn = db.session.connection()
    try:
        ids, _hits = assert_same_as_three_ilikes(conn)
        pattern = like_pattern("foo" + SEARCH_SEPARATOR)
        # The premise: the one LIKE alone would match across the fields.
        assert found(conn, ids, lambda p: Customer.search_text.like(p, escape="\\"), pattern)
        assert search_per_field("foo" + SEARCH_SEPARATOR)
        assert found(conn, ids, lambda p: search_clause(p, True), pattern) == set()
    finally:
        db.session.rollback()


def test_a_search_with_the_separator_answers_per_field_through_the_api(client, auth, make):
    """/api's search with a newline inside: the field holding it is found, two fields joined are not."""
    tag = uuid.uuid4().hex[:10]
    inside = make.customer("sales", name=f"改行\n{tag}")
    make.customer("sales", name=f"境界{tag}", email=f"kyokai{tag}@example.jp")

    def ids(text):
        resp = client.get("/api/customers", query_string={"search": text}, headers=auth("sales"))
        assert resp.status_code == 200, resp.get_data(as_text=True)
        return [row["id"] for row in resp.json["data"]]

    assert ids(f"行\n{tag}") == [str(inside.id)]
    assert ids(f"界{tag}\nkyokai{tag}") == []


@pytest.mark.parametrize("field", ["name", "email", "phone"])
def test_an_edited_field_is_searched_at_once(client, auth, make, field):
    """search_text follows every write of name, email and phone (the database keeps it)."""
    tag = uuid.uuid4().hex[:10]
    customer = make.customer("sales", name=f"旧名-{tag}")
    new = {"name": f"NEW名-{tag}", "email": f"new-{tag}@example.jp", "phone": f"03-{tag}"}[field]
    resp = client.patch(f"/api/customers/{customer.id}", json={field: new}, headers=auth("sales"))
    assert resp.status_code == 200, resp.get_data(as_text=True)
    rows = client.get(f"/api/customers?search={new.upper()}", headers=auth("sales")).json["data"]
    assert [row["id"] for row in rows] == [str(customer.id)]
    if field == "name":
        assert client.get(f"/api/customers?search=旧名-{tag}", headers=auth("sales")).json["data"] == []


def test_search_text_is_in_no_answer_audit_row_or_event(client, auth, db):
    """Derived data: left out of the API's rows, the audit snapshot and the event payload."""
    from models.audit import AuditLog
    from models.outbox import OutboxEvent

    tag = uuid.uuid4().hex[:10]
    resp = client.post("/api/customers", json={"name": f"派生-{tag}"}, headers=auth("sales"))
    assert resp.status_code == 201, resp.get_data(as_text=True)
    cid = resp.json["data"]["id"] if "data" in resp.json else resp.json["id"]
    listed = client.get(f"/api/customers?search={tag}", headers=auth("sales")).json["data"]
    assert len(listed) == 1 and "searchText" not in listed[0] and "name" in listed[0]
    assert "searchText" not in client.get(f"/api/customers/{cid}", headers=auth("sales")).get_data(as_text=True)
    audit = db.session.execute(sa.select(AuditLog).where(AuditLog.resource_id == cid)).scalars().all()
    events = db.session.execute(sa.select(OutboxEvent).where(OutboxEvent.aggregate_id == cid)).scalars().all()
    assert audit and events
    for text in [str(a.changes) for a in audit] + [str(e.envelope) for e in events]:
        assert "search_text" not in text and "searchText" not in text and tag in text
