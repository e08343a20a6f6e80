"""The CRM application factory."""

from flask import Flask, jsonify
from flask_appbuilder import AppBuilder
from sqlalchemy.orm import Session
from werkzeug.middleware.proxy_fix import ProxyFix

from app.jsonio import OrjsonProvider
from config import config_for_env


def create_app(config_class=None):
    """Build the Flask app: config, extensions, FAB security, screens and APIs."""
    config_class = config_class or config_for_env()
    app = Flask(__name__, instance_relative_config=True)
    app.json = OrjsonProvider(app)
    app.config.from_object(config_class)
    # Only the test config has a default; the others read or create theirs, or refuse to start.
    app.config["SECRET_KEY"] = config_class.secret_key()
    # X-Forwarded-For / -Proto are anyone's to send: believed only from the configured
    # number of proxies in front (0 by default), or a client picks the IP that audit rows
    # and rate limits see.
    hops = int(app.config["TRUSTED_PROXY_COUNT"])
    if hops > 0:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)
    from app import logs, sentry

    logs.configure(app.config)
    sentry.install(app.config)

    from app import audit, caching, dbpool, delivery, events, i18n, pagination, tokens
    from app.extensions import cache, csrf, db, limiter, migrate

    audit.install(Session)
    tokens.install_listeners(Session)
    caching.install(Session)
    events.install(Session)
    delivery.install(Session)
    pagination.install()
    # bell: committed notifications reach the open bells (app/live.py)
    from app import live

    live.install(Session)
    from app.services import screening

    screening.install(Session)  # meeting notes screened at every write (docs/compliance.md)

    # FAB keeps a per-app registry of views, so each app gets its own AppBuilder.
    appbuilder = AppBuilder(update_perms=app.config["FAB_UPDATE_PERMS"])
    with app.app_context():
        import models  # noqa: F401  (registers every table on Model.metadata)

        db.init_app(app)
        for engine in db.engines.values():
            dbpool.install(engine, app.config["DB_PING_IDLE_SECONDS"])
        migrate.init_app(app, db, directory=app.config["MIGRATIONS_DIR"])
        cache.init_app(app)
        i18n.init_app(app)
        limiter.init_app(app)
        # Before FAB's views: FAB exempts each BaseApi blueprint it creates once the extension exists,
        # and ModelView.delete refuses a GET only when it does.
        csrf.init_app(app)
        appbuilder.init_app(app, db.session)

        from views import register_views

        register_views(appbuilder)

        from views.api import init_api

        init_api(app, appbuilder)

    from app import metrics, requestlog

    # Outermost WSGI layers, so both see the cache hits answered before Flask: the metrics'
    # timing, then around it the request id and the request's log line.
    metrics.install(app)
    requestlog.install(app)

    from app.cli import crm_cli

    app.cli.add_command(crm_cli)

    @app.get("/health")
    def health():
        """Liveness: the process answers."""
        return jsonify(status="ok")

    return app
