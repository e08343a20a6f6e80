"""/api/openapi.json: an OpenAPI 3 description of the /api blueprint (apispec)."""

import re

from apispec import APISpec
from flask import Blueprint, current_app, jsonify

bp = Blueprint("crm_api_openapi", __name__)

ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "message": {"type": "string"}, "details": {"type": "object"}},
}
PUBLIC = {"crm_api.crm_api_auth.login", "crm_api.crm_api_auth.register", "crm_api.crm_api_auth.refresh",
          "crm_api.crm_api_openapi.spec"}


def build_spec(app):
    """Describe every /api route from the URL map and the views' docstrings."""
    spec = APISpec(title=f"{app.config['APP_NAME']} /api", version="1.0.0", openapi_version="3.0.3")
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    spec.components.schema("Error", ERROR_SCHEMA)
    paths = {}
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("crm_api."):
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        doc = (app.view_functions[rule.endpoint].__doc__ or "").strip().splitlines()
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            operation = {
                "summary": doc[0] if doc else rule.endpoint,
                "operationId": f"{rule.endpoint.split('.')[-1]}_{method.lower()}",
                "tags": [rule.rule.split("/")[2] if rule.rule.count("/") >= 2 else "api"],
                "parameters": [
                    {"in": "path", "name": name, "required": True, "schema": {"type": "string"}}
                    for name in rule.arguments
                ],
                "responses": {
                    "200": {"description": "success envelope"},
                    "4XX": {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                },
            }
            if rule.endpoint not in PUBLIC:
                operation["security"] = [{"bearer": []}]
            paths.setdefault(path, {})[method.lower()] = operation
    for path, operations in sorted(paths.items()):
        spec.path(path=path, operations=operations)
    return spec.to_dict()


@bp.get("/openapi.json")
def spec():
    """The OpenAPI document of /api."""
    return jsonify(build_spec(current_app))
