//! Slows down guessing: a client address that fails authentication (401), or
//! a subject that is refused (403), more than `auth.max_failures_per_minute`
//! times in a minute is answered 429 until that minute is over.
//!
//! Only the peer address counts, never X-Forwarded-For, which any client can
//! write; behind a reverse proxy every client shares the proxy's address, so
//! there set `auth.max_failures_per_minute = 0` (off) and throttle at the
//! proxy. `/healthz`, `/readyz` and `/metrics` are never throttled.
//!
//! Counting 403s per *verified* subject means nobody can lock another subject
//! out by sending tokens with that subject and a bad signature.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpMessage, ResponseError};

use crate::error::ApiError;
use crate::AppState;

const WINDOW: Duration = Duration::from_secs(60);
/// Hard cap on the addresses (or subjects) tracked at once. At the cap, expired
/// entries are swept first, then those still below the limit (they block
/// nobody), and if every entry is blocking, the oldest half: a flood of
/// distinct addresses can cost at most this many entries (about 1 MB), and it
/// evicts the counters that matter least first.
pub const MAX_TRACKED: usize = 10_000;

/// The verified subject of a request, left in its extensions by authentication.
#[derive(Debug, Clone)]
pub struct Subject(pub String);

#[derive(Debug)]
struct Counter {
    started: Instant,
    failures: u32,
}

#[derive(Debug)]
pub struct FailureThrottle {
    limit: u32,
    cap: usize,
    by_ip: Mutex<HashMap<IpAddr, Counter>>,
    by_subject: Mutex<HashMap<String, Counter>>,
}

impl FailureThrottle {
    pub fn new(limit: u32) -> Self {
        Self::with_cap(limit, MAX_TRACKED)
    }

    /// A throttle tracking at most `cap` addresses and `cap` subjects.
    pub fn with_cap(limit: u32, cap: usize) -> Self {
        Self {
            limit,
            cap: cap.max(1),
            by_ip: Mutex::default(),
            by_subject: Mutex::default(),
        }
    }

    /// Seconds left in the window when `key` has used up its failures.
    fn blocked<K, Q>(&self, map: &Mutex<HashMap<K, Counter>>, key: &Q) -> Option<u64>
    where
        K: Borrow<Q> + Hash + Eq,
        Q: Hash + Eq + ?Sized,
    {
        if self.limit == 0 {
            return None;
        }
        let map = map.lock().unwrap_or_else(|p| p.into_inner());
        let c = map.get(key)?;
        let elapsed = c.started.elapsed();
        (elapsed < WINDOW && c.failures >= self.limit).then(|| (WINDOW - elapsed).as_secs().max(1))
    }

    fn record<K: Hash + Eq>(&self, map: &Mutex<HashMap<K, Counter>>, key: K) {
        if self.limit == 0 {
            return;
        }
        let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.cap && !map.contains_key(&key) {
            self.make_room(&mut map);
        }
        let now = Instant::now();
        let c = map.entry(key).or_insert(Counter {
            started: now,
            failures: 0,
        });
        if c.started.elapsed() >= WINDOW {
            *c = Counter {
                started: now,
                failures: 0,
            };
        }
        c.failures += 1;
    }

    /// Brings a full map below its cap, evicting what matters least first.
    fn make_room<K: Hash + Eq>(&self, map: &mut HashMap<K, Counter>) {
        map.retain(|_, c| c.started.elapsed() < WINDOW);
        if map.len() >= self.cap {
            map.retain(|_, c| c.failures >= self.limit);
        }
        if map.len() >= self.cap {
            // Every entry is blocking: drop the oldest half, whose windows end first.
            let mut starts: Vec<Instant> = map.values().map(|c| c.started).collect();
            starts.sort_unstable();
            let cutoff = starts[starts.len() / 2];
            map.retain(|_, c| c.started > cutoff);
        }
    }

    pub fn check_subject(&self, subject: &str) -> Result<(), ApiError> {
        match self.blocked(&self.by_subject, subject) {
            Some(secs) => Err(ApiError::TooManyRequests(secs)),
            None => Ok(()),
        }
    }
}

pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, Error> {
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let ip = req.peer_addr().map(|a| a.ip());
    // Health checks need no token and must keep answering the orchestrator.
    let exempt = matches!(req.path(), "/healthz" | "/readyz" | "/metrics");
    if let (Some(state), Some(ip), false) = (&state, ip, exempt) {
        if let Some(secs) = state.throttle.blocked(&state.throttle.by_ip, &ip) {
            state.metrics.throttled_address.inc();
            let response = ApiError::TooManyRequests(secs).error_response();
            return Ok(req.into_response(response).map_into_right_body());
        }
    }
    let res = next.call(req).await?;
    if let Some(state) = &state {
        // Every refusal counts, whether the extractor or a handler's own
        // role or depot-scope check gave it.
        state.metrics.auth_failure(res.status().as_u16());
        match res.status().as_u16() {
            401 => {
                if let Some(ip) = ip {
                    state.throttle.record(&state.throttle.by_ip, ip);
                }
            }
            403 => {
                if let Some(Subject(s)) = res.request().extensions().get::<Subject>().cloned() {
                    state.throttle.record(&state.throttle.by_subject, s);
                }
            }
            _ => {}
        }
    }
    Ok(res.map_into_left_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_limit_within_a_window() {
        let t = FailureThrottle::new(3);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..2 {
            t.record(&t.by_ip, ip);
        }
        assert!(t.blocked(&t.by_ip, &ip).is_none());
        t.record(&t.by_ip, ip);
        assert!(t.blocked(&t.by_ip, &ip).is_some());
        assert!(t.blocked(&t.by_ip, &"127.0.0.2".parse().unwrap()).is_none());
        assert!(t.check_subject("alice").is_ok());
        t.record(&t.by_subject, "alice".to_string());
        assert!(t.check_subject("alice").is_ok());
    }

    #[test]
    fn a_limit_of_zero_turns_it_off() {
        let t = FailureThrottle::new(0);
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..5 {
            t.record(&t.by_ip, ip);
        }
        assert!(t.blocked(&t.by_ip, &ip).is_none());
        assert!(
            t.by_ip.lock().unwrap().is_empty(),
            "nothing is kept while off"
        );
    }

    #[test]
    fn the_map_never_grows_past_its_cap() {
        let t = FailureThrottle::with_cap(2, 4);
        let blocked: IpAddr = "10.0.0.1".parse().unwrap();
        t.record(&t.by_ip, blocked);
        t.record(&t.by_ip, blocked);
        // A flood of distinct addresses, each failing once.
        for i in 0..1000u32 {
            t.record(&t.by_ip, IpAddr::from(i.to_be_bytes()));
            assert!(t.by_ip.lock().unwrap().len() <= 4);
        }
        assert!(
            t.blocked(&t.by_ip, &blocked).is_some(),
            "an address that used up its failures is kept over ones that did not"
        );
        // Even when every tracked entry is blocking, the cap holds.
        for i in 0..1000u32 {
            let ip = IpAddr::from((i + 5000).to_be_bytes());
            t.record(&t.by_ip, ip);
            t.record(&t.by_ip, ip);
            assert!(t.by_ip.lock().unwrap().len() <= 4);
        }
        assert!(t
            .blocked(&t.by_ip, &IpAddr::from(5999u32.to_be_bytes()))
            .is_some());
    }
}
