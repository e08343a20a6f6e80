"""Customer cards (顧客カード) and the suitability assessment of a request (docs/compliance.md).

A card is versioned: `save_version` never changes a row, it adds version n+1 (who, when,
why), carrying over the items not given. The newest version is the customer's card. It
is **stale** when a required item is missing or its last review lies CARD_REVIEW_MONTHS
or more back. `assess` is what a request is routed on at submit: the card against the
product (risk above tolerance, experience below the product's minimum, purpose
mismatch), the card's state (CARD_STALE_POLICY, CARD_MISSING_POLICY), and the customer's
age at the proposal date (ELDERLY_SUPERVISOR_AGE, ELDERLY_NEXT_DAY_AGE). Its snapshot is
frozen into the request, so a later card change never alters a submitted request.

Customers without any card (every customer from before cards existed) follow
CARD_MISSING_POLICY: `legacy` (default) routes on the customer's riskTolerance and
investmentProfile exactly as before; the card rules start with the customer's first card.
"""

from dataclasses import dataclass, field
from datetime import date

import sqlalchemy as sa
from dateutil.relativedelta import relativedelta
from flask import current_app

from app.extensions import db
from app.roles import CUSTOMER, EDIT, ROLE_PERMISSIONS
from app.scope import ADMIN, in_scope, role_names
from app.services.business_days import local_date
from app.services.errors import Forbidden, NotFound, ValidationFailed
from models.base import utcnow
from models.customer import Customer
from models.customer_card import AssetsBand, CustomerCard, IncomeBand, InvestmentHorizon
from models.product import InvestmentPurpose, ProductType

#: Item (API spelling) -> column; every one is required for a card to be current.
ITEMS = {
    "dateOfBirth": "date_of_birth",
    "occupation": "occupation",
    "investmentPurpose": "investment_purpose",
    "investmentHorizon": "investment_horizon",
    "incomeBand": "income_band",
    "financialAssetsBand": "financial_assets_band",
    "sourceOfFunds": "source_of_funds",
    "experience": "experience",
    "riskTolerance": "risk_tolerance",
}
REQUIRED_ITEMS = tuple(ITEMS)
FREQUENCIES = ("none", "yearly", "quarterly", "monthly", "weekly")
STALE_POLICIES = ("refuse", "compliance")
MISSING_POLICIES = ("legacy", "compliance", "refuse")
SUPERVISOR_KIND = "SUPERVISOR_PREAPPROVAL"

# Reason codes a card adds to a request (each routes it to Compliance).
EXPERIENCE_BELOW_MINIMUM = "EXPERIENCE_BELOW_MINIMUM"
PURPOSE_MISMATCH = "PURPOSE_MISMATCH"
CARD_STALE = "CARD_STALE"
NO_CUSTOMER_CARD = "NO_CUSTOMER_CARD"
PRODUCT_RISK_ABOVE_TOLERANCE = "PRODUCT_RISK_ABOVE_TOLERANCE"


# --- reading ---------------------------------------------------------------------------


def current(customer_id):
    """The newest card version of customer `customer_id`, else None."""
    return db.session.execute(
        sa.select(CustomerCard).where(CustomerCard.customer_id == customer_id).order_by(CustomerCard.version.desc()).limit(1)
    ).scalar_one_or_none()


def history(customer_id):
    """Every card version of customer `customer_id`, newest first."""
    return db.session.execute(
        sa.select(CustomerCard).where(CustomerCard.customer_id == customer_id).order_by(CustomerCard.version.desc())
    ).scalars().all()


def customer_for(customer_id, user):
    """The live customer `customer_id` if `user` may see it, else NotFound."""
    customer = db.session.get(Customer, str(customer_id)) if customer_id else None
    if customer is None or not in_scope(customer, user):
        raise NotFound("Customer not found")
    return customer


@dataclass
class CardState:
    """Whether a card is usable: `state` current, stale or missing; the items missing; the review due date."""

    state: str
    missing: list = field(default_factory=list)
    review_due: object = None
    review_overdue: bool = False

    def as_dict(self):
        """API spelling."""
        return {
            "state": self.state,
            "missingItems": list(self.missing),
            "reviewDue": self.review_due.isoformat() if self.review_due else None,
            "reviewOverdue": self.review_overdue,
        }


def state_of(card, now=None, months=None):
    """The `CardState` of `card` (None: missing) at `now`."""
    if card is None:
        return CardState("missing", missing=list(REQUIRED_ITEMS))
    months = int(current_app.config["CARD_REVIEW_MONTHS"] if months is None else months)
    now = now or utcnow()
    missing = [name for name, column in ITEMS.items() if _empty(getattr(card, column))]
    due, overdue = None, False
    if card.reviewed_at is None:
        missing.append("reviewedAt")
    else:
        due = local_date(card.reviewed_at + relativedelta(months=months))
        overdue = local_date(now) >= due
    return CardState("stale" if missing or overdue else "current", missing, due, overdue)


def _empty(value):
    # An empty experience object is an answer ("no experience"), not a missing item.
    return value is None or (isinstance(value, str) and not value.strip())


def age_on(birth, day):
    """Whole years from `birth` to `day` (a birthday on 29 February counts from 1 March in other years)."""
    years = day.year - birth.year
    if (day.month, day.day) < (birth.month, birth.day):
        years -= 1
    return years


def as_dict(card):
    """One card version in API spelling, with the names of who reviewed and changed it."""
    if card is None:
        return None
    out = {
        "id": card.id,
        "customerId": card.customer_id,
        "version": card.version,
        "dateOfBirth": card.date_of_birth.isoformat() if card.date_of_birth else None,
        "occupation": card.occupation,
        "investmentPurpose": _code(card.investment_purpose),
        "investmentHorizon": _code(card.investment_horizon),
        "incomeBand": _code(card.income_band),
        "financialAssetsBand": _code(card.financial_assets_band),
        "sourceOfFunds": card.source_of_funds,
        "experience": card.experience,
        "riskTolerance": card.risk_tolerance,
        "reviewedAt": card.reviewed_at.isoformat() if card.reviewed_at else None,
        "reviewedById": str(card.reviewed_by_id) if card.reviewed_by_id is not None else None,
        "reviewedBy": _name(card.reviewed_by),
        "changedById": str(card.changed_by_id) if card.changed_by_id is not None else None,
        "changedBy": _name(card.changed_by),
        "changedAt": card.changed_at.isoformat() if card.changed_at else None,
        "changeReason": card.change_reason,
    }
    return out


def _code(value):
    return value.value if value is not None else None


def _name(user):
    return user.get_full_name() if user is not None else None


# --- writing ---------------------------------------------------------------------------


def may_edit(user):
    """True when `user`'s role edits customers (Sales for their own, Managers, Admins); Compliance reads only."""
    names = role_names(user)
    return ADMIN in names or any(EDIT in ROLE_PERMISSIONS.get(n, {}).get(CUSTOMER, ()) for n in names)


def _enum(enum_cls, name, raw):
    try:
        return enum_cls(raw)
    except ValueError:
        allowed = ", ".join(m.value for m in enum_cls)
        raise ValidationFailed(f"{name} must be one of {allowed}", field=name) from None


def _text(name, raw, max_len):
    if not isinstance(raw, str):
        raise ValidationFailed(f"{name} must be a string", field=name)
    raw = raw.strip()
    if len(raw) > max_len:
        raise ValidationFailed(f"{name} must be at most {max_len} characters", field=name)
    return raw or None


def _birth(raw, today):
    if isinstance(raw, date):
        value = raw
    else:
        if not isinstance(raw, str):
            raise ValidationFailed("dateOfBirth must be a date like 1950-04-01", field="dateOfBirth")
        try:
            value = date.fromisoformat(raw.strip())
        except ValueError:
            raise ValidationFailed("dateOfBirth must be a date like 1950-04-01", field="dateOfBirth") from None
    if value > today or value.year < 1900:
        raise ValidationFailed("dateOfBirth must lie between 1900 and today", field="dateOfBirth")
    return value


def parse_experience(raw):
    """{product type: {"years": int, "frequency": str}} checked; types with no years and no frequency dropped."""
    if not isinstance(raw, dict):
        raise ValidationFailed("experience must be an object of product type -> {years, frequency}", field="experience")
    out = {}
    for key, entry in raw.items():
        try:
            kind = ProductType(key).value
        except ValueError:
            raise ValidationFailed(f"experience: unknown product type {key!r}", field="experience") from None
        if not isinstance(entry, dict):
            raise ValidationFailed(f"experience.{key} must be an object {{years, frequency}}", field="experience")
        years = entry.get("years", 0)
        if isinstance(years, bool) or not isinstance(years, int) or not 0 <= years <= 80:
            raise ValidationFailed(f"experience.{key}.years must be a whole number (0-80)", field="experience")
        frequency = entry.get("frequency") or "none"
        if frequency not in FREQUENCIES:
            raise ValidationFailed(f"experience.{key}.frequency must be one of {', '.join(FREQUENCIES)}", field="experience")
        if years or frequency != "none":
            out[kind] = {"years": years, "frequency": frequency}
    return out


def parse(body, today=None):
    """The card items of the API-spelled dict `body` (only those present) as column values; 400 naming a bad one."""
    today = today or local_date(utcnow())
    values = {}
    for name, column in ITEMS.items():
        if name not in body:
            continue
        raw = body[name]
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            values[column] = None
            continue
        if name == "dateOfBirth":
            values[column] = _birth(raw, today)
        elif name in ("occupation", "sourceOfFunds"):
            values[column] = _text(name, raw, 100 if name == "occupation" else 200)
        elif name == "investmentPurpose":
            values[column] = _enum(InvestmentPurpose, name, raw)
        elif name == "investmentHorizon":
            values[column] = _enum(InvestmentHorizon, name, raw)
        elif name == "incomeBand":
            values[column] = _enum(IncomeBand, name, raw)
        elif name == "financialAssetsBand":
            values[column] = _enum(AssetsBand, name, raw)
        elif name == "experience":
            values[column] = parse_experience(raw)
        elif name == "riskTolerance":
            if isinstance(raw, str) and raw.strip().isdigit():
                raw = int(raw.strip())
            if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= 10:
                raise ValidationFailed("riskTolerance must be a whole number between 1 and 10", field="riskTolerance")
            values[column] = raw
    return values


def experience_summary(experience):
    """The card's experience as one line for the legacy investmentExperience field."""
    if not experience:
        return "なし (none)"
    return "; ".join(f"{kind} {e['years']}y {e['frequency']}" for kind, e in sorted(experience.items()))[:500]


def save_version(customer_id, user, body):
    """Add a new card version for `customer_id` from the API-spelled `body` (changeReason required; `reviewed` default true).

    Items not in `body` are carried over from the current version. The customer row is
    locked first, so two writers at once get versions n+1 and n+2, never the same number.
    The card feeds the legacy fields: riskTolerance, and investmentExperience as a summary.
    """
    if not isinstance(body, dict):
        raise ValidationFailed("the body must be a JSON object")
    if not may_edit(user):
        raise Forbidden("your role may not change customer cards")
    customer = customer_for(customer_id, user)
    reason = body.get("changeReason")
    if not isinstance(reason, str) or not reason.strip():
        raise ValidationFailed("changeReason is required: why the card changes", field="changeReason")
    if len(reason.strip()) > 500:
        raise ValidationFailed("changeReason must be at most 500 characters", field="changeReason")
    reviewed = body.get("reviewed", True)
    if not isinstance(reviewed, bool):
        raise ValidationFailed("reviewed must be true or false", field="reviewed")
    values = parse(body)
    db.session.execute(sa.select(Customer.id).where(Customer.id == customer.id).with_for_update())
    previous = current(customer.id)
    _after_read(customer)
    now = utcnow()
    card = CustomerCard(customer_id=customer.id, version=(previous.version + 1) if previous else 1)
    for column in ITEMS.values():
        setattr(card, column, values[column] if column in values else (getattr(previous, column) if previous else None))
    if reviewed:
        card.reviewed_at, card.reviewed_by_id = now, user.id
    elif previous is not None:
        # A correction not confirmed with the customer keeps the last review's date.
        card.reviewed_at, card.reviewed_by_id = previous.reviewed_at, previous.reviewed_by_id
    card.changed_by_id, card.changed_at, card.change_reason = user.id, now, reason.strip()
    db.session.add(card)
    if card.risk_tolerance is not None and customer.risk_tolerance != card.risk_tolerance:
        customer.risk_tolerance = card.risk_tolerance
    if card.experience is not None:
        summary = experience_summary(card.experience)
        if customer.investment_experience != summary:
            customer.investment_experience = summary
    db.session.flush()
    return card


def _after_read(customer):
    """Hook run between reading the current version and writing the next (tests slow it down to widen the race)."""


# --- assessing a request ---------------------------------------------------------------


@dataclass
class Assessment:
    """What the card says about one request: reasons (code, detail), the extra steps, the snapshot."""

    reasons: list
    supervisor_required: bool
    next_day_required: bool
    snapshot: dict

    @property
    def codes(self):
        """The reason codes, in order, once each."""
        out = []
        for code, _detail in self.reasons:
            if code not in out:
                out.append(code)
        return out


def _policy(name, allowed):
    value = str(current_app.config[name]).strip().lower()
    if value not in allowed:
        raise RuntimeError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def refusal(state, policy_name):
    """The 400 refusing a request on a stale or missing card, naming what is missing."""
    if state.state == "missing":
        message = "the customer has no customer card: record one before proposing a product"
    else:
        parts = []
        if state.missing:
            parts.append("missing " + ", ".join(state.missing))
        if state.review_overdue:
            parts.append(f"review overdue since {state.review_due.isoformat()}")
        message = "the customer card is stale (" + "; ".join(parts) + "): update the card before proposing a product"
    return ValidationFailed(
        message,
        field="customerCard",
        details={"customerCard": [message], **state.as_dict(), "policy": policy_name},
    )


def assess(customer, card, product, proposed_at, legacy_tolerance):
    """Assess a request for `product` to `customer` with `card` (None: no card) proposed at `proposed_at`.

    Raises the `refusal` when the policy refuses; else returns the `Assessment`.
    `legacy_tolerance` is the customer's riskTolerance, used when there is no card.
    """
    from app.services import products as product_service

    config = current_app.config
    state = state_of(card, proposed_at)
    reasons = []
    if state.state == "missing":
        policy = _policy("CARD_MISSING_POLICY", MISSING_POLICIES)
        if policy == "refuse":
            raise refusal(state, "CARD_MISSING_POLICY")
        if policy == "compliance":
            reasons.append((NO_CUSTOMER_CARD, "no customer card"))
    elif state.state == "stale":
        if _policy("CARD_STALE_POLICY", STALE_POLICIES) == "refuse":
            raise refusal(state, "CARD_STALE_POLICY")
        reasons.append((CARD_STALE, refusal(state, "CARD_STALE_POLICY").message))
    tolerance = card.risk_tolerance if card is not None and card.risk_tolerance is not None else legacy_tolerance
    if product.risk_rating is not None and tolerance is not None and product.risk_rating > tolerance:
        reasons.append((PRODUCT_RISK_ABOVE_TOLERANCE, f"product risk {product.risk_rating} > tolerance {tolerance}"))
    if card is not None:
        experience = card.experience or {}
        for kind, years in sorted((product.min_experience_years or {}).items()):
            have = int((experience.get(kind) or {}).get("years", 0))
            if have < int(years):
                reasons.append((EXPERIENCE_BELOW_MINIMUM, f"{kind}: {have} < {years} years"))
        purposes = product.suitable_purposes or []
        if purposes and card.investment_purpose is not None and card.investment_purpose.value not in purposes:
            reasons.append((PURPOSE_MISMATCH, f"{card.investment_purpose.value} not in {', '.join(purposes)}"))
    proposal_day = local_date(proposed_at)
    age = age_on(card.date_of_birth, proposal_day) if card is not None and card.date_of_birth else None
    supervisor_age, next_day_age = int(config["ELDERLY_SUPERVISOR_AGE"]), int(config["ELDERLY_NEXT_DAY_AGE"])
    supervisor = age is not None and age >= supervisor_age and bool(product.complex)
    next_day = age is not None and age >= next_day_age
    snapshot = {
        "schema": 1,
        "takenAt": proposed_at.isoformat(),
        "proposalDate": proposal_day.isoformat(),
        "card": as_dict(card),
        "cardState": state.as_dict(),
        "product": product_service.attributes(product),
        "customer": {
            "id": customer.id,
            "riskTolerance": customer.risk_tolerance,
            "investmentProfile": customer.investment_profile.value if customer.investment_profile else None,
        },
        "riskToleranceUsed": tolerance,
        "elderly": {
            "ageAtProposal": age,
            "supervisorAge": supervisor_age,
            "nextDayAge": next_day_age,
            "supervisorPreapprovalRequired": supervisor,
            "nextBusinessDayRequired": next_day,
        },
        "reasons": [{"code": code, "detail": detail} for code, detail in reasons],
        "policies": {
            "CARD_REVIEW_MONTHS": int(config["CARD_REVIEW_MONTHS"]),
            "CARD_STALE_POLICY": str(config["CARD_STALE_POLICY"]),
            "CARD_MISSING_POLICY": str(config["CARD_MISSING_POLICY"]),
        },
    }
    return Assessment(reasons, supervisor, next_day, snapshot)
