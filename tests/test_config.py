"""Configuration: production refuses to start with a default or weak secret."""

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
