"""FAB's generated /api/v1 list reads take the /api read path: app/fastpath.py answers their hits, per caller."""

from app import caching
from tests.test_api_caching import Dispatches, Statements, issue

# Newest first: the session-wide test database holds many other customers in scope.
V1_LIST = "/api/v1/customer/?q=(order_column:created_at,order_direction:desc,page:0,page_size:100)"


def names(resp):
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    return {row["name"] for row in resp.json["result"]}


def warm(client, headers):
    """Requests until the v1 list was answered from the cache once; that answer."""
    hits = caching.stats()["hits"]
    for _ in range(4):
        resp = client.get(V1_LIST, headers=headers)
        assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
        if caching.stats()["hits"] > hits:
            return resp
    raise AssertionError("the /api/v1 list never became a cache hit")


def test_v1_list_hits_are_answered_before_flask_without_sql(app, client, users, make, redis_cache):
    mine = make.customer("sales")
    headers = issue(app, users["sales"].id)
    first = warm(client, headers)
    assert mine.name in names(first)
    hits = caching.stats()["hits"]
    with Dispatches(app) as dispatched, Statements() as seen:
        again = client.get(V1_LIST, headers=headers)
    assert dispatched == [] and seen == [] and caching.stats()["hits"] == hits + 1
    assert again.get_data() == first.get_data() and again.headers["ETag"] == first.headers["ETag"]
    # An Origin takes Flask's path (CORS hooks) and is still served from the cache.
    with Dispatches(app) as dispatched:
        cross = client.get(V1_LIST, headers={**headers, "Origin": "https://elsewhere.example"})
    assert cross.status_code == 200 and dispatched == ["/api/v1/customer/"] and caching.stats()["hits"] == hits + 2


def test_v1_cached_lists_stay_each_callers_own(app, client, users, make, redis_cache):
    own, other = make.customer("sales"), make.customer("sales2")
    sales, sales2 = issue(app, users["sales"].id), issue(app, users["sales2"].id)
    hits = caching.stats()["hits"]
    for _ in range(3):  # round 1 stores, rounds 2 and 3 are hits
        mine, theirs = names(client.get(V1_LIST, headers=sales)), names(client.get(V1_LIST, headers=sales2))
        assert own.name in mine and other.name not in mine
        assert other.name in theirs and own.name not in theirs
    assert caching.stats()["hits"] >= hits + 4


def test_v1_cached_list_refuses_a_revoked_token_and_a_lost_permission(app, client, users, make, redis_cache):
    from app.roles import CUSTOMER

    make.customer("sales")
    headers = issue(app, users["sales"].id)
    warm(client, headers)
    assert client.post("/api/auth/logout", headers=headers).status_code == 200
    assert client.get(V1_LIST, headers=headers).status_code == 401
    sm = app.appbuilder.sm
    compliance = issue(app, users["compliance"].id)
    warm(client, compliance)
    sm.del_permission_role(sm.find_role("Compliance"), sm.find_permission_view_menu("can_read", CUSTOMER))
    try:
        assert client.get(V1_LIST, headers=compliance).status_code == 403
    finally:
        sm.add_permission_role(sm.find_role("Compliance"), sm.find_permission_view_menu("can_read", CUSTOMER))
