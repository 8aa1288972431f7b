//! Request counts and latency per route pattern, method and status.
//!
//! The route label is the pattern actix matched (`/api/v1/depots/{code}`),
//! never the raw path, and `unmatched` for a path no route has: label
//! cardinality is bounded by the route table. Methods outside the usual seven
//! are counted as `OTHER`, and statuses outside the registered codes as
//! `other`, for the same reason.

use std::collections::HashMap;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, Error};

use super::text::Exposition;
use super::Counter;
use crate::AppState;

/// The route label of requests that matched no route.
pub const UNMATCHED: &str = "unmatched";

const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER",
];

/// Upper bounds of the latency buckets, in seconds (Prometheus' defaults).
pub const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Registered HTTP status codes (RFC 9110 and friends); anything else is
/// counted under `other`.
const STATUSES: [u16; 61] = [
    100, 101, 102, 103, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304,
    305, 307, 308, 400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415,
    416, 417, 418, 421, 422, 423, 424, 425, 426, 428, 429, 431, 451, 500, 501, 502, 503, 504, 505,
    506, 507, 508, 511,
];

/// The series of one (route, method).
#[derive(Debug)]
struct Series {
    /// Per `STATUSES` slot, plus one for `other`.
    statuses: Vec<Counter>,
    /// Non-cumulative: a request counts in the first bucket it fits.
    buckets: [Counter; BUCKETS.len()],
    count: Counter,
    sum_micros: Counter,
}

impl Series {
    fn new() -> Self {
        Series {
            statuses: (0..=STATUSES.len()).map(|_| Counter::default()).collect(),
            buckets: Default::default(),
            count: Counter::default(),
            sum_micros: Counter::default(),
        }
    }

    fn observe(&self, status: u16, micros: u64) {
        let slot = STATUSES.binary_search(&status).unwrap_or(STATUSES.len());
        self.statuses[slot].inc();
        let seconds = micros as f64 / 1e6;
        if let Some(b) = BUCKETS.iter().position(|le| seconds <= *le) {
            self.buckets[b].inc();
        }
        self.count.inc();
        self.sum_micros.add(micros);
    }
}

/// Every (route, method) series, allocated once.
#[derive(Debug)]
pub struct HttpMetrics {
    /// Route labels: every path of the route table, then `UNMATCHED`.
    routes: Vec<&'static str>,
    index: HashMap<&'static str, usize>,
    /// `routes.len() * METHODS.len()`, route-major.
    series: Vec<Series>,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpMetrics {
    pub fn new() -> Self {
        let mut routes: Vec<&'static str> = crate::routes::ROUTES.iter().map(|(_, p)| *p).collect();
        routes.sort_unstable();
        routes.dedup();
        routes.push(UNMATCHED);
        let index = routes.iter().enumerate().map(|(i, r)| (*r, i)).collect();
        let series = (0..routes.len() * METHODS.len())
            .map(|_| Series::new())
            .collect();
        HttpMetrics {
            routes,
            index,
            series,
        }
    }

    /// Records one answered request.
    pub fn observe(&self, route: Option<&str>, method: &str, status: u16, micros: u64) {
        let r = route
            .and_then(|p| self.index.get(p))
            .copied()
            .unwrap_or(self.routes.len() - 1);
        let m = METHODS
            .iter()
            .position(|x| *x == method)
            .unwrap_or(METHODS.len() - 1);
        self.series[r * METHODS.len() + m].observe(status, micros);
    }

    /// Requests counted for `route` (a pattern), `method` and `status`.
    pub fn requests(&self, route: &str, method: &str, status: u16) -> u64 {
        let (Some(r), Some(m), Ok(s)) = (
            self.index.get(route),
            METHODS.iter().position(|x| *x == method),
            STATUSES.binary_search(&status),
        ) else {
            return 0;
        };
        self.series[r * METHODS.len() + m].statuses[s].get()
    }

    /// Writes both families; series that never saw a request are left out.
    pub fn render(&self, out: &mut Exposition) {
        let active = || {
            self.series
                .iter()
                .enumerate()
                .filter(|(_, s)| s.count.get() > 0)
                .map(|(i, s)| {
                    (
                        self.routes[i / METHODS.len()],
                        METHODS[i % METHODS.len()],
                        s,
                    )
                })
        };
        out.family(
            "reserve_http_requests_total",
            "counter",
            "HTTP requests answered, by matched route pattern, method and status.",
        );
        for (route, method, s) in active() {
            for (slot, counter) in s.statuses.iter().enumerate() {
                let n = counter.get();
                if n == 0 {
                    continue;
                }
                let status = STATUSES
                    .get(slot)
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "other".into());
                out.sample(
                    "reserve_http_requests_total",
                    &[("route", route), ("method", method), ("status", &status)],
                    n,
                );
            }
        }
        out.family(
            "reserve_http_request_duration_seconds",
            "histogram",
            "Time from receiving a request to its response head, by matched route pattern and method.",
        );
        for (route, method, s) in active() {
            // Read the count first: requests finishing meanwhile can then
            // only make the buckets larger, never `+Inf` smaller than them.
            let count = s.count.get();
            let mut cumulative = 0;
            for (le, b) in BUCKETS.iter().zip(&s.buckets) {
                cumulative += b.get();
                let le = super::text::float(*le);
                out.sample(
                    "reserve_http_request_duration_seconds_bucket",
                    &[("route", route), ("method", method), ("le", &le)],
                    cumulative.min(count),
                );
            }
            out.sample(
                "reserve_http_request_duration_seconds_bucket",
                &[("route", route), ("method", method), ("le", "+Inf")],
                count,
            );
            out.sample_f64(
                "reserve_http_request_duration_seconds_sum",
                &[("route", route), ("method", method)],
                s.sum_micros.get() as f64 / 1e6,
            );
            out.sample(
                "reserve_http_request_duration_seconds_count",
                &[("route", route), ("method", method)],
                count,
            );
        }
    }
}

/// Times every request and counts it under its route pattern. Outermost, so
/// that answers given by other middleware (429s, request ids) count too.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let res = next.call(req).await?;
    if let Some(state) = state {
        let micros = started.elapsed().as_micros().min(u128::from(u64::MAX)) as u64;
        let request = res.request();
        state.metrics.http.observe(
            request.match_pattern().as_deref(),
            request.method().as_str(),
            res.status().as_u16(),
            micros,
        );
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_sorted_for_binary_search() {
        assert!(STATUSES.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn unknown_routes_methods_and_statuses_fall_into_fixed_labels() {
        let m = HttpMetrics::new();
        m.observe(Some("/api/v1/depots/{code}"), "GET", 200, 1_000);
        m.observe(Some("/api/v1/depots/{code}"), "GET", 200, 7_000);
        m.observe(None, "BREW", 404, 10);
        m.observe(Some("/not/a/pattern"), "GET", 599, 10);
        assert_eq!(m.requests("/api/v1/depots/{code}", "GET", 200), 2);
        assert_eq!(m.requests(UNMATCHED, "OTHER", 404), 1);
        let mut out = Exposition::new();
        m.render(&mut out);
        let text = out.finish();
        assert!(text.contains(
            "reserve_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"other\"} 1"
        ));
        assert!(text.contains(
            "reserve_http_request_duration_seconds_bucket{route=\"/api/v1/depots/{code}\",method=\"GET\",le=\"0.005\"} 1\n"
        ));
        assert!(text.contains(
            "reserve_http_request_duration_seconds_bucket{route=\"/api/v1/depots/{code}\",method=\"GET\",le=\"0.01\"} 2\n"
        ));
        assert!(text.contains(
            "reserve_http_request_duration_seconds_sum{route=\"/api/v1/depots/{code}\",method=\"GET\"} 0.008\n"
        ));
    }
}
