"""The Reports screen in Chromium: ask for a report, watch its row move from queued to ready
without reloading (crm/reports.js polls the status), download the file."""

import io
import uuid

import pytest
from openpyxl import load_workbook

pytestmark = pytest.mark.browser


def test_ask_watch_the_progress_and_download(app, browser_page, live_url, make, monkeypatch, redis_url, shot):
    import redis
    from rq import Queue, SimpleWorker

    from workers import runtime

    # Built by the RQ job on a queue of this test's own, so the page first shows it queued.
    name = f"crm_test_reports_browser_{uuid.uuid4().hex[:8]}"
    monkeypatch.setitem(app.config, "REPORT_RUNNER", "rq")
    monkeypatch.setitem(app.config, "RQ_QUEUE", name)
    tag = "b" + uuid.uuid4().hex[:8]
    customer = make.customer("sales", name=f"株式会社{tag}")
    page = browser_page("sales")
    page.goto(f"{live_url}/reports/")
    form = page.locator('form.crm-report-form[data-kind="customers"]')
    form.locator('input[name="q"]').fill(tag)
    with page.expect_navigation():
        form.locator("button[type=submit]").click()
    assert page.locator(".alert-success").count() >= 1
    run_id = page.url.rsplit("#run-", 1)[1]
    row = page.locator(f'tr.crm-report-run[data-id="{run_id}"]')
    assert row.get_attribute("data-status") == "QUEUED"
    assert row.locator(".progress-bar").get_attribute("data-progress") == "0"
    shot(page, "queued")

    conn = redis.Redis.from_url(redis_url)
    queue = Queue(name, connection=conn)
    previous = runtime._state.copy()
    runtime.set_app(app)
    try:
        SimpleWorker([queue], connection=conn).work(burst=True)
    finally:
        runtime._state.update(previous)
        queue.delete(delete_jobs=True)
    # The page's script hears of it: no reload.
    page.wait_for_selector(f'tr.crm-report-run[data-id="{run_id}"][data-status="DONE"] a.crm-report-download',
                           timeout=30_000)
    assert row.locator(".progress-bar").get_attribute("data-progress") == "100"
    shot(page, "ready")
    with page.expect_download() as info:
        row.locator("a.crm-report-download").click()
    book = load_workbook(io.BytesIO(open(info.value.path(), "rb").read()))
    assert [r[0].value for r in book.worksheets[0].iter_rows(min_row=2)] == [customer.name]
