def test_health(client):
    resp = client.get("/health")
    assert resp.status_code == 200 and resp.json == {"status": "ok"}


def test_sales_sees_own_customer_only(client, auth, make):
    own = make.customer("sales")
    other = make.customer("sales2")
    assert client.get(f"/api/v1/customer/{own.id}", headers=auth("sales")).status_code == 200
    assert client.get(f"/api/v1/customer/{other.id}", headers=auth("sales")).status_code == 404
