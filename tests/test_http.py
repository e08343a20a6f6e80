"""app/http.py: the session interface (the security headers and CORS are tested with the /api errors)."""

from flask import session

from app.http import CookieSessions


def test_no_cookie_no_signer_and_an_empty_session(app, monkeypatch):
    """A request without a session cookie gets an empty session without building the signer; one with a cookie is read."""
    interface = app.session_interface
    assert isinstance(interface, CookieSessions)
    built = []
    real = CookieSessions.get_signing_serializer

    def counting(self, application):
        built.append(1)
        return real(self, application)

    monkeypatch.setattr(CookieSessions, "get_signing_serializer", counting)
    with app.test_request_context("/api/customers"):
        assert dict(session) == {} and built == []
    with app.test_request_context("/"):
        session["locale"] = "ja"
        cookie = real(interface, app).dumps(dict(session))
    with app.test_request_context("/", headers={"Cookie": f"{interface.get_cookie_name(app)}={cookie}"}):
        assert session.get("locale") == "ja" and built == [1]
