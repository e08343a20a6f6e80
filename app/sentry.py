"""Error reports to Sentry (SENTRY_DSN set): web, worker and consumer, each from create_app.

Events carry the release (SENTRY_RELEASE, else the deployed commit) and the environment,
the request id (app/requestlog.py), the signed-in user's id and, in the relay and the
consumer, the event's id and type as tags. Nothing else about people leaves: no default
PII, no request bodies, no local variables of frames, and `scrub` (before_send) removes
passwords, tokens, Authorization and cookie values, and customers' e-mail addresses,
phone numbers and postal addresses wherever they appear in the event, keys or text.
"""

import re

from flask import g, has_request_context

from app.logs import current_event, request_id_var

FILTERED = "[Filtered]"
# Keys whose values never leave, in any part of the event (headers, form fields, extra, contexts).
SECRET_KEYS = re.compile(
    r"pass(word|wd)?|secret|token|auth|cookie|session|csrf|jwt|api[-_]?key|credential|dsn|"
    r"e-?mail|phone|(?<![a-z])tel(?![a-z])|mobile|(?<![a-z])fax(?![a-z])|address|postal|(?<![a-z])zip(?![a-z])",
    re.IGNORECASE,
)
# The same data inside free text (exception messages, log lines, SQL errors).
_TEXT = [
    (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), "[email]"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 " + FILTERED),
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"), FILTERED),  # a JWT
    (re.compile(r"(?<![\w-])(?:\+81[- ]?|0)\d{1,4}[- ]?\d{1,4}[- ]?\d{3,4}(?![\w-])"), "[phone]"),
    # SQLAlchemy's error text lists the statement's parameters (names, addresses): never sent.
    (re.compile(r"\[parameters: .*?(?=\n\(Background on this error|\Z)", re.DOTALL), "[parameters: " + FILTERED + "]"),
    (re.compile(r"(?i)\b(password|passwd|secret|token)=\S+"), r"\1=" + FILTERED),
]


def scrub_text(text):
    """`text` with e-mail addresses, phone numbers, bearer tokens, JWTs and SQL parameters replaced."""
    for pattern, replacement in _TEXT:
        text = pattern.sub(replacement, text)
    return text


def scrub(value, key=None):
    """A copy of `value` (an event or a part of it) with secrets and contact data removed."""
    if key is not None and isinstance(key, str) and SECRET_KEYS.search(key):
        return FILTERED
    if isinstance(value, dict):
        return {k: scrub(v, k) for k, v in value.items()}
    if isinstance(value, list):
        # Sentry sends headers and cookies as [name, value] pairs too.
        if len(value) == 2 and isinstance(value[0], str) and SECRET_KEYS.search(value[0]):
            return [value[0], FILTERED]
        return [scrub(v) for v in value]
    if isinstance(value, tuple):
        return tuple(scrub(list(value)))
    if isinstance(value, str):
        return scrub_text(value)
    return value


def _tags():
    tags = {}
    rid = request_id_var.get()
    if rid is not None:
        tags["request_id"] = rid
    event = current_event()
    if event is not None:
        tags.update({k: v for k, v in event.items() if v is not None})
    if has_request_context():
        user = g.get("user")
        if user is not None and getattr(user, "is_authenticated", False) and getattr(user, "id", None) is not None:
            tags["user_id"] = str(user.id)
    return tags


def before_send(event, _hint):
    """Tag the event with this context's request id, user and event; then scrub it (the installed packages' list aside)."""
    event.setdefault("tags", {})
    if isinstance(event["tags"], dict):
        event["tags"].update(_tags())
    modules = event.pop("modules", None)
    event = scrub(event)
    if modules is not None:
        event["modules"] = modules
    return event


def before_breadcrumb(crumb, _hint):
    """Breadcrumbs (earlier log lines) are scrubbed the same way."""
    return scrub(crumb)


def install(config):
    """Start the Sentry SDK for this process when SENTRY_DSN is set; return whether it did."""
    dsn = config["SENTRY_DSN"]
    if not dsn:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.flask import FlaskIntegration
    from sentry_sdk.integrations.rq import RqIntegration

    sentry_sdk.init(
        dsn=dsn,
        release=config["SENTRY_RELEASE"] or None,
        environment=config["SENTRY_ENVIRONMENT"],
        send_default_pii=False,
        include_local_variables=False,
        max_request_body_size="never",
        # Only what is named here: no query breadcrumbs or wrappers around every Redis call.
        auto_enabling_integrations=False,
        integrations=[FlaskIntegration(), RqIntegration()],
        before_send=before_send,
        before_breadcrumb=before_breadcrumb,
        traces_sample_rate=0,
    )
    return True
