"""The import job (RQ, by name: `workers.imports.run_import_job`): app/services/imports.py's `run` in the worker's app."""

from workers.runtime import with_app


@with_app
def run_import_job(import_id):
    """Write the rows of import `import_id` not written yet; return its final status."""
    from app.services import imports

    result = imports.run(import_id)
    return getattr(result, "value", result)
