"""render.yaml: every command it runs exists, every variable it sets is read by config.py, production's needs are met.

The blueprint is parsed with PyYAML; each service's environment is built the way Render
would (its group, generated values, the database's and Key Value's connection strings
standing in as this run's PostgreSQL and Redis), then the real commands are asked
(`gunicorn --check-config`, `flask ... --help`) under that environment.
"""

import ast
import os
import secrets
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
# Read by Render's build itself, not by the app.
PLATFORM_VARIABLES = {"PYTHON_VERSION"}


@pytest.fixture(scope="module")
def blueprint():
    """render.yaml as PyYAML reads it."""
    with open(ROOT / "render.yaml", encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def config_variables():
    """Names of the environment variables config.py reads (os.environ.get / [...], env_int, env_bool)."""
    tree = ast.parse((ROOT / "config.py").read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            if (isinstance(func, ast.Attribute) and func.attr == "get" and getattr(func.value, "attr", None) == "environ") or (
                isinstance(func, ast.Name) and func.id in ("env_int", "env_bool")
            ):
                names.add(node.args[0].value)
        elif isinstance(node, ast.Subscript) and getattr(node.value, "attr", None) == "environ" and isinstance(node.slice, ast.Constant):
            names.add(node.slice.value)
    return names


def services(blueprint, kind=None):
    """The blueprint's services (of one type when `kind` is given)."""
    return [s for s in blueprint["services"] if kind is None or s["type"] == kind]


def service_env(blueprint, service, database_url="", redis_url=""):
    """{variable: value} Render would give `service` (generated secrets made here; dashboard-typed ones left out)."""
    groups = {g["name"]: g["envVars"] for g in blueprint.get("envVarGroups", [])}
    generated = {}
    env = {}

    def apply(item):
        key = item.get("key")
        if "value" in item:
            env[key] = str(item["value"])
        elif item.get("generateValue"):
            env[key] = generated.setdefault(key, secrets.token_urlsafe(32))  # Render: 256 bits, base64
        elif "fromDatabase" in item:
            env[key] = database_url
        elif "fromService" in item:
            assert item["fromService"]["type"] == "keyvalue", item
            env[key] = redis_url

    for item in service.get("envVars", []):
        if "fromGroup" in item:
            for grouped in groups[item["fromGroup"]]:
                apply(grouped)
        else:
            apply(item)
    return env


def declared_keys(blueprint):
    """Every variable name the blueprint sets or asks for, with the service or group it stands in."""
    found = []
    for group in blueprint.get("envVarGroups", []):
        found += [(group["name"], item["key"]) for item in group["envVars"]]
    for service in services(blueprint):
        found += [(service["name"], item["key"]) for item in service.get("envVars", []) if "key" in item]
    return found


def test_blueprint_has_the_procfile_processes_postgres_and_key_value(blueprint):
    """web, worker and consumer run the Procfile's commands; PostgreSQL and Redis (Key Value, no eviction) are declared."""
    procfile = {}
    for line in (ROOT / "Procfile").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            procfile[name.strip()] = command.split()[1:]  # without the CRM_ENV=production prefix
    start = {s["name"]: shlex.split(s["startCommand"]) for s in services(blueprint) if "startCommand" in s}
    assert start["crm-worker"] == procfile["worker"] and start["crm-consumer"] == procfile["consumer"]
    assert start["crm-web"][0] == procfile["web"][0] == "gunicorn" and start["crm-web"][-1] == procfile["web"][-1] == "wsgi:app"
    assert [s["type"] for s in services(blueprint) if s["name"] in start] == ["web", "worker", "worker"]
    (redis,) = services(blueprint, "keyvalue")
    assert redis["maxmemoryPolicy"] == "noeviction" and redis["ipAllowList"] == []
    (db,) = blueprint["databases"]
    for service in services(blueprint):
        if "startCommand" in service:
            refs = {item["key"]: item for item in service["envVars"] if "key" in item}
            assert refs["DATABASE_URL"]["fromDatabase"] == {"name": db["name"], "property": "connectionString"}
            assert refs["REDIS_URL"]["fromService"] == {"type": "keyvalue", "name": redis["name"], "property": "connectionString"}
    # The Procfile's stream process has no service: its host name would never get the session cookie.
    assert "stream" in procfile and all("stream" not in c for c in start.values())
    assert all(service_env(blueprint, s)["STREAM_ENABLED"] == "false" for s in services(blueprint) if s["name"] in start)


def test_web_checks_ready_and_initialises_before_each_deploy(blueprint, app):
    """healthCheckPath is the app's /ready; the pre-deploy step is `crm init`; every service runs CRM_ENV=production."""
    (web,) = services(blueprint, "web")
    assert web["healthCheckPath"] == "/ready"
    assert "/ready" in {rule.rule for rule in app.url_map.iter_rules()}
    assert shlex.split(web["preDeployCommand"]) == ["flask", "--app", "wsgi", "crm", "init"]
    for service in services(blueprint):
        if "startCommand" in service:
            assert service_env(blueprint, service)["CRM_ENV"] == "production", service["name"]


def test_every_variable_the_blueprint_sets_is_read_by_config(blueprint):
    """No variable the app would silently ignore (a typo, a setting that moved)."""
    known = config_variables()
    assert {"SECRET_KEY", "REDIS_URL", "DATABASE_URL", "KAFKA_BROKERS", "LOG_FORMAT", "SENTRY_DSN"} <= known
    unknown = [(where, key) for where, key in declared_keys(blueprint) if key not in known | PLATFORM_VARIABLES]
    assert unknown == []
    # The seed's names for Kafka and Redis, and no secret written into the file.
    keys = {key for _where, key in declared_keys(blueprint)}
    assert {"KAFKA_BROKERS", "KAFKA_USERNAME", "KAFKA_PASSWORD", "KAFKA_ENABLED", "REDIS_URL"} <= keys
    for service in services(blueprint):
        for item in service.get("envVars", []):
            if item.get("key") in ("KAFKA_BROKERS", "KAFKA_USERNAME", "KAFKA_PASSWORD", "SENTRY_DSN"):
                assert item == {"key": item["key"], "sync": False}


def test_production_accepts_each_service_environment_and_refuses_it_without_its_required_parts(blueprint, monkeypatch):
    """ProductionConfig.validate passes on every service's environment; without SECRET_KEY or REDIS_URL it refuses."""
    from config import ProductionConfig

    for service in services(blueprint):
        if "startCommand" not in service:
            continue
        env = service_env(blueprint, service, "postgresql://crm@db/crm", "redis://kv:6379")
        assert env["DATABASE_URL"] and env["REDIS_URL"], service["name"]
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        assert ProductionConfig.validate() == env["SECRET_KEY"]
        for required in ("SECRET_KEY", "REDIS_URL"):
            monkeypatch.delenv(required)
            with pytest.raises(RuntimeError, match=required):
                ProductionConfig.validate()
            monkeypatch.setenv(required, env[required])


def _render_env(blueprint, service, database_url, redis_url):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRM_", "SENTRY_", "KAFKA_", "LOG_"))}
    env.update(service_env(blueprint, service, database_url, redis_url))
    env["PORT"] = "10000"  # Render sets it for web services
    return env


def test_every_command_exists_under_the_blueprint_environment(blueprint, database_url, redis_url, app):
    """gunicorn loads `wsgi:app` with the web's production environment; every flask command is a registered `crm` subcommand."""
    (web,) = services(blueprint, "web")
    env = _render_env(blueprint, web, database_url, redis_url)
    checked = subprocess.run(
        ["bash", "-c", f"exec {web['startCommand']} --check-config"],
        cwd=ROOT, env={**env, "PATH": f"{Path(sys.executable).parent}:{env['PATH']}"}, capture_output=True, text=True, timeout=120,
    )
    assert checked.returncode == 0, checked.stderr[-3000:]

    commands = [web["preDeployCommand"]] + [s["startCommand"] for s in services(blueprint, "worker")]
    assert all(shlex.split(c)[:4] == ["flask", "--app", "wsgi", "crm"] for c in commands), commands
    # One interpreter asks flask's own CLI for each command's help: an unknown one exits 2.
    probe = (
        "import shlex, sys\n"
        "from flask.cli import cli\n"
        "for command in sys.argv[1:]:\n"
        "    try:\n"
        "        cli.main(args=shlex.split(command)[1:] + ['--help'], prog_name='flask')\n"
        "    except SystemExit as exc:\n"
        "        print(command, '->', exc.code, flush=True)\n"
    )
    (worker,) = [s for s in services(blueprint, "worker") if s["name"] == "crm-worker"]
    result = subprocess.run(
        [sys.executable, "-c", probe, *commands], cwd=ROOT, env=_render_env(blueprint, worker, database_url, redis_url),
        capture_output=True, text=True, timeout=120,
    )
    outcomes = [line for line in result.stdout.splitlines() if " -> " in line]
    assert outcomes == [f"{c} -> 0" for c in commands], result.stdout[-2000:] + result.stderr[-2000:]
    assert "Run an RQ worker" in result.stdout and "Consume the event topics" in result.stdout
    # The probe can fail: a command the CLI does not have.
    wrong = subprocess.run(
        [sys.executable, "-c", probe, "flask --app wsgi crm no-such-command"], cwd=ROOT,
        env=_render_env(blueprint, worker, database_url, redis_url), capture_output=True, text=True, timeout=120,
    )
    assert "-> 2" in wrong.stdout, wrong.stdout + wrong.stderr[-1000:]


def test_deploy_doc_covers_render_and_a_plain_host():
    """docs/deploy.md names the blueprint, the pre-deploy step and the systemd units it ships."""
    doc = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    assert "render.yaml" in doc and "crm init" in doc and "systemd" in doc
    units = sorted(p.name for p in (ROOT / "deploy" / "systemd").glob("*.service"))
    assert units == ["crm-consumer.service", "crm-stream.service", "crm-web.service", "crm-worker.service"]
    for unit in units:
        text = (ROOT / "deploy" / "systemd" / unit).read_text(encoding="utf-8")
        assert unit in doc and "EnvironmentFile=" in text and "ExecStart=" in text
