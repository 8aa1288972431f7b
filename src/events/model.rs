//! Events: positions in one total order, the kinds, the filters, and the
//! Server-Sent Events frame each becomes. Pure; no database.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::auth::AuthUser;

/// Where an event sits in the one total order of everything the reserve
/// announces. A ledger entry's event is at `(sequence, 0)`, written `"1234"`;
/// the k-th other event committed after entry 1234 and before 1235 is at
/// `(1234, k)`, written `"1234.k"`. Both parts come from `ledger_head`, held to
/// commit, so positions are gap-free and in commit order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    pub sequence: i64,
    pub sub: i64,
}

impl Position {
    /// Before every event.
    pub const START: Position = Position {
        sequence: 0,
        sub: 0,
    };

    pub fn ledger(sequence: i64) -> Position {
        Position { sequence, sub: 0 }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.sub {
            0 => write!(f, "{}", self.sequence),
            k => write!(f, "{}.{}", self.sequence, k),
        }
    }
}

impl FromStr for Position {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "{s:?} is not an event position: expected a ledger sequence such as `1234` \
                 or `1234.2`, as sent in an event's `id`"
            )
        };
        let (seq, sub) = match s.split_once('.') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let digits =
            |t: &str| !t.is_empty() && t.len() <= 18 && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(seq) || sub.is_some_and(|b| !digits(b)) {
            return Err(bad());
        }
        let sequence: i64 = seq.parse().map_err(|_| bad())?;
        let sub: i64 = match sub {
            Some(b) => b.parse().map_err(|_| bad())?,
            None => 0,
        };
        if sub == 0 && s.contains('.') {
            return Err(bad());
        }
        Ok(Position { sequence, sub })
    }
}

/// Every kind of event, for validating `?type=` filters. Order events are
/// `order.<status>` for every status an order can move to.
pub const KINDS: &[&str] = &[
    LEDGER_ENTRY,
    "order.proposed",
    "order.approved",
    "order.offered",
    "order.awarded",
    "order.executing",
    "order.completed",
    "order.returned",
    "order.rejected",
    "order.cancelled",
    RULE_FIRED,
    COUNT_FLAGGED,
    EXCHANGE_OVERDUE,
    REPORT_ISSUED,
];

pub const LEDGER_ENTRY: &str = "ledger.entry";
pub const RULE_FIRED: &str = "rule.fired";
pub const COUNT_FLAGGED: &str = "count.flagged";
pub const EXCHANGE_OVERDUE: &str = "exchange.overdue";
pub const REPORT_ISSUED: &str = "audit.report_issued";

/// One committed event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub position: Position,
    pub kind: String,
    pub element: Option<String>,
    pub depot: Option<String>,
    pub at: DateTime<Utc>,
    pub data: Value,
}

/// Fields of a ledger entry's data that only auditors and admins see, as in
/// `GET /api/v1/ledger`.
const PRIVILEGED_LEDGER_FIELDS: &[&str] = &["actor", "idempotency_key"];

impl Event {
    /// The event's data as a reader sees it: ledger entries name their
    /// poster only to readers who may see actors.
    pub fn data_for(&self, show_actors: bool) -> Value {
        let mut data = self.data.clone();
        if self.kind == LEDGER_ENTRY && !show_actors {
            if let Some(o) = data.as_object_mut() {
                for f in PRIVILEGED_LEDGER_FIELDS {
                    if o.contains_key(*f) {
                        o.insert((*f).into(), Value::Null);
                    }
                }
            }
        }
        data
    }

    /// The Server-Sent Events frame: `id`, `event`, and the data on one line.
    pub fn frame(&self, show_actors: bool) -> String {
        // serde_json escapes every newline inside strings, so one `data:` line
        // carries the whole document.
        format!(
            "id: {}\nevent: {}\ndata: {}\n\n",
            self.position,
            self.kind,
            self.data_for(show_actors)
        )
    }
}

/// One `?type=` term: an exact kind, or every kind under a prefix (`order.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KindFilter {
    Exact(String),
    Prefix(String),
}

impl KindFilter {
    pub fn parse(term: &str) -> Result<KindFilter, String> {
        let term = term.trim();
        if let Some(prefix) = term.strip_suffix('*') {
            if prefix.ends_with('.') && KINDS.iter().any(|k| k.starts_with(prefix)) {
                return Ok(KindFilter::Prefix(prefix.to_string()));
            }
        } else if KINDS.contains(&term) {
            return Ok(KindFilter::Exact(term.to_string()));
        }
        Err(format!(
            "{term:?} is not an event type: use one of {} or a prefix such as `order.*`",
            KINDS.join(", ")
        ))
    }

    pub fn matches(&self, kind: &str) -> bool {
        match self {
            KindFilter::Exact(k) => k == kind,
            KindFilter::Prefix(p) => kind.starts_with(p.as_str()),
        }
    }
}

/// What a reader wants: kinds, one element, one depot, and the depots its
/// token is scoped to. Empty means everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub kinds: Vec<KindFilter>,
    pub element: Option<String>,
    pub depot: Option<String>,
    /// `Some`: only events at these depots, and events at no depot.
    pub scope: Option<std::collections::BTreeSet<String>>,
}

impl Filter {
    pub fn for_user(user: &AuthUser) -> Filter {
        Filter {
            scope: user.depots.clone(),
            ..Filter::default()
        }
    }

    pub fn wants_kind(&self, kind: &str) -> bool {
        self.kinds.is_empty() || self.kinds.iter().any(|k| k.matches(kind))
    }

    pub fn matches(&self, e: &Event) -> bool {
        self.wants_kind(&e.kind)
            && self
                .element
                .as_ref()
                .is_none_or(|el| e.element.as_deref() == Some(el.as_str()))
            && self
                .depot
                .as_ref()
                .is_none_or(|d| e.depot.as_deref() == Some(d.as_str()))
            && match (&self.scope, &e.depot) {
                (Some(scope), Some(d)) => scope.contains(d),
                _ => true,
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> Position {
        s.parse().unwrap()
    }

    #[test]
    fn positions_round_trip_and_order_ledger_entries_before_what_follows_them() {
        assert_eq!(p("1234"), Position::ledger(1234));
        assert_eq!(p("1234.2").to_string(), "1234.2");
        assert_eq!(p("7").to_string(), "7");
        assert!(p("1234") < p("1234.1"));
        assert!(p("1234.1") < p("1234.2"));
        assert!(p("1234.99") < p("1235"));
        assert!(Position::START < p("0.1"));
    }

    #[test]
    fn malformed_positions_are_refused() {
        for bad in [
            "",
            ".",
            "1.",
            ".1",
            "1.0",
            "-1",
            "1.-2",
            "abc",
            "1.2.3",
            " 1",
            "1e3",
            "9999999999999999999",
        ] {
            assert!(bad.parse::<Position>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn kind_filters_take_exact_kinds_and_known_prefixes() {
        assert_eq!(
            KindFilter::parse("order.*").unwrap(),
            KindFilter::Prefix("order.".into())
        );
        assert!(KindFilter::parse("ledger.entry").is_ok());
        assert!(KindFilter::parse("ledger.entries").is_err());
        assert!(KindFilter::parse("nothing.*").is_err());
        assert!(KindFilter::parse("*").is_err());
    }

    fn event(kind: &str, depot: Option<&str>) -> Event {
        Event {
            position: Position::ledger(5),
            kind: kind.into(),
            element: Some("Dy".into()),
            depot: depot.map(Into::into),
            at: Utc::now(),
            data: json!({"actor": "ops", "idempotency_key": "k", "note": "a\nb"}),
        }
    }

    #[test]
    fn a_scoped_reader_sees_its_depots_and_events_at_no_depot() {
        let f = Filter {
            scope: Some(["NV-1".to_string()].into()),
            ..Filter::default()
        };
        assert!(f.matches(&event(LEDGER_ENTRY, Some("NV-1"))));
        assert!(!f.matches(&event(LEDGER_ENTRY, Some("TX-2"))));
        assert!(f.matches(&event("order.approved", None)));
        let f = Filter {
            kinds: vec![KindFilter::parse("order.*").unwrap()],
            element: Some("Nd".into()),
            ..Filter::default()
        };
        assert!(
            !f.matches(&event("order.approved", None)),
            "element differs"
        );
    }

    #[test]
    fn frames_are_one_data_line_and_hide_the_poster_from_most_readers() {
        let e = event(LEDGER_ENTRY, Some("NV-1"));
        let public = e.frame(false);
        assert_eq!(public.matches('\n').count(), 4, "{public}");
        assert!(public.starts_with("id: 5\nevent: ledger.entry\ndata: {"));
        assert!(public.contains("\"actor\":null") && !public.contains("ops"));
        assert!(e.frame(true).contains("\"actor\":\"ops\""));
    }
}
