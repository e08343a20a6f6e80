"""Process-wide memos with a cap: the one way this app remembers computed things in memory.

Each memo is a plain dict owned by its module (tests may swap it for a fresh one). When a
memo reaches its cap it is emptied and refilled: the keys are few in normal use (statement
shapes, query strings, permission sets), so a full memo means something generates keys
without bound, and forgetting everything is cheaper and safer than tracking recency.
Reads are plain `dict.get` calls (atomic under the GIL); writes take one lock.
"""

import threading

_lock = threading.Lock()


def remember(memo, key, value, cap):
    """Store `value` under `key` in `memo` (emptied first when it holds `cap` entries); return `value`."""
    with _lock:
        if len(memo) >= cap:
            memo.clear()
        memo[key] = value
    return value


def recall(memo, key, make, cap):
    """Return `memo[key]`, computing it with `make()` and remembering it when absent."""
    found = memo.get(key)
    if found is None:
        found = remember(memo, key, make(), cap)
    return found
