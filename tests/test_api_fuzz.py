"""Property test: whatever JSON arrives, /api answers a 2xx or a 4xx envelope, never a 500."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

FIELD_NAMES = [
    "name", "email", "phone", "size", "investmentProfile", "riskTolerance", "assignedSalesId",
    "customerId", "salesId", "title", "description", "summary", "date", "scheduledAt", "nextActionDate",
    "userId", "dueDate", "status", "priority", "productName", "productRisk", "amount", "comment", "password",
]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=True),
    st.text(max_size=30), st.sampled_from(["MEDIUM", "moderate", "2026-01-01", "1e400", "-1", "0", "\x00", "00000000-0000-0000-0000-000000000000"]),
)
values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(st.text(max_size=5), scalars, max_size=2))
bodies = st.one_of(st.dictionaries(st.sampled_from(FIELD_NAMES), values, max_size=8), values)

TARGETS = [
    ("post", "/api/customers"),
    ("post", "/api/meetings"),
    ("post", "/api/tasks"),
    ("post", "/api/approvals"),
    ("put", "/api/customers/{customer}"),
    ("put", "/api/meetings/{meeting}"),
    ("put", "/api/tasks/{task}"),
    ("put", "/api/approvals/{approval}"),
    ("post", "/api/auth/login"),
]


@pytest.mark.parametrize("method,path", TARGETS)
def test_random_bodies_never_500(client, auth, make, method, path):
    """Random JSON (right names, wrong everything else) never breaks an endpoint."""
    customer = make.customer("sales")
    ids = {
        "customer": customer.id,
        "meeting": make.meeting("sales", customer=customer).id,
        "task": make.task("sales").id,
        "approval": make.approval("sales").id,
    }
    url = path.format(**ids)
    headers = auth("admin") if "approvals/" in url else auth("sales")

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=bodies)
    def run(body):
        resp = getattr(client, method)(url, json=body, headers=headers)
        assert resp.status_code < 500, (body, resp.get_data(as_text=True)[:300])
        if resp.status_code >= 400:
            assert set(resp.json) == {"error", "message", "details"}

    run()
