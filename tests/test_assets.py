"""The screens' front-end libraries are served by the app itself (`make assets` vendors them from npm)."""

import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENDORED = {
    "chart.umd.min.js": "chart.js",
    "fullcalendar.global.min.js": "fullcalendar",
    "fullcalendar-ja.global.min.js": "fullcalendar",
    "tom-select.complete.min.js": "tom-select",
    "tom-select.bootstrap4.min.css": "tom-select",
}


@pytest.mark.parametrize("name", sorted(VENDORED))
def test_vendored_library_is_served_locally(client, name):
    """Each library answers from /static/vendor with a script or style type, never a CDN's address."""
    resp = client.get(f"/static/vendor/{name}")
    assert resp.status_code == 200, f"run `make assets` ({name} missing)"
    assert resp.mimetype in ("text/javascript", "application/javascript", "text/css")
    assert len(resp.data) > 300


def test_vendored_versions_are_the_pinned_ones():
    """What `make assets` copied comes from the versions package.json pins (npm ci from the lock file)."""
    with open(os.path.join(ROOT, "package.json"), encoding="utf-8") as fh:
        pinned = json.load(fh)["dependencies"]
    for package in set(VENDORED.values()):
        with open(os.path.join(ROOT, "node_modules", package, "package.json"), encoding="utf-8") as fh:
            assert json.load(fh)["version"] == pinned[package], package
