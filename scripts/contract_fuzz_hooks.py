"""Schemathesis hooks for scripts/contract-fuzz.sh.

* Idempotency keys: the schema's pattern lets Schemathesis generate valid keys,
  but it generates the same short ones ("0", "A", ...) again and again, and the
  service answers a key reused with another body with 422. So a *valid* key that
  was already sent in this run is swapped for a fresh one (`fuzz-<n>`); invalid
  keys (the negative cases) and first uses are sent as generated.
* Other people: release orders need a second subject to approve (a proposer
  may not approve its own order: 403 `same-subject`) and a `bidder` to bid.
  Where a request carries the fuzz token (the configured credential), the
  operations below get the approver's token ($CONTRACT_FUZZ_APPROVER_TOKEN) or
  the bidder's ($CONTRACT_FUZZ_BIDDER_TOKEN, subject FUZZ-BIDDER, a buyer the
  script registers) instead. Requests without it, or with another credential
  (the authentication checks' own), are sent as generated.
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


_ORDER = "/api/v1/release-orders/{id}"
_APPROVER_OPERATIONS = {("POST", f"{_ORDER}/{a}") for a in ("approve", "reject", "notice", "award")}
_BIDDER_OPERATIONS = {("POST", f"{_ORDER}/bids"), ("GET", f"{_ORDER}/bids")}


def _swap_token(case, headers) -> None:
    fuzz = os.environ.get("CONTRACT_FUZZ_TOKEN")
    operation = (str(case.operation.method).upper(), case.operation.path)
    if operation in _APPROVER_OPERATIONS:
        other = os.environ.get("CONTRACT_FUZZ_APPROVER_TOKEN")
    elif operation in _BIDDER_OPERATIONS:
        other = os.environ.get("CONTRACT_FUZZ_BIDDER_TOKEN")
    else:
        return
    if not fuzz or not other:
        return
    for name in list(headers):
        if name.lower() == "authorization" and headers[name] == f"Bearer {fuzz}":
            headers[name] = f"Bearer {other}"


@schemathesis.hook
def before_call(context, case, kwargs):
    headers = case.headers
    if not headers:
        return
    _swap_token(case, headers)
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
