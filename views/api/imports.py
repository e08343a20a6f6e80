"""/api/imports: upload a CSV or Excel file of customers, meetings or tasks, preview it, run it as a job, undo it.

Every rule is app/services/imports.py's, shared with the import screen (views/imports.py).
"""

import json

from flask import Blueprint, Response, current_app, jsonify, request, stream_with_context

from app.exports import csv_stream
from app.roles import ADD, IMPORT, READ
from app.services import imports as service
from app.services.errors import ValidationFailed
from views.api.common import current_user, json_body, query_int, requires

bp = Blueprint("crm_api_imports", __name__, url_prefix="/imports")

#: What a multipart body may carry besides the file itself (form fields, boundaries).
MULTIPART_SLACK = 1024 * 1024


@bp.before_request
def upload_limit():
    """An upload may be as large as IMPORT_MAX_MB: more than the JSON bodies of the rest of /api."""
    request.max_content_length = current_app.config["IMPORT_MAX_MB"] * service.MB + MULTIPART_SLACK


def answer(imp, status=200, **extra):
    """One import as `{"success": true, "data": {...}, "id": ...}`."""
    return jsonify(success=True, data={**service.status(imp), **extra}, id=imp.id), status


def _load(import_id):
    return service.get_import(import_id, current_user())


@bp.get("")
@requires(READ, IMPORT)
def list_imports():
    """The caller's newest imports (an Admin's: everyone's)."""
    limit = query_int("limit", 20, minimum=1, maximum=100)
    return jsonify(success=True, data=[service.status(i) for i in service.imports_of(current_user(), limit)])


@bp.post("")
@requires(ADD, IMPORT)
def create_import():
    """Upload `file` (multipart) with `kind` and optional `dedupe` and `mapping` (JSON {field: column}); 201 with the suggestions."""
    limit = current_app.config["IMPORT_MAX_MB"] * service.MB
    if request.content_length and request.content_length > limit + MULTIPART_SLACK:
        # Refused before the body is read: nothing of it is parsed or stored.
        raise service.TooLarge(f"the file is larger than IMPORT_MAX_MB ({limit // service.MB} MB)", field="file")
    upload = request.files.get("file")
    if upload is None:
        raise ValidationFailed("file is required (multipart/form-data)", field="file")
    mapping = request.form.get("mapping")
    if mapping not in (None, ""):
        try:
            mapping = json.loads(mapping)
        except ValueError:
            raise ValidationFailed("mapping must be a JSON object of field: column", field="mapping") from None
    else:
        mapping = None
    imp = service.create_import(current_user(), request.form.get("kind"), upload.filename, upload.read(),
                                dedupe=request.form.get("dedupe"), mapping=mapping, require_mapping=True)
    return answer(imp, 201, suggestions=service.suggest_mapping(imp.kind, imp.headers))


@bp.get("/<import_id>")
@requires(READ, IMPORT)
def get_import(import_id):
    """One import: status, `done`/`total` rows and the counts so far."""
    return answer(_load(import_id))


@bp.put("/<import_id>/mapping")
@requires(ADD, IMPORT)
def put_mapping(import_id):
    """Change the mapping (`{"mapping": {field: column}, "dedupe": ...}`) of an import not started yet."""
    body = json_body()
    imp = service.set_mapping(_load(import_id), current_user(), body.get("mapping"), body.get("dedupe"))
    return answer(imp)


@bp.get("/<import_id>/preview")
@requires(READ, IMPORT)
def get_preview(import_id):
    """The first rows (`?limit=`, at most IMPORT_PREVIEW_ROWS) as the job would write them, errors named by column."""
    cap = current_app.config["IMPORT_PREVIEW_ROWS"]
    limit = query_int("limit", cap, minimum=1, maximum=cap)
    return jsonify(success=True, data=service.preview(_load(import_id), current_user(), limit))


@bp.post("/<import_id>/start")
@requires(ADD, IMPORT)
def start(import_id):
    """Queue the import's job (202); an import whose job was killed is queued again and resumes."""
    return answer(service.start(_load(import_id), current_user()), 202)


@bp.post("/<import_id>/cancel")
@requires(ADD, IMPORT)
def cancel(import_id):
    """Stop the import after its current batch (at once when not running yet)."""
    return answer(service.cancel(_load(import_id), current_user()))


@bp.post("/<import_id>/undo")
@requires(ADD, IMPORT)
def undo(import_id):
    """Soft-delete what the import created and restore what it updated."""
    return answer(service.undo(_load(import_id), current_user()))


@bp.get("/<import_id>/report.csv")
@requires(READ, IMPORT)
def report(import_id):
    """Every row's outcome as CSV (row, outcome, column, reason, recordId), with a BOM for Excel."""
    imp = _load(import_id)
    body = csv_stream(service.REPORT_HEADER, service.report_rows(imp))
    headers = {"Content-Disposition": f'attachment; filename="import-{imp.id}.csv"'}
    return Response(stream_with_context(body), mimetype="text/csv; charset=utf-8", headers=headers)
