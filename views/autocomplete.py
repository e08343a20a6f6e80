"""Searchable related-field inputs: the scoped autocomplete endpoint and the form field using it.

FAB renders a related field as a <select> holding every related row, in the add and edit
forms and in the list page's filter form alike, so each list page loaded and rendered every
customer. `AutocompleteField` renders one text input (the chosen row's id and label);
crm/lists.js turns it into a tom-select that asks `/crm/autocomplete/<kind>` as the user
types. Both the endpoint and the field's validation go through app/choices.py, i.e. the one
scope rule: what a user cannot pick is neither offered nor accepted.
"""

from flask import g, jsonify, request, url_for
from flask_appbuilder import BaseView
from flask_appbuilder.baseviews import expose
from flask_appbuilder.fields import QuerySelectField
from flask_appbuilder.security.sqla.models import User
from flask_appbuilder.security.decorators import has_access_api
from flask_babel import lazy_gettext as _
from markupsafe import Markup, escape
from wtforms import Field
from wtforms.utils import unset_value
from wtforms.validators import ValidationError

from app import choices
from app.roles import CUSTOMER
from app.scope import ASSIGN
from app.services.errors import ValidationFailed

#: model -> the kind its endpoint is named by.
KIND_OF = {model: kind for kind, model in choices.KINDS.items()}


class AutocompleteWidget:
    """One text input carrying the chosen id, its label and the endpoint to search."""

    def __call__(self, field, **kwargs):
        """Render the input (crm/lists.js makes it a tom-select)."""
        kwargs.setdefault("id", field.id)
        css = "form-control crm-autocomplete " + kwargs.pop("class", "")
        row = field.data
        attrs = {
            "type": "text",
            "name": field.name,
            "value": field.current_id(),
            "class": css.strip(),
            "data-autocomplete": url_for("AutocompleteView.choices", kind=field.kind, purpose=field.purpose),
            "data-label": choices.label(row) if row is not None else "",
            "data-placeholder": str(_("Type to search")),
            "autocomplete": "off",
            **kwargs,
        }
        return Markup("<input %s>" % " ".join(f'{k}="{escape(v)}"' for k, v in attrs.items()))


class AutocompleteField(Field):
    """A many-to-one field whose value is a related row's id, accepted only within the scope."""

    widget = AutocompleteWidget()

    def __init__(self, label=None, validators=None, model=None, purpose=ASSIGN, allow_blank=True, **kwargs):
        for fab_only in ("query_func", "get_pk_func", "get_label", "blank_text"):
            kwargs.pop(fab_only, None)
        super().__init__(label, validators, **kwargs)
        self.model, self.kind, self.purpose, self.allow_blank = model, KIND_OF[model], purpose, allow_blank
        self._formdata = None

    def current_id(self):
        """The id the input holds: the chosen row's, or what was posted."""
        if self.data is not None:
            return str(self.data.id)
        return self._formdata or ""

    def process_formdata(self, valuelist):
        """Keep the posted id; the row is looked up (in scope) when validated."""
        raw = (valuelist[0] if valuelist else "") or ""
        self._formdata = None if raw in ("", "__None") else raw
        self.data = choices.lookup(self.model, g.user, self.purpose, self._formdata) if self._formdata else None

    def process(self, formdata, data=unset_value, extra_filters=None):
        """WTForms' process; a new record's owner field starts as the caller (a Sales user's only choice)."""
        self._formdata = None
        super().process(formdata, data, extra_filters)
        if formdata is None and self.data is None and self.model is User and self.purpose == ASSIGN and self.flags.required:
            self.data = choices.lookup(User, g.user, ASSIGN, getattr(g.user, "id", None))

    def pre_validate(self, form):
        """An id that names no row the caller may pick is refused."""
        if self._formdata and self.data is None:
            raise ValidationError(str(_("Not a valid choice")))


def use_autocomplete(form_cls, datamodel, purpose):
    """Replace FAB's related <select> fields of `form_cls` with `AutocompleteField` (customers and users)."""
    if form_cls is None:
        return
    for name in dir(form_cls):
        unbound = getattr(form_cls, name, None)
        if getattr(unbound, "field_class", None) is not QuerySelectField or not datamodel.is_relation(name):
            continue
        model = datamodel.get_related_model(name)
        if model not in KIND_OF:
            continue
        kwargs = dict(unbound.kwargs, model=model, purpose=purpose)
        kwargs.pop("widget", None)
        setattr(form_cls, name, AutocompleteField(*unbound.args, **kwargs))


class AutocompleteView(BaseView):
    """GET /crm/autocomplete/<kind>?q=&purpose=assign|filter&limit=&page= (or ?id=): choices in the caller's scope."""

    route_base = "/crm/autocomplete"
    class_permission_name = CUSTOMER
    method_permission_name = {"choices": "read"}
    default_view = None

    @expose("/<kind>")
    @has_access_api
    def choices(self, kind):
        """JSON {"data": [{"value", "text"}]}: matches of `q`, or the one row named by `id`; 400 naming a bad field."""
        try:
            model, purpose, text, limit, page = choices.parse(
                kind, request.args.get("purpose"), request.args.get("q"), request.args.get("limit"), request.args.get("page")
            )
        except ValidationFailed as exc:
            return jsonify(exc.to_dict()), exc.status
        if "id" in request.args:
            row = choices.lookup(model, g.user, purpose, request.args.get("id"))
            data = [] if row is None else [(str(row.id), choices.label(row))]
        else:
            data = choices.search(model, g.user, purpose, text, limit, page)
        return jsonify(success=True, data=[{"value": v, "text": t} for v, t in data])
