"""The attachments panel in Chromium: a Sales rep attaches a proposal to a customer, downloads it, deletes it."""

import pytest

from tests.test_attachments import PDF

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("attachment_storage", ["local"], indirect=True)
def test_a_rep_attaches_downloads_and_deletes_a_proposal(browser_page, live_url, make, attachment_storage, shot, tmp_path):
    customer = make.customer("sales")
    proposal = tmp_path / "提案書_ブラウザ.pdf"
    proposal.write_bytes(PDF)
    page = browser_page("sales")
    page.goto(f"{live_url}/customerview/show/{customer.id}")
    panel = page.locator(".attachments-panel")
    panel.locator("input[type=file]").set_input_files(str(proposal))
    panel.locator(".attachment-upload button[type=submit]").click()
    page.wait_for_load_state()
    link = page.locator(".attachments-panel .attachment-download", has_text="提案書_ブラウザ.pdf")
    link.wait_for(timeout=10_000)
    shot(page, "attachments-customer-page")
    with page.expect_download() as info:
        link.click()
    download = info.value
    assert download.suggested_filename == "提案書_ブラウザ.pdf"
    assert open(download.path(), "rb").read() == PDF
    page.locator(".attachments-panel .attachment-delete button").click()
    page.wait_for_load_state()
    page.locator(".attachments-panel .text-muted", has_text="").first.wait_for(timeout=10_000)
    assert page.locator(".attachments-panel .attachment").count() == 0
