"""Flask extensions, created once and bound to an app in create_app()."""

from flask_appbuilder.models.sqla.base import SQLA
from flask_caching import Cache
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_migrate import Migrate
from flask_wtf.csrf import CSRFProtect

db = SQLA()
# Batch mode lets SQLite alter tables; compare_type catches column type drift.
migrate = Migrate(render_as_batch=True, compare_type=True)
cache = Cache()
limiter = Limiter(key_func=get_remote_address, default_limits=[])
# Every screen POST carries the form's token; bearer-token APIs are exempt (views/api, FAB's BaseApi).
csrf = CSRFProtect()
