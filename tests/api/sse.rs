//! A small Server-Sent Events client for the tests: opens
//! `GET /api/v1/events`, and reads frames one at a time with a deadline.

#![allow(dead_code)]

use std::pin::Pin;
use std::time::Duration;

use actix_web::web::Bytes;
use futures_util::{Stream, StreamExt};
use serde_json::Value;

type Body = Pin<Box<dyn Stream<Item = Result<Bytes, awc::error::PayloadError>>>>;

/// One event as received.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub id: String,
    pub event: String,
    pub data: Value,
}

impl SseEvent {
    /// The `(sequence, sub)` of the event's position.
    pub fn position(&self) -> (i64, i64) {
        parse_position(&self.id)
    }
}

pub fn parse_position(id: &str) -> (i64, i64) {
    match id.split_once('.') {
        Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
        None => (id.parse().unwrap(), 0),
    }
}

pub struct Sse {
    body: Body,
    buffer: String,
    /// The position the server said the stream opened at.
    pub opened_at: Option<String>,
    pub heartbeats: usize,
    pub closed: bool,
    /// Events read while waiting for the opening comment.
    queue: std::collections::VecDeque<SseEvent>,
}

/// Opens a stream; `headers` may carry `Authorization` and `Last-Event-ID`.
/// Panics unless the server answers 200 `text/event-stream`.
pub async fn open(client: &awc::Client, url: &str, headers: &[(&str, String)]) -> Sse {
    match try_open(client, url, headers).await {
        Ok(s) => s,
        Err((status, body)) => panic!("the stream did not open: {status} {body}"),
    }
}

/// Opens a stream, or returns the status and body of the refusal.
pub async fn try_open(
    client: &awc::Client,
    url: &str,
    headers: &[(&str, String)],
) -> Result<Sse, (u16, String)> {
    let mut req = client.get(url).timeout(Duration::from_secs(30));
    for (k, v) in headers {
        req = req.insert_header((*k, v.clone()));
    }
    let mut res = req.send().await.expect("request");
    if res.status().as_u16() != 200 {
        let body = res.body().await.unwrap_or_default();
        return Err((
            res.status().as_u16(),
            String::from_utf8_lossy(&body).to_string(),
        ));
    }
    assert_eq!(
        res.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let mut sse = Sse {
        body: Box::pin(res),
        buffer: String::new(),
        opened_at: None,
        heartbeats: 0,
        closed: false,
        queue: Default::default(),
    };
    // The first frame is the `retry:` line and a comment naming the start;
    // any event read meanwhile is kept for `next`.
    while sse.opened_at.is_none() && !sse.closed {
        match sse.read(Duration::from_secs(10)).await {
            Some(e) => sse.queue.push_back(e),
            None => break,
        }
    }
    Ok(sse)
}

impl Sse {
    /// The next event, or `None` if none came within `wait` or the stream
    /// ended. Comments (heartbeats) are counted, not returned.
    pub async fn next(&mut self, wait: Duration) -> Option<SseEvent> {
        match self.queue.pop_front() {
            Some(e) => Some(e),
            None => self.read(wait).await,
        }
    }

    async fn read(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let opening = self.opened_at.is_none();
                if let Some(e) = self.parse_block(&block) {
                    return Some(e);
                }
                if opening && self.opened_at.is_some() {
                    return None;
                }
            }
            if self.closed {
                return None;
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => return None,
                Ok(None) | Ok(Some(Err(_))) => {
                    self.closed = true;
                }
                Ok(Some(Ok(bytes))) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
            }
        }
    }

    fn parse_block(&mut self, block: &str) -> Option<SseEvent> {
        let (mut id, mut event, mut data) = (None, None, None);
        for line in block.lines() {
            if let Some(c) = line.strip_prefix(':') {
                let c = c.trim();
                if c == "heartbeat" {
                    self.heartbeats += 1;
                } else if let Some(at) = c.strip_prefix("stream open at ") {
                    self.opened_at = Some(at.to_string());
                }
            } else if let Some(v) = line.strip_prefix("id: ") {
                id = Some(v.to_string());
            } else if let Some(v) = line.strip_prefix("event: ") {
                event = Some(v.to_string());
            } else if let Some(v) = line.strip_prefix("data: ") {
                assert!(data.is_none(), "one data line per event: {block}");
                data = Some(serde_json::from_str(v).expect("data is JSON"));
            }
        }
        Some(SseEvent {
            id: id.unwrap_or_default(),
            event: event?,
            data: data?,
        })
    }

    /// Events until `n` have come or `wait` passes without one.
    pub async fn take(&mut self, n: usize, wait: Duration) -> Vec<SseEvent> {
        let mut out = Vec::new();
        while out.len() < n {
            match self.next(wait).await {
                Some(e) => out.push(e),
                None => break,
            }
        }
        out
    }
}
