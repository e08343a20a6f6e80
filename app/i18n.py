"""Screen translations: the .po catalogues under app/translations, compiled at start-up.

Only the sources are kept in the tree; each process compiles them (a few milliseconds)
into the instance folder, which Flask-Babel reads next to FAB's own catalogues.
"""

import os
import tempfile

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

def display_zone():
    """The time zone screens, exports and the dashboard show times in (DISPLAY_TIMEZONE)."""
    from zoneinfo import ZoneInfo

    from flask import current_app

    return ZoneInfo(current_app.config["DISPLAY_TIMEZONE"])


SOURCE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "translations")


def compile_catalogues(target_dir):
    """Compile every messages.po under app/translations into `target_dir`; return it."""
    for lang in sorted(os.listdir(SOURCE_DIR)):
        po_path = os.path.join(SOURCE_DIR, lang, "LC_MESSAGES", "messages.po")
        if not os.path.exists(po_path):
            continue
        out_dir = os.path.join(target_dir, lang, "LC_MESSAGES")
        os.makedirs(out_dir, exist_ok=True)
        with open(po_path, "rb") as fh:
            catalog = read_po(fh, locale=lang)
        # Write then rename, so concurrent workers never read a half-written file.
        fd, tmp = tempfile.mkstemp(dir=out_dir, suffix=".mo")
        with os.fdopen(fd, "wb") as fh:
            write_mo(fh, catalog)
        os.replace(tmp, os.path.join(out_dir, "messages.mo"))
    return target_dir


def init_app(app):
    """Compile the catalogues and point Flask-Babel at them (before FAB's BabelManager runs)."""
    target = compile_catalogues(os.path.join(app.instance_path, "translations"))
    existing = app.config.get("BABEL_TRANSLATION_DIRECTORIES")
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = f"{existing};{target}" if existing else target
