"""What every list screen adds above its table: saved views (a dropdown and a save form) and exports.

`ListTools` is mixed into views.base.ScopedModelView. Its export answers the list the
screen shows — the same filters (FAB's `_flt_` arguments), the same sort (`_oc_`/`_od_`,
else the view's default) and the same scope (the view's base filters, app/scope.py) —
as CSV with a BOM or as Excel, every cell through app/exports.py. Exports are bounded
(`LIST_EXPORT_MAX_ROWS`): a longer list is refused with a 400 asking for narrower filters;
/api/reports/export streams whole tables.
"""

from datetime import datetime

from flask import Response, abort, current_app, g, jsonify, request, url_for
from flask_appbuilder import Model
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access, permission_name
from flask_appbuilder.urltools import get_filter_args, get_order_args
from flask_babel import lazy_gettext as _

from app.exports import csv_stream, xlsx_bytes
from app.i18n import display_zone
from app.services import saved_views
from models.base import utcnow

FORMATS = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def list_screens(appbuilder):
    """{view class name: view} of every registered list screen that offers saved views and exports."""
    return {type(view).__name__: view for view in appbuilder.baseviews if isinstance(view, ListTools)}


def screen_arguments():
    """The current request's list arguments (filters, sort, page size) as a query string, without the page."""
    return saved_views.list_arguments(request.query_string.decode("utf-8", "replace"))


class ListTools:
    """Saved views and CSV / Excel export of the current list, for a FAB ModelView."""

    list_template = "crm/list.html"

    def render_template(self, template, **kwargs):
        """FAB's render, giving the list page what its tools show (this user's saved views, the export links)."""
        if template == self.list_template and getattr(g, "user", None) is not None:
            name = type(self).__name__
            args = screen_arguments()
            suffix = f"?{args}" if args else ""
            kwargs["list_tools"] = {
                "screen": name,
                "query": args,
                "views": [
                    {"id": v.id, "name": v.name, "url": list_url(name, v.query)}
                    for v in saved_views.mine(g.user, name)
                ],
                "csv": url_for(f"{name}.export", fmt="csv") + suffix,
                "xlsx": url_for(f"{name}.export", fmt="xlsx") + suffix,
            }
        return super().render_template(template, **kwargs)

    def screen_query(self):
        """(joined filters, order column, order direction) of the list this request shows, as FAB's list builds them.

        FAB's filters from the request (`_flt_`) joined to the view's base filters (the scope
        rule), the sort asked (`_oc_`/`_od_`) or the view's `base_order`. A view whose list
        opens on default filters adds them (views.base.ScopedModelView.screen_query).
        """
        filters = self.datamodel.get_filters(self.search_columns)
        get_filter_args(filters)
        order_column, order_direction = get_order_args().get(type(self).__name__, ("", ""))
        if not order_column and self.base_order:
            order_column, order_direction = self.base_order
        return filters.get_joined_filters(self._base_filters), order_column, order_direction

    def export_rows(self, limit):
        """The header and at most `limit` + 1 rows (list_columns, typed, times in DISPLAY_TIMEZONE) of the current list."""
        dm = self.datamodel
        filters, order_column, order_direction = self.screen_query()
        query = dm.apply_all(dm.session.query(dm.obj), filters, order_column, order_direction, page=0, page_size=limit + 1)
        tz = display_zone()
        header = [str(self.label_columns.get(col, col)) for col in self.list_columns]
        rows = []
        for item in query.all():
            row = []
            for value in dm.get_values_item(item, self.list_columns):
                if isinstance(value, Model):
                    value = str(value)  # a related row: its name, as the list shows it
                elif isinstance(value, datetime) and value.tzinfo is not None:
                    value = value.astimezone(tz)
                row.append(value)
            rows.append(row)
        return header, rows

    @expose("/export/<fmt>")
    @has_access
    @permission_name("read")
    def export(self, fmt):
        """The current list (same filters, sort and scope as on screen) as CSV with a BOM (`csv`) or Excel (`xlsx`)."""
        if fmt not in FORMATS:
            abort(404)
        limit = current_app.config["LIST_EXPORT_MAX_ROWS"]
        header, rows = self.export_rows(limit)
        if len(rows) > limit:
            message = str(_("The list has more than %(n)d rows: narrow the filters to export it.", n=limit))
            return jsonify(error="Bad Request", message=message, details={"limit": [message]}), 400
        name = type(self).__name__.removesuffix("View").lower()
        filename = f"{name}-{utcnow().strftime('%Y%m%d-%H%M%S')}.{fmt}"
        if fmt == "csv":
            body = csv_stream(header, rows)
        else:
            body = xlsx_bytes(header, rows, title=name)
        return Response(
            body,
            content_type=FORMATS[fmt],
            headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
        )


def list_url(screen, query):
    """The list screen `screen` opened with the saved `query`."""
    return url_for(f"{screen}.list") + (f"?{query}" if query else "")
