"""The product master (商品マスタ): products, and the product an approval request is for.

A request names its product by `productId`, or (the seed's /api contract) by
`productName` and `productRisk`: a master product of that name is used (its risk rating
wins; a different productRisk is refused), else a product made earlier from a request with
the same name and risk, else a new one with origin `request`, which Compliance can review
and complete in the master. The product's attributes, not the rep's typing, are what the
routing compares with the customer card (app/services/cards.py).
"""

import uuid

import sqlalchemy as sa

from app.extensions import db
from app.roles import ADD, EDIT, PRODUCT, ROLE_PERMISSIONS
from app.scope import ADMIN, role_names
from app.services.errors import Forbidden, NotFound, ValidationFailed
from app.services.records import related_id
from models.base import new_id
from models.product import InvestmentPurpose, Product, ProductOrigin, ProductType

NAME_MAX, CODE_MAX = 200, 40


def may_manage(user, permission=EDIT):
    """True when `user` may add or edit products (Compliance and Admin)."""
    names = role_names(user)
    return ADMIN in names or any(permission in ROLE_PERMISSIONS.get(n, {}).get(PRODUCT, ()) for n in names)


def parse_years_text(text, field="minExperienceYears"):
    """"derivatives=1, structured_bonds=2" (the screens' spelling) as {type: years}; 400 naming `field`."""
    out = {}
    for part in (text or "").replace("\n", ",").split(","):
        if not part.strip():
            continue
        key, sep, years = part.partition("=")
        if not sep or not years.strip().isdigit():
            raise ValidationFailed(f"{field} must read like derivatives=1, structured_bonds=2", field=field)
        out[key.strip()] = int(years.strip())
    return out


def years_text(value):
    """{type: years} as the screens spell it."""
    return ", ".join(f"{k}={v}" for k, v in sorted((value or {}).items()))


def _experience_years(value, field="minExperienceYears"):
    if value is None:
        return {}
    if isinstance(value, str):
        value = parse_years_text(value, field)
    if not isinstance(value, dict):
        raise ValidationFailed(f"{field} must be an object of product type -> years", field=field)
    out = {}
    for key, years in value.items():
        try:
            kind = ProductType(key).value
        except ValueError:
            raise ValidationFailed(f"{field}: unknown product type {key!r}", field=field) from None
        if isinstance(years, bool) or not isinstance(years, int) or not 0 <= years <= 80:
            raise ValidationFailed(f"{field}.{key} must be a whole number of years (0-80)", field=field)
        if years:
            out[kind] = years
    return out


def _purposes(value, field="suitablePurposes"):
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValidationFailed(f"{field} must be a list", field=field)
    out = []
    for item in value:
        try:
            purpose = InvestmentPurpose(item).value
        except ValueError:
            raise ValidationFailed(f"{field}: unknown purpose {item!r}", field=field) from None
        if purpose not in out:
            out.append(purpose)
    return out


def prepare_product(product, user, creating):
    """Validate a product about to be written by `user` (screens, /api, /api/v1)."""
    if not may_manage(user, ADD if creating else EDIT):
        raise Forbidden("only Compliance or an Admin maintains the product master")
    product.name = (product.name or "").strip()
    if not product.name:
        raise ValidationFailed("name is required", field="name")
    if len(product.name) > NAME_MAX:
        raise ValidationFailed(f"name must be at most {NAME_MAX} characters", field="name")
    product.code = (product.code or "").strip()
    if not product.code:
        raise ValidationFailed("code is required", field="code")
    if len(product.code) > CODE_MAX:
        raise ValidationFailed(f"code must be at most {CODE_MAX} characters", field="code")
    clash = db.session.execute(
        sa.select(Product.id).where(Product.code == product.code, Product.id != (product.id or ""))
    ).first()
    if clash:
        raise ValidationFailed("a product with this code already exists", field="code")
    risk = product.risk_rating
    if risk is None or isinstance(risk, bool) or not isinstance(risk, int) or not 1 <= risk <= 10:
        raise ValidationFailed("riskRating must be a whole number between 1 and 10", field="riskRating")
    if product.product_type is None:
        product.product_type = ProductType.other
    product.complex = bool(product.complex)
    product.principal_protected = bool(product.principal_protected)
    product.min_experience_years = _experience_years(product.min_experience_years)
    product.suitable_purposes = _purposes(product.suitable_purposes)
    # Curated from here on: a product made from a request becomes a master product once edited.
    product.origin = ProductOrigin.master
    if product.active is None:
        product.active = True
    if creating:
        product.created_by_id = product.created_by_id or getattr(user, "id", None)


def get_product(product_id, field="productId"):
    """The active product `product_id`, else a 400 naming `field`."""
    try:
        uuid.UUID(str(product_id))
    except ValueError:
        raise ValidationFailed(f"{field} must be a product id", field=field) from None
    product = db.session.get(Product, str(product_id))
    if product is None or not product.active:
        raise ValidationFailed("product not found", field=field)
    return product


def load(product_id):
    """A product by id (any user may read the master), else NotFound."""
    product = db.session.get(Product, str(product_id)) if product_id else None
    if product is None:
        raise NotFound("product not found")
    return product


def _by_name(name, origin, risk=None):
    stmt = sa.select(Product).where(
        sa.func.lower(Product.name) == name.lower(), Product.origin == origin, Product.active.is_(True)
    )
    if origin == ProductOrigin.request:
        stmt = stmt.where(Product.risk_rating.is_(None) if risk is None else Product.risk_rating == risk)
    return db.session.execute(stmt.order_by(Product.created_at, Product.id).limit(1)).scalar_one_or_none()


def resolve_for_request(request, user):
    """The product of a new request; sets its product, productName and productRisk from it."""
    product_id = related_id(request, "product_id", "product")
    if product_id:
        product = get_product(product_id)
    else:
        name = (request.product_name or "").strip()
        if not name:
            raise ValidationFailed("productName or productId is required", field="productName")
        product = _by_name(name, ProductOrigin.master)
        if product is None:
            product = _by_name(name, ProductOrigin.request, request.product_risk)
        if product is None:
            product = Product(
                id=new_id(),
                code=f"REQ-{uuid.uuid4().hex[:12].upper()}",
                name=name,
                risk_rating=request.product_risk,
                product_type=ProductType.other,
                complex=False,
                principal_protected=False,
                min_experience_years={},
                suitable_purposes=[],
                origin=ProductOrigin.request,
                active=True,
                created_by_id=user.id,
            )
            db.session.add(product)
    if request.product_risk is not None and product.risk_rating is not None and request.product_risk != product.risk_rating:
        raise ValidationFailed(
            f"productRisk {request.product_risk} differs from the product master's rating {product.risk_rating} for {product.name}",
            field="productRisk",
        )
    request.product = product
    request.product_id = product.id
    request.product_name = product.name
    request.product_risk = product.risk_rating
    return product


def attributes(product):
    """The product as frozen into a request's snapshot (API spelling)."""
    return {
        "id": product.id,
        "code": product.code,
        "name": product.name,
        "riskRating": product.risk_rating,
        "productType": product.product_type.value if product.product_type else None,
        "complex": bool(product.complex),
        "principalProtected": bool(product.principal_protected),
        "minExperienceYears": dict(product.min_experience_years or {}),
        "suitablePurposes": list(product.suitable_purposes or []),
        "origin": product.origin.value if product.origin else None,
    }
