"""Log an outage once per interval instead of once per attempt."""

import logging
import threading
import time

_last = {}
_lock = threading.Lock()


def log_throttled(logger, key, interval, message, *args, level=logging.WARNING):
    """Log `message` under `key` at most once every `interval` seconds; return whether it logged."""
    now = time.monotonic()
    with _lock:
        if now - _last.get(key, -1e9) < interval:
            return False
        _last[key] = now
    logger.log(level, message, *args)
    return True


def reset(key):
    """Forget `key`, so the next outage of that kind logs at once (after recovery)."""
    with _lock:
        _last.pop(key, None)
