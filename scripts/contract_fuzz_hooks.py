"""Schemathesis hooks for scripts/contract-fuzz.sh.

* Idempotency keys: the schema's pattern lets Schemathesis generate valid keys,
  but it generates the same short ones ("0", "A", ...) again and again, and the
  service answers a key reused with another body with 422. So a *valid* key that
  was already sent in this run is swapped for a fresh one (`fuzz-<n>`); invalid
  keys (the negative cases) and first uses are sent as generated.
* Request count: every request actually sent is counted, and the total (then
  the count by status code) is written to $CONTRACT_FUZZ_COUNT_FILE when
  Schemathesis exits.
"""

import atexit
import collections
import os
import re
import threading

import schemathesis

# Mirrors parse_idempotency_key in src/http/mod.rs (and the pattern in openapi.yaml).
_VALID_KEY = re.compile(r'^(?:[!#-~][!-~]{0,199}|"[!-~]{1,200}"|"(?:[!-~]{0,198}[!#-~])?)$')

_lock = threading.Lock()
_seen_keys: set[str] = set()
_requests = 0
_statuses: collections.Counter = collections.Counter()


def _normalised(key: str) -> str:
    if len(key) >= 2 and key.startswith('"') and key.endswith('"'):
        return key[1:-1]
    return key


@schemathesis.hook
def before_call(context, case, kwargs):
    headers = case.headers
    if not headers:
        return
    for name in list(headers):
        if name.lower() != "idempotency-key":
            continue
        value = headers[name]
        if not isinstance(value, str) or not _VALID_KEY.match(value):
            continue
        with _lock:
            key = _normalised(value)
            if key in _seen_keys:
                # Numbered rather than random, so that a run replays exactly.
                n = len(_seen_keys)
                while f"fuzz-{n}" in _seen_keys:
                    n += 1
                key = f"fuzz-{n}"
                headers[name] = key
            _seen_keys.add(key)


@schemathesis.hook
def after_call(context, case, response):
    global _requests
    with _lock:
        _requests += 1
        _statuses[response.status_code] += 1


def _write_count() -> None:
    path = os.environ.get("CONTRACT_FUZZ_COUNT_FILE")
    if path:
        with open(path, "w", encoding="ascii") as f:
            f.write(f"{_requests}\n")
            f.write(" ".join(f"{code}:{n}" for code, n in sorted(_statuses.items())) + "\n")


atexit.register(_write_count)
