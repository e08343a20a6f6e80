"""The list screens' table: row highlights, quick actions, card layout on phones, default filters.

FAB's ListWidget renders a plain table. `CrmListWidget` adds, per row, the class the view's
`row_class(item)` gives (overdue, due soon), the quick actions its `quick_actions(pk, item)`
renders (small POST forms carrying the CSRF token), and each cell's column label as
`data-label`, from which crm/lists.css lays a row out as a card below 768 px.
"""

from urllib.parse import urlsplit

from flask import request, url_for
from flask_appbuilder.models.filters import BaseFilter
from flask_appbuilder.widgets import ListWidget
from flask_wtf.csrf import generate_csrf
from markupsafe import Markup, escape

from views.display import request_memo


class CrmListWidget(ListWidget):
    """FAB's list table with row classes, quick actions and labelled cells (crm/widgets/list.html)."""

    template = "crm/widgets/list.html"


class InFilter(BaseFilter):
    """A default filter: `column IN value` (a tuple of codes)."""

    name = "In"

    def apply(self, query, value):
        """Keep rows whose column is one of `value`."""
        return query.filter(getattr(self.model, self.column_name).in_(tuple(value)))


def wants_default():
    """True when the list was opened without filters of its own (no `_flt_` argument) and without ?all=1."""
    return request.args.get("all") != "1" and not any(k.startswith("_flt_") for k in request.args)


def _per_request(key, build):
    """`build()` once per request (the list's rows share it)."""
    return request_memo(("lists",) + key, build)


def _url_pattern(endpoint, values):
    """url_for(endpoint) with `pk` left as a placeholder, built once per request (rows differ by the id only)."""
    return _per_request(("url", endpoint), lambda: url_for(endpoint, **{**values, "pk": "__PK__"}))


def post_button(endpoint, label, icon, css="btn-default", **values):
    """A one-button POST form (CSRF token, back to this page) for a row's quick action."""
    head = _per_request(
        ("form", endpoint, str(label), icon, css),
        lambda: (
            Markup('<form method="post" action="{{action}}" class="crm-quick">'
                   '<input type="hidden" name="csrf_token" value="{csrf}">'
                   '<input type="hidden" name="next" value="{back}">'
                   '<button type="submit" class="btn btn-xs {css}"><i class="fa {icon}" aria-hidden="true"></i> {label}</button>'
                   "</form>").format(csrf=generate_csrf(), back=request.full_path, css=css, icon=icon, label=label),
            _url_pattern(endpoint, values),
        ),
    )
    template, pattern = head
    return Markup(str(template).replace("{action}", str(escape(pattern.replace("__PK__", str(values["pk"]))))))


def link_button(endpoint, label, icon, css="btn-default", **values):
    """A small link styled as a row's quick action."""
    pattern = _url_pattern(endpoint, values)
    return Markup('<a class="btn btn-xs {css}" href="{href}"><i class="fa {icon}" aria-hidden="true"></i> {label}</a>').format(
        href=pattern.replace("__PK__", str(values["pk"])), css=css, icon=icon, label=label
    )


def safe_next(default):
    """The form's `next` when it is a path on this site, else `default` (no open redirects)."""
    target = request.form.get("next") or ""
    parts = urlsplit(target)
    if target.startswith("/") and not target.startswith("//") and "\\" not in target and not parts.scheme and not parts.netloc:
        return target
    return default


def may(appbuilder, permission, resource):
    """Whether the caller holds `permission` on `resource`, asked once per request (rows ask it each)."""
    return _per_request(("may", permission, resource), lambda: appbuilder.sm.has_access(permission, resource))
