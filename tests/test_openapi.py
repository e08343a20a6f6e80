"""FAB's generated API is documented: OpenAPI at /api/v1/_openapi, Swagger UI on."""


def test_openapi_lists_crm_resources_with_string_ids(client, auth):
    resp = client.get("/api/v1/_openapi", headers=auth("sales"))
    assert resp.status_code == 200
    paths = resp.json["paths"]
    for resource in ("customer", "meeting", "task", "approval"):
        assert f"/api/v1/{resource}/" in paths
        item = paths[f"/api/v1/{resource}/{{pk}}"]
        assert {"get", "put", "delete"} <= set(item)
        (param,) = [p for p in item["get"]["parameters"] if p["name"] == "pk"]
        assert param["schema"]["type"] == "string"


def test_swagger_ui_is_served(browser_login):
    resp = browser_login("sales").get("/swagger/v1")
    assert resp.status_code == 200 and "swagger" in resp.get_data(as_text=True).lower()
