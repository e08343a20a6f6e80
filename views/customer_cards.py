"""The customer card's edit screen: GET shows the form prefilled with the current version, POST adds a version.

The rules are app/services/cards.py's (`save_version`): scope (a Sales user only their own
customers), who may write, the items' checks, a reason for every change. The form posts
with its CSRF token; a refusal shows the form again with a 400 naming the field.
"""

from flask import abort, flash, g, make_response, redirect, request, url_for
from flask_appbuilder import BaseView
from flask_appbuilder.baseviews import expose
from flask_appbuilder.security.decorators import has_access
from flask_babel import lazy_gettext as _

from app.extensions import db
from app.roles import CUSTOMER
from app.services import cards
from app.services.errors import DomainError, NotFound
from models.customer_card import AssetsBand, IncomeBand, InvestmentHorizon
from models.product import InvestmentPurpose, ProductType

ITEM_LABELS = {
    "dateOfBirth": _("Date of birth"),
    "occupation": _("Occupation"),
    "investmentPurpose": _("Investment purpose"),
    "investmentHorizon": _("Investment horizon"),
    "incomeBand": _("Yearly income (JPY)"),
    "financialAssetsBand": _("Financial assets (JPY)"),
    "sourceOfFunds": _("Source of funds"),
    "experience": _("Knowledge and experience"),
    "riskTolerance": _("Risk tolerance (1-10)"),
    "reviewedAt": _("Reviewed"),
}
CHOICES = {
    "investmentPurpose": [m.value for m in InvestmentPurpose],
    "investmentHorizon": [m.value for m in InvestmentHorizon],
    "incomeBand": [m.value for m in IncomeBand],
    "financialAssetsBand": [m.value for m in AssetsBand],
}
PRODUCT_TYPES = [t.value for t in ProductType]


def card_context(customer):
    """What the customer page and the edit screen show of the card: current, state, history, labels."""
    history = cards.history(customer.id)
    card = history[0] if history else None
    return {
        "card": cards.as_dict(card),
        "card_state": cards.state_of(card).as_dict(),
        "card_history": [cards.as_dict(c) for c in history],
        "card_labels": {k: str(v) for k, v in ITEM_LABELS.items()},
    }


def form_body(form):
    """The posted form as the API-spelled body `save_version` takes."""
    body = {name: form.get(name, "") for name in cards.ITEMS if name != "experience"}
    experience = {}
    for kind in PRODUCT_TYPES:
        years = (form.get(f"exp_{kind}_years") or "").strip()
        frequency = (form.get(f"exp_{kind}_frequency") or "none").strip()
        if years or frequency != "none":
            if years and not years.isdigit():
                body["experience"] = {kind: {"years": years}}  # refused by the service, naming experience
                break
            experience[kind] = {"years": int(years or 0), "frequency": frequency}
    else:
        body["experience"] = experience
    body["changeReason"] = form.get("changeReason", "")
    body["reviewed"] = form.get("reviewed") == "on"
    return body


class CustomerCardView(BaseView):
    """/customercard/<customer id>/edit: the card's edit form (permission: edit on Customer)."""

    route_base = "/customercard"
    class_permission_name = CUSTOMER
    method_permission_name = {"edit": "edit", "save": "edit"}
    default_view = None

    def _render(self, customer, form, status=200):
        html = self.render_template(
            "crm/customer_card_edit.html",
            title=str(_("Customer card")),
            customer=customer,
            form=form,
            choices=CHOICES,
            product_types=PRODUCT_TYPES,
            frequencies=cards.FREQUENCIES,
            **card_context(customer),
        )
        return make_response(html, status)

    def _customer(self, pk):
        try:
            return cards.customer_for(pk, g.user)
        except NotFound:
            abort(404)

    @expose("/<pk>/edit", methods=["GET"])
    @has_access
    def edit(self, pk):
        """The form, prefilled with the current version."""
        customer = self._customer(pk)
        current = cards.as_dict(cards.current(customer.id)) or {}
        form = {k: (v if v is not None else "") for k, v in current.items() if k in cards.ITEMS and k != "experience"}
        for kind, entry in (current.get("experience") or {}).items():
            form[f"exp_{kind}_years"] = entry.get("years", 0)
            form[f"exp_{kind}_frequency"] = entry.get("frequency", "none")
        form["reviewed"] = "on"
        return self._render(customer, form)

    @expose("/<pk>/edit", methods=["POST"])
    @has_access
    def save(self, pk):
        """Add a new version from the form; back to the customer page, or the form again with a 400."""
        customer = self._customer(pk)
        try:
            card = cards.save_version(customer.id, g.user, form_body(request.form))
            db.session.commit()
        except DomainError as exc:
            db.session.rollback()
            if exc.status == 404:
                abort(404)
            flash(f"{exc.field + ': ' if exc.field else ''}{exc.message}", "danger")
            return self._render(self._customer(pk), request.form, status=exc.status)
        flash(str(_("Customer card saved as version %(n)d", n=card.version)), "success")
        return redirect(url_for("CustomerView.show", pk=customer.id))
