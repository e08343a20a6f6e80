#!/usr/bin/env bash
# Copy the front-end libraries pinned in package.json / package-lock.json (installed by
# `npm ci` into node_modules/) to app/static/vendor/, where the screens load them from.
# Nothing is fetched at run time and nothing here is committed: `make assets` rebuilds it.
set -euo pipefail
cd "$(dirname "$0")/.."
src=node_modules
out=app/static/vendor
rm -rf "$out"
mkdir -p "$out"
copy() { install -m 0644 "$src/$1" "$out/$2"; }
copy chart.js/dist/chart.umd.min.js chart.umd.min.js
copy fullcalendar/index.global.min.js fullcalendar.global.min.js
copy @fullcalendar/core/locales/ja.global.min.js fullcalendar-ja.global.min.js
copy tom-select/dist/js/tom-select.complete.min.js tom-select.complete.min.js
copy tom-select/dist/css/tom-select.bootstrap4.min.css tom-select.bootstrap4.min.css
# Each library's licence travels with its files.
for pkg in chart.js fullcalendar tom-select; do
  install -m 0644 "$src/$pkg/LICENSE"* "$out/LICENSE.$(basename "$pkg")" 2>/dev/null || true
done
echo "Front-end libraries copied to $out"
