//! Slows down guessing: a client address that fails authentication (401), or
//! a subject that is refused (403), more than `auth.max_failures_per_minute`
//! times in a minute is answered 429 until that minute is over.
//!
//! Only the peer address counts, never X-Forwarded-For, which any client can
//! write; behind a reverse proxy every client shares the proxy's address, so
//! there set `auth.max_failures_per_minute = 0` (off) and throttle at the
//! proxy. `/healthz` and `/readyz` are never throttled. Counting 403s per *verified* subject means nobody can lock another
//! subject out by sending tokens with that subject and a bad signature.

use std::collections::HashMap;
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
/// Entries kept before expired ones are swept, bounding memory under a flood
/// of distinct addresses.
const SWEEP_AT: usize = 10_000;

/// The verified subject of a request, left in its extensions by authentication.
#[derive(Debug, Clone)]
pub struct Subject(pub String);

#[derive(Debug, Default)]
struct Counter {
    started: Option<Instant>,
    failures: u32,
}

#[derive(Debug)]
pub struct FailureThrottle {
    limit: u32,
    by_ip: Mutex<HashMap<IpAddr, Counter>>,
    by_subject: Mutex<HashMap<String, Counter>>,
}

impl FailureThrottle {
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            by_ip: Mutex::default(),
            by_subject: Mutex::default(),
        }
    }

    fn blocked<K: std::hash::Hash + Eq>(
        &self,
        map: &Mutex<HashMap<K, Counter>>,
        key: &K,
    ) -> Option<u64> {
        let map = map.lock().unwrap_or_else(|p| p.into_inner());
        let c = map.get(key)?;
        let started = c.started?;
        let elapsed = started.elapsed();
        (elapsed < WINDOW && c.failures >= self.limit).then(|| (WINDOW - elapsed).as_secs().max(1))
    }

    fn record<K: std::hash::Hash + Eq>(map: &Mutex<HashMap<K, Counter>>, key: K) {
        let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= SWEEP_AT {
            map.retain(|_, c| c.started.is_some_and(|s| s.elapsed() < WINDOW));
        }
        let c = map.entry(key).or_default();
        if c.started.is_none_or(|s| s.elapsed() >= WINDOW) {
            *c = Counter {
                started: Some(Instant::now()),
                failures: 0,
            };
        }
        c.failures += 1;
    }

    pub fn check_subject(&self, subject: &str) -> Result<(), ApiError> {
        match self.blocked(&self.by_subject, &subject.to_string()) {
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
    let exempt = matches!(req.path(), "/healthz" | "/readyz");
    if let (Some(state), Some(ip), false) = (&state, ip, exempt) {
        if let Some(secs) = state.throttle.blocked(&state.throttle.by_ip, &ip) {
            let response = ApiError::TooManyRequests(secs).error_response();
            return Ok(req.into_response(response).map_into_right_body());
        }
    }
    let res = next.call(req).await?;
    if let Some(state) = &state {
        match res.status().as_u16() {
            401 => {
                if let Some(ip) = ip {
                    FailureThrottle::record(&state.throttle.by_ip, ip);
                }
            }
            403 => {
                if let Some(Subject(s)) = res.request().extensions().get::<Subject>().cloned() {
                    FailureThrottle::record(&state.throttle.by_subject, s);
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
            FailureThrottle::record(&t.by_ip, ip);
        }
        assert!(t.blocked(&t.by_ip, &ip).is_none());
        FailureThrottle::record(&t.by_ip, ip);
        assert!(t.blocked(&t.by_ip, &ip).is_some());
        assert!(t.blocked(&t.by_ip, &"127.0.0.2".parse().unwrap()).is_none());
        assert!(t.check_subject("alice").is_ok());
    }
}
