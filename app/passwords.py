"""User password hashing: Argon2id (argon2-cffi) for every new hash, one place for all of it.

Hashes are PHC strings (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) carrying their own
parameters, so a hash made under older settings still verifies and `needs_rehash` says when
to replace it. Werkzeug's `scrypt:`/`pbkdf2:` hashes (what FAB stored before) still verify,
so existing users log in and are upgraded on that login (app/security.py).
"""

import secrets
from functools import lru_cache

import sqlalchemy as sa
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app
from werkzeug.security import check_password_hash

ARGON2_PREFIX = "$argon2"
_REHASHED = "crm_rehashed_password"  # InstanceState.info: the hash `rehash` wrote
LEGACY_PREFIXES = ("scrypt:", "pbkdf2:")  # werkzeug's formats, verified until rehashed


@lru_cache(maxsize=8)
def _hasher(memory_kib, time_cost, parallelism):
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID)


def hasher(config=None):
    """The Argon2id hasher for the PASSWORD_ARGON2_* settings of `config` (default: the app's)."""
    cfg = current_app.config if config is None else config
    return _hasher(
        int(cfg["PASSWORD_ARGON2_MEMORY_KIB"]),
        int(cfg["PASSWORD_ARGON2_TIME_COST"]),
        int(cfg["PASSWORD_ARGON2_PARALLELISM"]),
    )


def hash_password(password):
    """Hash a clear-text password with Argon2id at the configured cost."""
    return hasher().hash(password)


def verify_password(stored, password):
    """True when `password` matches `stored` (Argon2 or a werkzeug legacy hash); never raises."""
    if not stored or password is None:
        return False
    if stored.startswith(ARGON2_PREFIX):
        try:
            # The parameters come from the stored hash, so old settings still verify.
            return hasher().verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False
    if stored.startswith(LEGACY_PREFIXES):
        try:
            return check_password_hash(stored, password)
        except ValueError:  # a malformed legacy hash is a failed login, not a 500
            return False
    return False


def needs_rehash(stored):
    """True when `stored` is not Argon2id at the configured parameters (legacy or outdated)."""
    if not stored or not stored.startswith(ARGON2_PREFIX):
        return True
    try:
        return hasher().check_needs_rehash(stored)
    except InvalidHashError:
        return True


def rehash(user, password):
    """Store the same `password` of `user` under the current settings (not a password change: tokens and audit ignore it)."""
    user.password = hash_password(password)
    sa.inspect(user).info[_REHASHED] = user.password


def changed(user):
    """True when `user`'s pending or just-flushed changes set a new password (a `rehash` is not one)."""
    state = sa.inspect(user)
    history = state.attrs.password.history
    if not history.added or not history.added[0]:
        return False
    new = history.added[0]
    if history.deleted and history.deleted[0] == new:
        return False
    return new != state.info.get(_REHASHED)


@lru_cache(maxsize=8)
def _dummy_hash(memory_kib, time_cost, parallelism):
    # A hash of a random secret at the current cost: nothing can match it.
    return _hasher(memory_kib, time_cost, parallelism).hash(secrets.token_urlsafe(32))


def fake_check(password):
    """Spend one real hash check on nothing (unknown or inactive user), so timing tells nothing."""
    h = hasher()
    dummy = _dummy_hash(h.memory_cost, h.time_cost, h.parallelism)
    verify_password(dummy, password or "")
    return False
