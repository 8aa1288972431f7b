//! Idempotent writes (the IETF Idempotency-Key draft): the first successful
//! response to a (subject, key) is stored in the same transaction as the write it
//! describes. The same key with the same request replays that response and writes
//! nothing; with a different request it is refused (422); while the first request
//! is still running in this process the second gets 409.
//!
//! Refusals are not stored: a request refused for lack of stock may be retried
//! with the same key once stock has arrived.
//!
//! Records are kept for `idempotency.retention_days` (default 30), then purged:
//! that is the replay window.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, Mutex};

use actix_web::{http::StatusCode, HttpResponse};
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::db::schema::idempotency_records as rec;
use crate::db::{types, write_transaction, DbConn};
use crate::error::{ApiError, ApiResult};

/// A response as stored for replay.
#[derive(Debug, Clone)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
    pub replayed: bool,
}

impl StoredResponse {
    pub fn into_http(self) -> HttpResponse {
        let mut r =
            HttpResponse::build(StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK));
        r.content_type("application/json");
        if self.replayed {
            r.insert_header(("Idempotent-Replayed", "true"));
        }
        r.body(self.body)
    }
}

/// Fingerprint of a request: method, route and the canonical serialisation of
/// the parsed body, so whitespace or key order do not make "another" request.
pub fn fingerprint(method: &str, route: &str, body: &impl Serialize) -> String {
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update([0]);
    h.update(route.as_bytes());
    h.update([0]);
    h.update(serde_json::to_vec(body).unwrap_or_default());
    hex::encode(h.finalize())
}

/// The status a first response is stored with: fixed (`StatusCode::CREATED`),
/// or decided from the written value (201 for a new resource, 200 for one that
/// already existed).
pub trait StatusFor<T> {
    fn status_for(&self, value: &T) -> StatusCode;
}

impl<T> StatusFor<T> for StatusCode {
    fn status_for(&self, _: &T) -> StatusCode {
        *self
    }
}

impl<T, F: Fn(&T) -> StatusCode> StatusFor<T> for F {
    fn status_for(&self, value: &T) -> StatusCode {
        self(value)
    }
}

enum TxError {
    Api(ApiError),
    KeyTaken,
}

impl From<DieselError> for TxError {
    fn from(e: DieselError) -> Self {
        TxError::Api(e.into())
    }
}

impl From<ApiError> for TxError {
    fn from(e: ApiError) -> Self {
        TxError::Api(e)
    }
}

/// Runs `write` once per (subject, key) inside a write transaction, storing its
/// response with it. A stored response is replayed at once; a key whose first
/// request is still running in this process answers 409.
///
/// The key is claimed before anything is written: the transaction first takes
/// a lock on (subject, key), then looks for a stored response, and only then
/// writes. A request racing the same key on another replica therefore waits
/// for the first to commit and replays its response; it never runs the write
/// against the first one's effects (which would answer, say, 409 insufficient
/// stock to a request that in fact succeeded).
pub fn run<T, F>(
    conn: &mut DbConn,
    in_flight: &InFlight,
    subject: &str,
    key: &str,
    request_hash: &str,
    status: impl StatusFor<T>,
    write: F,
) -> ApiResult<StoredResponse>
where
    T: Serialize,
    F: FnOnce(&mut DbConn) -> ApiResult<T>,
{
    // Fast path: a replay needs no write lock.
    if let Some(found) = lookup(conn, subject, key, request_hash)? {
        return Ok(found);
    }
    let _running = in_flight.claim(subject, key)?;
    run_claimed(
        conn,
        KeyCheck::LockAndLook,
        subject,
        key,
        request_hash,
        status,
        write,
    )
}

/// What the open transaction already did about a claimed key when
/// `run_claimed` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyCheck {
    /// Nothing yet: lock (subject, key), then look for a stored response.
    LockAndLook,
    /// Locked by this transaction and, under that lock, seen to have no
    /// stored response (group commit: `ledger::group` locks and looks up all
    /// its members' keys at once). Sends neither the lock nor the lookup.
    LockedUnrecorded,
}

/// The write of `run` once the key is claimed in this process: one write
/// transaction that (per `check`) locks (subject, key) and looks for a
/// stored response, and only then writes and stores its response. Inside an
/// open write transaction it is a savepoint of it (group commit,
/// `ledger::group`): a refusal then rolls back this write alone.
pub fn run_claimed<T, F>(
    conn: &mut DbConn,
    check: KeyCheck,
    subject: &str,
    key: &str,
    request_hash: &str,
    status: impl StatusFor<T>,
    write: F,
) -> ApiResult<StoredResponse>
where
    T: Serialize,
    F: FnOnce(&mut DbConn) -> ApiResult<T>,
{
    let result = write_transaction(conn, |c| -> Result<StoredResponse, TxError> {
        if check == KeyCheck::LockAndLook {
            crate::db::lock_key_for_transaction(c, key_lock(subject, key))?;
            // The first request may have committed while this one waited.
            if let Some(found) = lookup(c, subject, key, request_hash)? {
                return Ok(found);
            }
        }
        let value = write(c)?;
        let status = status.status_for(&value);
        let body = serde_json::to_string(&value).map_err(ApiError::internal)?;
        let inserted = diesel::insert_into(rec::table)
            .values((
                rec::subject.eq(subject),
                rec::idempotency_key.eq(key),
                rec::request_hash.eq(request_hash),
                rec::response_status.eq(status.as_u16() as i32),
                rec::response_body.eq(&body),
                rec::created_at.eq(types::to_db(types::now())),
            ))
            .execute(c);
        match inserted {
            Ok(_) => Ok(StoredResponse {
                status: status.as_u16(),
                body,
                replayed: false,
            }),
            // Cannot happen while every writer claims the key first; if it
            // does, undo ours and replay theirs rather than answer twice.
            Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => {
                Err(TxError::KeyTaken)
            }
            Err(e) => Err(e.into()),
        }
    });
    match result {
        Ok(r) => Ok(r),
        Err(TxError::Api(e)) => Err(e),
        Err(TxError::KeyTaken) => lookup(conn, subject, key, request_hash)?
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("idempotency record vanished"))),
    }
}

/// The advisory-lock key of (subject, key): the first 8 bytes of a SHA-256,
/// so distinct pairs collide only by chance (and then merely wait in turn).
pub(crate) fn key_lock(subject: &str, key: &str) -> i64 {
    let mut h = Sha256::new();
    h.update(b"idempotency\0");
    h.update(subject.as_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    let digest = h.finalize();
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// Deletes records older than `retention`: past it, a retried request with an
/// old key runs again instead of replaying. Returns how many were deleted.
pub fn purge_expired(conn: &mut DbConn, retention: chrono::Duration) -> ApiResult<usize> {
    let cutoff = types::to_db(types::now() - retention);
    Ok(diesel::delete(rec::table.filter(rec::created_at.lt(cutoff))).execute(conn)?)
}

/// The stored response of (subject, key), if any: `IdempotencyKeyReused`
/// when it was stored for a different request.
pub fn lookup(
    conn: &mut DbConn,
    subject: &str,
    key: &str,
    request_hash: &str,
) -> ApiResult<Option<StoredResponse>> {
    let found: Option<(String, i32, String)> = rec::table
        .filter(rec::subject.eq(subject))
        .filter(rec::idempotency_key.eq(key))
        .select((rec::request_hash, rec::response_status, rec::response_body))
        .first(conn)
        .optional()?;
    found.map(|f| replay(f, request_hash)).transpose()
}

/// A stored (request_hash, status, body), as answered to a request with
/// `request_hash`: its replay, or `IdempotencyKeyReused` when it was stored
/// for a different request.
pub fn replay((hash, status, body): Stored, request_hash: &str) -> ApiResult<StoredResponse> {
    if hash != request_hash {
        return Err(ApiError::IdempotencyKeyReused);
    }
    Ok(StoredResponse {
        status: status as u16,
        body,
        replayed: true,
    })
}

/// A stored response as read: (request_hash, status, body).
pub type Stored = (String, i32, String);

/// The stored response of each of `pairs` (subject, key) that has one, in
/// one statement (group commit).
pub fn lookup_all(
    conn: &mut DbConn,
    pairs: &BTreeSet<(String, String)>,
) -> ApiResult<BTreeMap<(String, String), Stored>> {
    let subjects: BTreeSet<&str> = pairs.iter().map(|(s, _)| s.as_str()).collect();
    let keys: BTreeSet<&str> = pairs.iter().map(|(_, k)| k.as_str()).collect();
    let rows: Vec<(String, String, String, i32, String)> = rec::table
        .filter(rec::subject.eq_any(subjects))
        .filter(rec::idempotency_key.eq_any(keys))
        .select((
            rec::subject,
            rec::idempotency_key,
            rec::request_hash,
            rec::response_status,
            rec::response_body,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter(|(s, k, ..)| pairs.contains(&(s.clone(), k.clone())))
        .map(|(s, k, h, st, b)| ((s, k), (h, st, b)))
        .collect())
}

/// Keys whose first request is still running in this process.
#[derive(Debug, Default, Clone)]
pub struct InFlight(Arc<Mutex<HashSet<(String, String)>>>);

/// Releases its key when dropped, whether the request succeeded, failed or was
/// cancelled by a disconnecting client.
pub struct InFlightGuard {
    set: InFlight,
    entry: (String, String),
}

impl InFlight {
    pub fn claim(&self, subject: &str, key: &str) -> ApiResult<InFlightGuard> {
        let entry = (subject.to_string(), key.to_string());
        let mut set = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !set.insert(entry.clone()) {
            return Err(ApiError::IdempotencyKeyInFlight);
        }
        Ok(InFlightGuard {
            set: self.clone(),
            entry,
        })
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut set = self.set.0.lock().unwrap_or_else(|p| p.into_inner());
        set.remove(&self.entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_differ_by_route_and_body() {
        let a = fingerprint("POST", "/a", &serde_json::json!({"q": "1"}));
        assert_eq!(a, fingerprint("POST", "/a", &serde_json::json!({"q": "1"})));
        assert_ne!(a, fingerprint("POST", "/b", &serde_json::json!({"q": "1"})));
        assert_ne!(a, fingerprint("POST", "/a", &serde_json::json!({"q": "2"})));
    }

    #[test]
    fn a_key_in_flight_is_refused_until_released() {
        let f = InFlight::default();
        let g = f.claim("alice", "k1").unwrap();
        assert!(matches!(
            f.claim("alice", "k1"),
            Err(ApiError::IdempotencyKeyInFlight)
        ));
        assert!(f.claim("bob", "k1").is_ok(), "keys are per subject");
        drop(g);
        assert!(f.claim("alice", "k1").is_ok());
    }
}
