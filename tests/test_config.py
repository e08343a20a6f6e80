"""Configuration: production refuses to start with a default or weak secret, or weak password hashing."""

import pytest

from config import DEFAULT_SECRET, ProductionConfig, config_for_env, normalise_db_url


@pytest.mark.parametrize("secret", [None, "", DEFAULT_SECRET, "short"])
def test_production_refuses_default_or_weak_secret(monkeypatch, secret):
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    if secret is None:
        monkeypatch.delenv("SECRET_KEY", raising=False)
    else:
        monkeypatch.setenv("SECRET_KEY", secret)
    from app import create_app

    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app(ProductionConfig)


def test_production_accepts_a_real_secret(monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "x" * 48)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    assert ProductionConfig.validate() == "x" * 48


def test_production_refuses_to_run_without_redis(monkeypatch):
    monkeypatch.setenv("SECRET_KEY", "x" * 48)
    monkeypatch.delenv("REDIS_URL", raising=False)
    with pytest.raises(RuntimeError, match="REDIS_URL"):
        ProductionConfig.validate()


def test_env_selects_config(monkeypatch):
    monkeypatch.setenv("CRM_ENV", "production")
    assert config_for_env() is ProductionConfig
    assert config_for_env("test").TESTING is True


def test_database_urls_use_psycopg3():
    assert normalise_db_url("postgres://u@h/d") == "postgresql+psycopg://u@h/d"
    assert normalise_db_url("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"
    assert normalise_db_url("sqlite:///x.db") == "sqlite:///x.db"


def weak_production(memory_kib, time_cost, parallelism=1):
    """ProductionConfig with these Argon2id settings (as if read from the environment)."""
    return type(
        "ArgonProduction",
        (ProductionConfig,),
        {"PASSWORD_ARGON2_MEMORY_KIB": memory_kib, "PASSWORD_ARGON2_TIME_COST": time_cost, "PASSWORD_ARGON2_PARALLELISM": parallelism},
    )


@pytest.mark.parametrize("memory_kib,time_cost,parallelism", [(19455, 2, 1), (19456, 1, 1), (65536, 0, 1), (7168, 4, 1), (19456, 2, 0)])
def test_production_refuses_argon2_below_owasp(monkeypatch, memory_kib, time_cost, parallelism):
    monkeypatch.setenv("SECRET_KEY", "x" * 48)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    from app import create_app

    with pytest.raises(RuntimeError, match="PASSWORD_ARGON2"):
        create_app(weak_production(memory_kib, time_cost, parallelism))


@pytest.mark.parametrize("memory_kib,time_cost", [(19456, 2), (47104, 1), (12288, 3), (9216, 4), (7168, 5), (65536, 3)])
def test_production_accepts_owasp_argon2_settings(monkeypatch, memory_kib, time_cost):
    monkeypatch.setenv("SECRET_KEY", "x" * 48)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    assert weak_production(memory_kib, time_cost).validate() == "x" * 48


def test_argon2_settings_come_from_the_environment():
    """PASSWORD_ARGON2_* reach the config class; a weak value stops a production start."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, SECRET_KEY="x" * 48, REDIS_URL="redis://127.0.0.1:6379/0", PASSWORD_ARGON2_MEMORY_KIB="8192", PASSWORD_ARGON2_TIME_COST="2", PASSWORD_ARGON2_PARALLELISM="2")
    code = "from config import ProductionConfig as P; print(P.PASSWORD_ARGON2_MEMORY_KIB, P.PASSWORD_ARGON2_TIME_COST, P.PASSWORD_ARGON2_PARALLELISM); P.validate()"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True)
    assert result.stdout.split() == ["8192", "2", "2"]
    assert result.returncode != 0 and "PASSWORD_ARGON2_MEMORY_KIB=8192" in result.stderr


# ---- issue 18 item 3: no config but the test config starts with a default secret ----------


def _development(config_class, **extra):
    """DevelopmentConfig on this run's database and Redis (what `make run` or a CLI command in a checkout builds)."""
    from config import DevelopmentConfig

    keep = ("SQLALCHEMY_DATABASE_URI", "REDIS_URL", "RATELIMIT_STORAGE_URI", "CACHE_KEY_PREFIX", "TRUSTED_PROXY_COUNT")
    values = {name: getattr(config_class, name) for name in keep if hasattr(config_class, name)}
    return type("DevRun", (DevelopmentConfig,), {**values, "RATELIMIT_ENABLED": False, "CACHE_TYPE": "NullCache", **extra})


@pytest.fixture()
def checkout_secret_file(tmp_path, monkeypatch):
    """instance/secret_key of a throwaway checkout, and no SECRET_KEY in the environment."""
    import config

    path = tmp_path / "instance" / "secret_key"
    monkeypatch.setattr(config, "DEV_SECRET_FILE", str(path), raising=False)
    monkeypatch.delenv("SECRET_KEY", raising=False)
    return path


def test_a_jwt_signed_with_the_old_default_secret_is_refused_by_a_development_app(app, config_class, users, checkout_secret_file):
    """The seed's literal secret signed an Admin token that a development start accepted; now it signs nothing."""
    import time
    import uuid

    import jwt

    from app import create_app

    dev = create_app(_development(config_class))
    assert dev.config["SECRET_KEY"] != DEFAULT_SECRET
    now = int(time.time())
    claims = {"sub": str(users["admin"].id), "type": "access", "fresh": True, "jti": str(uuid.uuid4()), "iat": now, "nbf": now, "exp": now + 600}
    forged = {"Authorization": f"Bearer {jwt.encode(claims, DEFAULT_SECRET, algorithm='HS256')}"}
    client = dev.test_client()
    assert client.get("/api/auth/me", headers=forged).status_code == 401
    # flask-jwt-extended answers a bad signature with 422 on FAB's API: refused all the same.
    assert client.get("/api/v1/customer/", headers=forged).status_code in (401, 422)
    assert client.get("/api/audit", headers=forged).status_code == 401


def test_development_keeps_a_random_secret_per_checkout(config_class, checkout_secret_file, monkeypatch):
    """Without SECRET_KEY a development start writes instance/secret_key (0600) once and every later start reads it."""
    from app import create_app

    first = create_app(_development(config_class)).config["SECRET_KEY"]
    assert len(first) >= 32 and first != DEFAULT_SECRET
    assert checkout_secret_file.read_text().strip() == first
    assert checkout_secret_file.stat().st_mode & 0o777 == 0o600
    assert create_app(_development(config_class)).config["SECRET_KEY"] == first  # restarts keep sessions and tokens
    checkout_secret_file.chmod(0o644)  # written by an older run.sh
    assert create_app(_development(config_class)).config["SECRET_KEY"] == first
    assert checkout_secret_file.stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv("SECRET_KEY", "from-the-environment-" + "y" * 20)
    assert create_app(_development(config_class)).config["SECRET_KEY"] == "from-the-environment-" + "y" * 20
    monkeypatch.setenv("SECRET_KEY", DEFAULT_SECRET)
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        create_app(_development(config_class))


def test_processes_starting_together_share_one_checkout_secret(tmp_path):
    """web, worker and consumer started at once (make up) all read the one secret the first of them wrote."""
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    path = tmp_path / "instance" / "secret_key"
    code = f"import config; print(config.checkout_secret({str(path)!r}))"
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=root, env=env, stdout=subprocess.PIPE, text=True) for _ in range(6)]
    secrets = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(secrets) == 1 and secrets == {path.read_text().strip()}
    assert sorted(os.listdir(path.parent)) == ["secret_key"]  # no temporary file left behind


def test_only_the_test_config_has_a_default_secret(monkeypatch):
    """Config and Production refuse to start without SECRET_KEY; TestConfig has its own literal, not the seed's."""
    from config import Config, TestConfig

    monkeypatch.delenv("SECRET_KEY", raising=False)
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        Config.secret_key()
    with pytest.raises(RuntimeError, match="SECRET_KEY"):
        ProductionConfig.secret_key()
    assert TestConfig.secret_key() and TestConfig.secret_key() != DEFAULT_SECRET


def test_every_procfile_process_runs_the_production_config():
    """The Procfile's web, worker and consumer start with CRM_ENV=production (production's checks, no default secret)."""
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "Procfile"), encoding="utf-8") as fh:
        lines = [line.strip() for line in fh if line.strip() and not line.startswith("#")]
    kinds = {line.split(":", 1)[0] for line in lines}
    assert {"web", "worker", "consumer"} <= kinds
    for line in lines:
        command = line.split(":", 1)[1].split()
        assert command[0] == "CRM_ENV=production", line


# ---- issue 20 leftovers: defaults only in config.py -------------------------------------


def test_moved_settings_have_their_defaults_in_config_and_come_from_the_environment():
    """MIGRATIONS_DIR, LOGOUT_REDIRECT_URL and AUTH_EPOCH_PREFIX: a default in config.py, an override from the environment."""
    import os
    import subprocess
    import sys

    from config import BASE_DIR, Config

    assert Config.MIGRATIONS_DIR == os.path.join(BASE_DIR, "migrations") and os.path.isdir(Config.MIGRATIONS_DIR)
    assert Config.LOGOUT_REDIRECT_URL == "" and Config.AUTH_EPOCH_PREFIX == "crm:authepoch:"
    env = dict(os.environ, MIGRATIONS_DIR="/elsewhere/migrations", LOGOUT_REDIRECT_URL="/bye", AUTH_EPOCH_PREFIX="other:epoch:")
    code = "from config import Config as C; print(C.MIGRATIONS_DIR, C.LOGOUT_REDIRECT_URL, C.AUTH_EPOCH_PREFIX)"
    result = subprocess.run([sys.executable, "-c", code], cwd=BASE_DIR, env=env, capture_output=True, text=True)
    assert result.stdout.split() == ["/elsewhere/migrations", "/bye", "other:epoch:"], result.stderr


def test_logout_goes_to_the_configured_url_else_the_index(app, users, monkeypatch):
    """The screens' logout follows LOGOUT_REDIRECT_URL; empty, it goes to the index."""
    from tests.conftest import PASSWORD

    def logout_location():
        c = app.test_client()
        assert c.post("/login/", data={"username": users["sales"].email, "password": PASSWORD}).status_code == 302
        resp = c.post("/logout/")
        assert resp.status_code == 302
        return resp.headers["Location"]

    index = logout_location()
    assert index != "/goodbye"
    monkeypatch.setitem(app.config, "LOGOUT_REDIRECT_URL", "/goodbye")
    assert logout_location() == "/goodbye"


def test_auth_epoch_keys_use_the_configured_prefix(app, monkeypatch):
    """AUTH_EPOCH_PREFIX names the authorisation-epoch keys (read from config, not a literal in app/tokens.py)."""
    from app import tokens

    monkeypatch.setitem(app.config, "AUTH_EPOCH_PREFIX", "t-prefix:")
    monkeypatch.delitem(app.extensions, "crm_epoch_prefix", raising=False)
    with app.app_context():
        keys = tokens.epoch_keys(7)
    assert all(key.startswith("t-prefix:") for key in keys) and keys[1].endswith(":u7")


@pytest.mark.parametrize("name", ["CARD_STALE_POLICY", "CARD_MISSING_POLICY"])
def test_production_refuses_an_unknown_card_policy(monkeypatch, name):
    monkeypatch.setenv("SECRET_KEY", "x" * 48)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6379/0")
    bad = type("BadPolicy", (ProductionConfig,), {name: "ignore"})
    with pytest.raises(RuntimeError, match=name):
        bad.validate()
