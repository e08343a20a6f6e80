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
