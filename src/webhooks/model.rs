//! Webhook decisions without a database or a network: the Standard Webhooks
//! secret and signature, which URLs may be registered, which event types a
//! webhook takes, and when a failed delivery is tried again.

use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::events::model::KindFilter;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The prefix of a Standard Webhooks secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// Longest URL accepted, in bytes.
pub const MAX_URL_BYTES: usize = 2048;

/// A fresh secret: `whsec_` and the base64 of 32 random bytes.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("{SECRET_PREFIX}{}", B64.encode(bytes))
}

/// The key bytes of a `whsec_…` secret.
pub fn secret_bytes(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret
        .strip_prefix(SECRET_PREFIX)
        .ok_or_else(|| format!("a webhook secret starts with {SECRET_PREFIX}"))?;
    B64.decode(encoded)
        .map_err(|e| format!("a webhook secret is base64 after {SECRET_PREFIX}: {e}"))
}

/// The `webhook-signature` value: `v1,` and the base64 HMAC-SHA256 of
/// `"{id}.{timestamp}.{body}"` under the secret's bytes.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

/// Checks a URL a webhook may be registered with: absolute `http` or `https`,
/// a host, no user name or password (they would be stored and shown as part
/// of the URL), no fragment (never sent), at most `MAX_URL_BYTES`.
pub fn validate_url(raw: &str) -> Result<url::Url, String> {
    if raw.len() > MAX_URL_BYTES {
        return Err(format!("must be at most {MAX_URL_BYTES} bytes"));
    }
    let url = url::Url::parse(raw.trim()).map_err(|e| format!("is not an absolute URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("must use http or https, not {}", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "must not carry credentials: the receiver checks the webhook-signature header instead"
                .into(),
        );
    }
    if url.fragment().is_some() {
        return Err("must not have a #fragment (it is never sent)".into());
    }
    Ok(url)
}

/// The event types a webhook takes: exact types (`order.approved`), prefixes
/// (`order.*`) or everything (`*`). Terms are the event stream's `?type=`
/// terms, so a typo (`ledger.entrys`) is refused rather than never matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTypes(Vec<String>);

impl EventTypes {
    /// Parses a list such as `["ledger.entry", "order.*"]`: at least one, at
    /// most 50, duplicates dropped.
    pub fn parse(types: &[String]) -> Result<EventTypes, String> {
        if types.is_empty() {
            return Err("name at least one event type (or \"*\" for every type)".into());
        }
        if types.len() > 50 {
            return Err("at most 50 event types".into());
        }
        let mut out: Vec<String> = Vec::with_capacity(types.len());
        for t in types {
            let t = t.trim();
            if t != "*" {
                KindFilter::parse(t)?;
            }
            if !out.iter().any(|o| o == t) {
                out.push(t.to_string());
            }
        }
        Ok(EventTypes(out))
    }

    /// From the stored comma-separated form.
    pub fn from_stored(s: &str) -> EventTypes {
        EventTypes(s.split(',').map(str::to_string).collect())
    }

    pub fn to_stored(&self) -> String {
        self.0.join(",")
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    /// Whether an event of type `kind` goes to this webhook.
    pub fn matches(&self, kind: &str) -> bool {
        self.0
            .iter()
            .any(|t| t == "*" || KindFilter::parse(t).is_ok_and(|f| f.matches(kind)))
    }
}

/// When failed deliveries are tried again: exponential from `base`, at most
/// `cap` apart, with jitter, until `window` after the delivery was created.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    pub window: Duration,
}

impl Backoff {
    /// The delay after failed attempt number `attempt` (1 for the first):
    /// `base · 2^(attempt-1)`, capped, then scaled by `jitter` in [0.5, 1]
    /// so that receivers that failed together are not retried in lockstep.
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let exp = attempt.saturating_sub(1).min(40);
        let full = self
            .base
            .checked_mul(1u32 << exp.min(31))
            .unwrap_or(self.cap)
            .min(self.cap);
        full.mul_f64(jitter.clamp(0.5, 1.0))
    }

    /// When to try again after failed attempt `attempt` at `now`, or `None`
    /// when that would be after `give_up_at`: the delivery has failed.
    pub fn next_attempt(
        &self,
        now: DateTime<Utc>,
        attempt: u32,
        jitter: f64,
        give_up_at: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let delay = chrono::Duration::from_std(self.delay(attempt, jitter)).ok()?;
        let next = now.checked_add_signed(delay)?;
        (next <= give_up_at).then_some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification's reference
        // libraries (msg_p5jXN8AQM9LWM0D4loKWxJek, timestamp 1614265330).
        let key = secret_bytes("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secrets_are_fresh_and_round_trip() {
        let a = new_secret();
        assert!(a.starts_with(SECRET_PREFIX));
        assert_eq!(secret_bytes(&a).unwrap().len(), 32);
        assert_ne!(a, new_secret());
        assert!(secret_bytes("nope").is_err());
    }

    #[test]
    fn urls_are_checked() {
        assert!(validate_url("https://hooks.example.org/reserve?x=1").is_ok());
        assert!(validate_url("http://127.0.0.1:8080/").is_ok());
        for bad in [
            "ftp://example.org/",
            "https://user:pw@example.org/",
            "https://user@example.org/",
            "https://example.org/#frag",
            "/relative",
            "file:///etc/passwd",
            "https://",
        ] {
            assert!(validate_url(bad).is_err(), "{bad} accepted");
        }
        assert!(validate_url(&format!("https://e.org/{}", "a".repeat(3000))).is_err());
    }

    #[test]
    fn event_types_filter() {
        let t = EventTypes::parse(&["order.*".into(), "ledger.entry".into()]).unwrap();
        assert!(t.matches("order.approved"));
        assert!(t.matches("ledger.entry"));
        assert!(!t.matches("orders.approved"));
        assert!(
            EventTypes::parse(&["ledger.entrys".into()]).is_err(),
            "unknown type"
        );
        assert!(EventTypes::parse(&["exchange.*".into()]).is_ok());
        assert!(!t.matches("order"));
        assert!(!t.matches("rule.fired"));
        assert!(EventTypes::parse(&["*".into()])
            .unwrap()
            .matches("rule.fired"));
        assert!(EventTypes::parse(&[]).is_err());
        assert!(EventTypes::parse(&["Order.Approved".into()]).is_err());
        assert!(EventTypes::parse(&["order..x".into()]).is_err());
        assert_eq!(
            EventTypes::from_stored(&t.to_stored()),
            t,
            "stored form round-trips"
        );
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_and_stops_at_the_window() {
        let b = Backoff {
            base: Duration::from_secs(10),
            cap: Duration::from_secs(3600),
            window: Duration::from_secs(86_400),
        };
        assert_eq!(b.delay(1, 1.0), Duration::from_secs(10));
        assert_eq!(b.delay(2, 1.0), Duration::from_secs(20));
        assert_eq!(b.delay(4, 1.0), Duration::from_secs(80));
        assert_eq!(b.delay(30, 1.0), Duration::from_secs(3600));
        assert_eq!(b.delay(1000, 1.0), Duration::from_secs(3600));
        assert_eq!(b.delay(2, 0.5), Duration::from_secs(10));
        assert_eq!(
            b.delay(2, 0.0),
            Duration::from_secs(10),
            "jitter is clamped"
        );
        let now = Utc::now();
        let end = now + chrono::Duration::seconds(15);
        assert_eq!(
            b.next_attempt(now, 1, 1.0, end),
            Some(now + chrono::Duration::seconds(10))
        );
        assert_eq!(b.next_attempt(now, 2, 1.0, end), None, "past the window");
    }
}
