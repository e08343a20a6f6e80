"""Base classes for every screen and generated API: one scope rule, one permission map.

Every ModelView and ModelRestApi of the CRM derives from these, so the row-level scope,
the shared permissions, the service hooks and the error answers are written once.
"""

import json
import logging
from decimal import Decimal
from functools import wraps

import jsonschema
import prison
from flask import g, request, url_for
from flask_appbuilder import ModelRestApi, ModelView
from flask_appbuilder.api import rison
from flask_appbuilder.api.schemas import get_item_schema, get_list_schema
from flask_appbuilder.api import merge_response_func
from flask_appbuilder.baseviews import expose
from flask_appbuilder.urltools import get_order_args
from flask_appbuilder.const import (
    API_DESCRIPTION_COLUMNS_RIS_KEY,
    API_LABEL_COLUMNS_RIS_KEY,
    API_LIST_COLUMNS_RIS_KEY,
    API_LIST_TITLE_RIS_KEY,
    API_ORDER_COLUMNS_RIS_KEY,
    API_SHOW_COLUMNS_RIS_KEY,
    API_SHOW_TITLE_RIS_KEY,
    API_URI_RIS_KEY,
)
from flask_appbuilder.security.decorators import permission_name, protect
from flask_appbuilder.api import safe
from flask_babel import lazy_gettext as _
from marshmallow import ValidationError
from marshmallow import fields as ma_fields
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import BadRequest

from app import caching
from app.extensions import db
from app.roles import API_METHOD_PERMISSIONS, VIEW_METHOD_PERMISSIONS
from app.scope import ASSIGN, FILTER, SCOPE_FILTERS, choice_filters
from app.services import errors
from app.services.errors import DomainError
from views.autocomplete import use_autocomplete
from views.display import local_time
from views.list_tools import ListTools
from views.lists import CrmListWidget, wants_default
from views.relations import CrmSchemaConverter

log = logging.getLogger(__name__)


def time_formatters(*columns):
    """Return `formatters_columns` showing `columns` in the display time zone."""
    return {col: local_time for col in columns}


def optional_enum_field(enum_cls, label, labels=None):
    """A select for a nullable enum column, with a blank choice (FAB's EnumField has none); `labels`: {member: text}."""
    from flask_appbuilder.fieldwidgets import Select2Widget
    from wtforms import SelectField

    return SelectField(
        label,
        choices=[("", "—")] + [(m.value, (labels or {}).get(m, m.value)) for m in enum_cls],
        coerce=lambda v: enum_cls(v.value if hasattr(v, "value") else v) if v else None,
        widget=Select2Widget(),
        validate_choice=False,
    )


def fast_rison(schema):
    """Like FAB's @rison(schema), with the schema checked once instead of on every request."""
    validator = jsonschema.validators.validator_for(schema)(schema)

    def decorator(fn):
        @wraps(fn)
        def wrapper(self, *args, **kwargs):
            raw = request.args.get(API_URI_RIS_KEY)
            kwargs["rison"] = {}
            if raw:
                try:
                    kwargs["rison"] = prison.loads(raw)
                except prison.decoder.ParserException:
                    try:
                        kwargs["rison"] = json.loads(raw)  # FAB_API_ALLOW_JSON_QS behaviour
                    except ValueError:
                        return self.response_400(message="Not a valid rison/json argument")
            error = next(iter(validator.iter_errors(kwargs["rison"])), None)
            if error is not None:
                return self.response_400(message=error.message)
            return fn(self, *args, **kwargs)

        return wrapper

    return decorator


# page * page_size must fit PostgreSQL's bigint OFFSET (page_size is at most FAB_API_MAX_PAGE_SIZE).
MAX_PAGE = 10**12


def no_nul(value):
    """Refuse a NUL character: PostgreSQL text cannot hold one (the insert failed with a 500)."""
    if isinstance(value, str) and "\x00" in value:
        raise ValidationError("must not contain a NUL character")


class ServiceHooks:
    """Call the domain service before a row is added or updated, from any entry point."""

    #: prepare(item, user, creating) from app.services; raises DomainError.
    prepare = None
    #: refuse_delete(item, user) from app.services, for rows that are never deleted.
    refuse_delete = None

    def pre_delete(self, item):
        """Apply the domain rules before delete."""
        if self.refuse_delete:
            type(self).refuse_delete(item, g.user)

    def pre_add(self, item):
        """Apply the domain rules before insert."""
        if self.prepare:
            type(self).prepare(item, g.user, True)

    def pre_update(self, item):
        """Apply the domain rules before update."""
        if self.prepare:
            type(self).prepare(item, g.user, False)


def relation_choice_filters(datamodel, columns, purpose, declared=None):
    """FAB's `*_query_rel_fields` for every relation among `columns`, through app/scope.py's choice rule.

    A filter a view declares for a relation is added to the rule, never put in its place.
    """
    declared = declared or {}
    out = {col: choice_filters(purpose) + list(declared.get(col, [])) for col in columns if datamodel.is_relation(col)}
    return {**declared, **out}


class ScopedModelView(ListTools, ServiceHooks, ModelView):
    """A screen limited to the caller's scope, with the shared permission names.

    Every related-field input of its add, edit and search forms (the list page's filter
    widgets too) offers only what the caller may pick (app/scope.py's `choice_clause`),
    searched as the user types (views/autocomplete.py) instead of a select of every row.
    The list table (views/lists.py) loads its related rows with the page, highlights rows
    (`row_class`), offers `quick_actions`, and opens on `default_filters` (with
    `default_order`) until the user filters or asks for all. Its list page offers saved
    views and CSV / Excel exports of the list as shown (views/list_tools.py).
    """

    base_filters = SCOPE_FILTERS
    method_permission_name = VIEW_METHOD_PERMISSIONS
    page_size = 25
    list_widget = CrmListWidget
    #: row_class(item) -> CSS classes of a list row (item: {column: value} of list_columns).
    row_class = None
    #: quick_actions(pk, item) -> Markup of a row's buttons.
    quick_actions = None
    #: FAB base-filter triples applied while the list has no filters of its own, and their name.
    default_filters = ()
    default_note = None
    default_order = None

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # The page's related rows in its own statement, not one query per row and column.
        self.datamodel.list_load = tuple(c for c in self.list_columns if self.datamodel.is_relation_many_to_one(c))

    def _init_forms(self):
        dm = self.datamodel
        self.add_form_query_rel_fields = relation_choice_filters(dm, self.add_columns, ASSIGN, self.add_form_query_rel_fields)
        self.edit_form_query_rel_fields = relation_choice_filters(dm, self.edit_columns, ASSIGN, self.edit_form_query_rel_fields)
        self.search_form_query_rel_fields = relation_choice_filters(
            dm, self.search_columns, FILTER, self.search_form_query_rel_fields
        )
        super()._init_forms()
        use_autocomplete(self.add_form, dm, ASSIGN)
        use_autocomplete(self.edit_form, dm, ASSIGN)
        use_autocomplete(self.search_form, dm, FILTER)

    def _get_list_widget(self, filters, **kwargs):
        """FAB's list widget with the CRM's row classes, quick actions and default filters."""
        kwargs.update(
            row_class=self.row_class,
            quick_actions=self.quick_actions,
            default_note=None,
            all_url=None,
            # Labels translated once per page, not once per cell.
            cell_labels={c: str(self.label_columns.get(c, c)) for c in self.list_columns},
            show_title=str(_("Show record")),
            edit_title=str(_("Edit record")),
        )
        if self.default_filters and wants_default():
            filters = filters.get_joined_filters(self.datamodel.get_filters().add_filter_list(list(self.default_filters)))
            if self.default_order and not kwargs.get("order_column"):
                kwargs["order_column"], kwargs["order_direction"] = self.default_order
            kwargs.update(default_note=self.default_note, all_url=url_for(f"{type(self).__name__}.list", all=1))
        return super()._get_list_widget(filters=filters, **kwargs)

    def screen_query(self):
        """The list as shown (views/list_tools.py's exports too): with the default filters and order while they apply."""
        filters, order_column, order_direction = super().screen_query()
        if self.default_filters and wants_default():
            filters = filters.get_joined_filters(self.datamodel.get_filters().add_filter_list(list(self.default_filters)))
            if self.default_order and not get_order_args().get(type(self).__name__):
                order_column, order_direction = self.default_order
        return filters, order_column, order_direction


class ScopedModelApi(ServiceHooks, ModelRestApi):
    """A generated REST API limited to the caller's scope, answering 4xx for bad input."""

    base_filters = SCOPE_FILTERS
    method_permission_name = API_METHOD_PERMISSIONS
    allow_browser_login = False
    page_size = 20
    model2schemaconverter = CrmSchemaConverter
    #: Columns the service fills when absent (e.g. the owner defaults to the caller).
    optional_add_columns = ()

    def _init_properties(self):
        super()._init_properties()
        # The related values `_info` lists for add and edit go through the same choice rule as the screens.
        dm = self.datamodel
        self.add_query_rel_fields = relation_choice_filters(dm, self.add_columns, ASSIGN, self.add_query_rel_fields)
        self.edit_query_rel_fields = relation_choice_filters(dm, self.edit_columns, ASSIGN, self.edit_query_rel_fields)
        # `_info` pages the related values: without an order, LIMIT/OFFSET pages may repeat or skip rows.
        relations = [c for c in {*self.add_columns, *self.edit_columns} if dm.is_relation(c)]
        self.order_rel_fields = {**{c: ("id", "asc") for c in relations}, **(self.order_rel_fields or {})}

    def _get_field_info(self, field, filter_rel_field, page=None, page_size=None):
        """FAB's field details for `_info`, without translating an absent label or description.

        FAB passes "" to gettext when a column has no description, and gettext answers ""
        with the catalogue's header (Project-Id-Version, ...).
        """
        info = super()._get_field_info(field, filter_rel_field, page=page, page_size=page_size)
        for key, texts in (("label", self.label_columns), ("description", self.description_columns)):
            info[key] = str(texts[field.name]) if texts.get(field.name) else ""
        return info

    def _description_columns_json(self, cols=None):
        """FAB's description map, leaving out columns whose description is empty (see _get_field_info)."""
        return {key: str(value) for key, value in self.description_columns.items() if key in (cols or []) and value}

    def _init_model_schemas(self):
        super()._init_model_schemas()
        # FAB builds enum fields without allow_none, so a nullable enum could never be
        # cleared or round-tripped; follow the column's nullability instead.
        for schema in (self.add_model_schema, self.edit_model_schema):
            for name, field in schema.fields.items():
                if self.datamodel.is_enum(name) and self.datamodel.is_nullable(name):
                    field.allow_none = True
            for field in schema.fields.values():
                if isinstance(field, ma_fields.String):
                    field.validators.append(no_nul)
                # Keep every decimal place sent: the service refuses sub-yen-cent amounts
                # instead of marshmallow silently rounding them.
                if isinstance(field, ma_fields.Decimal):
                    field.places = None
        for name in self.optional_add_columns:
            field = self.add_model_schema.fields.get(name)
            if field is not None:
                field.required = False

    def _sanitize_page_args(self, page, page_size):
        """FAB's page arguments, refusing a page the database cannot take as OFFSET (FAB answered 500)."""
        if page is not None and not 0 <= page <= MAX_PAGE:
            raise BadRequest(description=f"page must be between 0 and {MAX_PAGE}")
        return super()._sanitize_page_args(page, page_size)

    def add_apispec_components(self, api_spec):
        """FAB's schema components, with numeric bounds written as numbers.

        apispec renders a Range on a Decimal field through the field itself, so `amount`'s
        bound was a Decimal, sent as the string "0": an invalid OpenAPI document.
        """
        super().add_apispec_components(api_spec)
        for name in (self.list_model_schema_name, self.add_model_schema_name, self.edit_model_schema_name, self.show_model_schema_name):
            for prop in (api_spec.components.schemas.get(name) or {}).get("properties", {}).values():
                for key in ("minimum", "maximum"):
                    if isinstance(prop.get(key), (str, Decimal)):
                        number = Decimal(prop[key])
                        prop[key] = int(number) if number == number.to_integral_value() else float(number)

    def response_422(self, message=None, **kwargs):
        """Invalid input is a 400 naming the field (FAB says 422)."""
        return self.response(400, message=message)

    def _guarded(self, fn, *args):
        try:
            return fn(*args)
        except DomainError as exc:
            db.session.rollback()
            return self.response(exc.status, message={exc.field: [exc.message]} if exc.field else exc.message)
        except SQLAlchemyError as exc:
            db.session.rollback()
            refused = errors.from_database(exc)
            if refused is None:
                log.exception("database error under /api/v1")
                return self.response(500, message="internal error")
            return self.response(refused.status, message=refused.message)

    #: Tables whose writes change this API's list answers; default: the model's table and
    #: those of its many-to-one relations (app.caching.model_resources).
    cache_resources = None

    # The list route: its hits are answered by app/fastpath.py, as the /api reads are (under
    # the same key: caller scope, normalised query, locale; views/api/__init__.py's
    # `share_read_path`); FAB's authentication and permission check, then the answer stored,
    # on a miss. Parsing and validating `q` happens only then (FAB re-checks the JSON schema
    # itself on every call, compiling it anew).
    @expose("/", methods=["GET"])
    @protect()
    @safe
    @permission_name("get")
    def get_list(self, **kwargs):
        return caching.store_answer(self.list_cache_spec(), self._computed_list)

    def list_cache_spec(self):
        """The answer cache's spec of this API's list (app/caching.py's `endpoint_spec`), made once."""
        spec = self.__dict__.get("_list_cache_spec")
        if spec is None:
            resources = self.cache_resources or caching.model_resources(self.datamodel.obj)
            spec = self.__dict__["_list_cache_spec"] = caching.endpoint_spec(resources, budget=False)
        return spec

    get_list.__doc__ = ModelRestApi.get_list.__doc__

    @fast_rison(get_list_schema)
    @merge_response_func(ModelRestApi.merge_order_columns, API_ORDER_COLUMNS_RIS_KEY)
    @merge_response_func(ModelRestApi.merge_list_label_columns, API_LABEL_COLUMNS_RIS_KEY)
    @merge_response_func(ModelRestApi.merge_description_columns, API_DESCRIPTION_COLUMNS_RIS_KEY)
    @merge_response_func(ModelRestApi.merge_list_columns, API_LIST_COLUMNS_RIS_KEY)
    @merge_response_func(ModelRestApi.merge_list_title, API_LIST_TITLE_RIS_KEY)
    def _computed_list(self, **kwargs):
        """The generated list answer (FAB's get_list body)."""
        return self.get_list_headless(**kwargs)

    def post_headless(self):
        """POST with domain errors turned into 4xx answers."""
        return self._guarded(super().post_headless)

    def put_headless(self, pk):
        """PUT with domain errors turned into 4xx answers."""
        return self._guarded(super().put_headless, pk)

    def delete_headless(self, pk):
        """DELETE with domain errors turned into 4xx answers."""
        return self._guarded(super().delete_headless, pk)

    # FAB routes the generated GET as /<int:pk>; our keys are UUID strings.
    @expose("/<pk>", methods=["GET"])
    @protect()
    @safe
    @permission_name("get")
    @rison(get_item_schema)
    @merge_response_func(ModelRestApi.merge_show_label_columns, API_LABEL_COLUMNS_RIS_KEY)
    @merge_response_func(ModelRestApi.merge_show_columns, API_SHOW_COLUMNS_RIS_KEY)
    @merge_response_func(ModelRestApi.merge_description_columns, API_DESCRIPTION_COLUMNS_RIS_KEY)
    @merge_response_func(ModelRestApi.merge_show_title, API_SHOW_TITLE_RIS_KEY)
    def get(self, pk, **kwargs):
        """Get one item by its string id
        ---
        get:
          parameters:
          - in: path
            schema:
              type: string
            name: pk
          responses:
            200:
              description: Item from Model
              content:
                application/json:
                  schema:
                    type: object
                    properties:
                      id:
                        type: string
                      result:
                        $ref: '#/components/schemas/{{self.__class__.__name__}}.get'
            400:
              $ref: '#/components/responses/400'
            401:
              $ref: '#/components/responses/401'
            404:
              $ref: '#/components/responses/404'
        """
        return self.get_headless(pk, **kwargs)
