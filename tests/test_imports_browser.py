"""The import screen in Chromium: upload a Shift_JIS CSV, check the suggested mapping, preview its errors, run it
with the progress bar moving, read the result, undo it."""

import csv
import io

import pytest
import sqlalchemy as sa

from models import Customer
from tests.helpers import unique_tag, watch_console

pytestmark = pytest.mark.browser

ROWS = 30


def test_upload_map_preview_run_with_progress_and_undo(app, browser_page, live_url, db, users, shot, monkeypatch, tmp_path):
    # The live server is this app: its import jobs run in a thread, slowed so the bar is seen moving.
    for key, value in {"IMPORT_RUNNER": "thread", "IMPORT_BATCH_SIZE": 5, "IMPORT_FAULT_PAUSE_AFTER_BATCH": 0.4}.items():
        monkeypatch.setitem(app.config, key, value)
    tag = unique_tag("br")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(["顧客名", "メールアドレス", "電話番号", "備考"])
    for i in range(ROWS):
        writer.writerow([f"株式会社{tag}{i:02d}", f"{tag}-{i}@example.jp", f"03-0000-{i:04d}", ""])
    writer.writerow(["", "壊れた行", "", ""])
    path = tmp_path / "顧客一覧.csv"
    path.write_bytes(buf.getvalue().encode("cp932"))

    page = browser_page("sales")
    errors = watch_console(page)
    page.goto(f"{live_url}/")
    page.click(".navbar a.dropdown-toggle:has-text('営業'), .navbar a.dropdown-toggle:has-text('Sales')")
    with page.expect_navigation():
        page.click(".navbar .dropdown-menu a[href='/imports/']")
    page.select_option("#import-kind", "customers")
    page.set_input_files("#import-file", str(path))
    with page.expect_navigation():
        page.click(".crm-import-upload-button")
    # Mapping step: the Japanese headers are already mapped to their fields.
    assert page.locator("#map-name").input_value() == "0"
    assert page.locator("#map-email").input_value() == "1"
    assert page.locator("#map-phone").input_value() == "2"
    shot(page, "mapping")
    with page.expect_navigation():
        page.click(".crm-import-map-button")
    # Preview: the broken last row is not among the first rows; the preview shows rows and their result.
    assert page.locator(".crm-import-preview-row").count() == app.config["IMPORT_PREVIEW_ROWS"]
    assert page.locator(".crm-import-preview-row[data-outcome=created]").count() == app.config["IMPORT_PREVIEW_ROWS"]
    shot(page, "preview")
    with page.expect_navigation():
        page.click(".crm-import-start-button")
    # Running: the bar's value moves from one batch to the next before the run ends.
    page.wait_for_selector(".crm-import-bar")
    page.wait_for_function(
        f"() => {{ const b = document.querySelector('.crm-import-bar'); const v = b && Number(b.getAttribute('aria-valuenow'));"
        f" return v > 0 && v < {ROWS + 1}; }}", timeout=60_000)
    first = int(page.locator(".crm-import-bar").get_attribute("aria-valuenow"))
    shot(page, "progress")
    page.wait_for_function(
        f"() => {{ const b = document.querySelector('.crm-import-bar');"
        f" return !b || Number(b.getAttribute('aria-valuenow')) > {first}; }}", timeout=60_000)
    # Finished: the page reloads to the counts, the report and the undo button.
    page.wait_for_selector(".crm-import-counts", timeout=60_000)
    assert page.locator(".crm-import-created").inner_text() == str(ROWS)
    assert page.locator(".crm-import-rejected").inner_text() == "1"
    with page.expect_download() as download:
        page.click(".crm-import-report")
    report = download.value.path().read_bytes().decode("utf-8-sig")
    assert "rejected" in report and "name is required" in report
    shot(page, "done")
    db.session.rollback()
    made = db.session.execute(sa.select(Customer).where(Customer.name.like(f"%{tag}%"))).scalars().all()
    assert len(made) == ROWS and {c.assigned_sales_id for c in made} == {users["sales"].id}
    with page.expect_navigation():
        page.click(".crm-import-undo button[type=submit]")
    assert page.locator(".crm-import-status").get_attribute("data-status") == "undone"
    assert page.locator(".crm-import-undo").count() == 0
    shot(page, "undone")
    db.session.rollback()
    live = db.session.execute(sa.select(sa.func.count()).select_from(Customer).where(
        Customer.name.like(f"%{tag}%"), Customer.deleted_at.is_(None))).scalar()
    assert live == 0
    assert errors == []
