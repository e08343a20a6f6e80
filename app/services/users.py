"""Users: the one way a user is created (`crm create-user`, the demo data, tests)."""

from flask import current_app

from app.roles import ROLES


def create_user(email, name, role, password):
    """Create a user with one role; return it (raises ValueError if it cannot)."""
    from app.emails import normalise_email
    from app.services.errors import ValidationFailed

    sm = current_app.appbuilder.sm
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    try:
        email = normalise_email(email)
    except ValidationFailed as exc:
        raise ValueError(f"--email: {exc.message}") from None
    if sm.find_user(email=email):
        raise ValueError(f"a user with email {email} already exists")
    first, _, last = name.strip().partition(" ")
    user = sm.add_user(
        username=email,
        first_name=first or name,
        last_name=last or "-",
        email=email,
        role=sm.find_role(role),
        password=password,
    )
    if not user:
        raise ValueError("the user could not be created (see the log)")
    return user
