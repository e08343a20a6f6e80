"""Links in notifications: relative paths of this app, and the one list of the valid prefixes.

A notification's link is shown to its user and sent by e-mail, so it may only point inside
this application: a relative path (no scheme, no host, no `//`, no `..`), starting with
one of LINK_PREFIXES and ending in an id. Every link is built by the functions below and
checked by `check` before a notification is stored, whatever the event said.

Links open screens, never JSON: a link to an /api answer (written before the links moved,
or carried by an event still waiting in the outbox) is turned into its screen's link by
`check` (LEGACY_PREFIXES); stored rows were rewritten by a data migration.
"""

import posixpath
import re
from urllib.parse import urlsplit

#: Where a notification may send its reader: the screens of its records.
LINK_PREFIXES = (
    "/approvalrequestview/show/",
    "/taskview/show/",
    "/meetingview/show/",
    "/customerview/show/",
    "/approvals/pending/",
    "/approvals/mine/",
    "/reports/download/",  # reports: "your report is ready"
)
#: The /api answers a link once pointed at, and the screen of the same record.
LEGACY_PREFIXES = {
    "/api/approvals/": "/approvalrequestview/show/",
    "/api/tasks/": "/taskview/show/",
    "/api/meetings/": "/meetingview/show/",
    "/api/customers/": "/customerview/show/",
}
MAX_LENGTH = 500
_TAIL = re.compile(r"[A-Za-z0-9-]{0,64}")


class InvalidLink(ValueError):
    """A link that does not lead to a page of this application."""


def check(link):
    """Return `link` (an /api link as its screen's) if it is a relative path of this app under an allowed prefix, else raise InvalidLink."""
    if link is None or link == "":
        return None
    if not isinstance(link, str) or len(link) > MAX_LENGTH:
        raise InvalidLink("link must be a relative path of this application")
    if any(ch.isspace() or ord(ch) < 32 or ch == "\\" for ch in link) or link.startswith("//"):
        raise InvalidLink("link must be a relative path of this application")
    parts = urlsplit(link)
    if parts.scheme or parts.netloc or parts.query or parts.fragment or not link.startswith("/"):
        raise InvalidLink("link must be a relative path of this application, without scheme, host or query")
    if posixpath.normpath(link) != link.rstrip("/") or "//" in link:
        raise InvalidLink("link must be a plain path (no '.', '..' or empty segments)")
    for old, new in LEGACY_PREFIXES.items():
        if link.startswith(old) and _TAIL.fullmatch(link[len(old):]):
            return new + link[len(old):]
    for prefix in LINK_PREFIXES:
        if link.startswith(prefix) and _TAIL.fullmatch(link[len(prefix):]):
            return link
    raise InvalidLink(f"link must lead to one of this application's pages ({', '.join(LINK_PREFIXES)})")


def approval(request_id):
    """The screen of an approval request."""
    return check(f"/approvalrequestview/show/{request_id}")


def task(task_id):
    """The screen of a task."""
    return check(f"/taskview/show/{task_id}")


def meeting(meeting_id):
    """The screen of a meeting."""
    return check(f"/meetingview/show/{meeting_id}")
