#!/usr/bin/env bash
# Serve the CRM on its embedded default: SQLite under instance/, demo data on first start.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
PORT=${PORT:-8080}
mkdir -p instance
export CRM_ENV=${CRM_ENV:-development}
# No SECRET_KEY: the development config uses (and first creates, mode 0600) instance/secret_key,
# a random secret of this checkout, so sessions survive restarts and CLI commands share it.
"$BIN/flask" --app wsgi crm init
"$BIN/flask" --app wsgi crm seed-demo --if-empty
echo
echo "CRM: http://127.0.0.1:${PORT}/   (API docs: http://127.0.0.1:${PORT}/swagger/v1)"
echo "Demo logins (password ${DEMO_PASSWORD:-demo-pass-2026}): admin@, manager@, compliance@, sales@, sales2@example.com"
echo
# One process with threads: without Redis, token revocations, rate-limit counters and the
# cache live in process memory, so every request must see the same process.
exec "$BIN/gunicorn" --workers "${WEB_CONCURRENCY:-1}" --threads "${WEB_THREADS:-4}" --bind "127.0.0.1:${PORT}" wsgi:app
