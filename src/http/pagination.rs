//! Cursor pagination shared by every list: `?limit=&cursor=&order=`, answered as
//! `{"items": [...], "next_cursor": "..."}`.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use serde::Serialize;

use crate::error::{ApiError, FieldError};

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    NewestFirst,
    OldestFirst,
}

/// A validated page request. The cursor is the key of the last item returned,
/// so a page never repeats or skips rows whatever is inserted meanwhile (for the
/// ledger because sequence order is commit order).
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub limit: i64,
    pub after: Option<i64>,
    pub order: Order,
}

impl PageRequest {
    pub fn parse(
        limit: Option<i64>,
        cursor: Option<&str>,
        order: Option<&str>,
        max_limit: i64,
    ) -> Result<PageRequest, ApiError> {
        let mut errors = Vec::new();
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=max_limit).contains(&limit) {
            errors.push(FieldError::new(
                "limit",
                format!("must be between 1 and {max_limit}"),
            ));
        }
        let after = match cursor {
            None | Some("") => None,
            Some(c) => match decode_cursor(c) {
                Some(v) => Some(v),
                None => {
                    errors.push(FieldError::new(
                        "cursor",
                        "is not a cursor this service issued",
                    ));
                    None
                }
            },
        };
        let order = match order {
            None | Some("desc") => Order::NewestFirst,
            Some("asc") => Order::OldestFirst,
            Some(_) => {
                errors.push(FieldError::new("order", "must be \"asc\" or \"desc\""));
                Order::NewestFirst
            }
        };
        if errors.is_empty() {
            Ok(PageRequest {
                limit,
                after,
                order,
            })
        } else {
            Err(ApiError::Validation(errors))
        }
    }

    /// Parses the page after a handler's own filters, answering every bad
    /// filter and page parameter in one 422.
    pub fn parse_after(
        mut errors: Vec<FieldError>,
        limit: Option<i64>,
        cursor: Option<&str>,
        order: Option<&str>,
        max_limit: i64,
    ) -> Result<PageRequest, ApiError> {
        match PageRequest::parse(limit, cursor, order, max_limit) {
            Ok(page) if errors.is_empty() => Ok(page),
            Ok(_) => Err(ApiError::Validation(errors)),
            Err(ApiError::Validation(more)) => {
                errors.extend(more);
                Err(ApiError::Validation(errors))
            }
            Err(e) => Err(e),
        }
    }

    /// Trims the one extra row fetched to learn whether another page exists.
    ///
    /// Every list ends, in both orders: `next_cursor` is set only when that
    /// extra row exists, so the last page carries `null` and no page is empty
    /// while rows remain. (Oldest-first lists once returned a cursor on every
    /// page, even an empty last one, so that a reader could poll for new rows;
    /// a client that trusted "null on the last page" then looped forever. A
    /// reader following the ledger as it grows asks again with the cursor that
    /// fetched its last page, and skips the sequences it already has.)
    pub fn finish<T>(&self, mut rows: Vec<T>, key: impl Fn(&T) -> i64) -> (Vec<T>, Option<String>) {
        let more = rows.len() as i64 > self.limit;
        rows.truncate(self.limit as usize);
        let next = if more { rows.last().map(key) } else { None };
        (rows, next.map(encode_cursor))
    }
}

pub fn encode_cursor(v: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("k{v}"))
}

fn decode_cursor(c: &str) -> Option<i64> {
    let bytes = URL_SAFE_NO_PAD.decode(c).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    text.strip_prefix('k')?.parse().ok()
}

#[derive(Debug, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let c = encode_cursor(42);
        let p = PageRequest::parse(Some(10), Some(&c), Some("asc"), MAX_LIMIT).unwrap();
        assert_eq!(p.after, Some(42));
        assert_eq!(p.order, Order::OldestFirst);
        assert!(PageRequest::parse(None, Some("!!"), None, MAX_LIMIT).is_err());
        assert!(PageRequest::parse(Some(0), None, None, MAX_LIMIT).is_err());
        assert!(PageRequest::parse(Some(MAX_LIMIT + 1), None, None, MAX_LIMIT).is_err());
    }

    #[test]
    fn finish_reports_a_next_cursor_only_when_rows_remain() {
        let p = PageRequest::parse(Some(2), None, None, MAX_LIMIT).unwrap();
        let (rows, next) = p.finish(vec![5, 4, 3], |r| *r);
        assert_eq!(rows, vec![5, 4]);
        assert_eq!(next, Some(encode_cursor(4)));
        let (_, next) = p.finish(vec![5, 4], |r| *r);
        assert_eq!(next, None);
        for order in ["asc", "desc"] {
            let p = PageRequest::parse(Some(2), Some(&encode_cursor(7)), Some(order), MAX_LIMIT)
                .unwrap();
            assert_eq!(
                p.finish(Vec::<i64>::new(), |r| *r).1,
                None,
                "{order}: empty"
            );
            assert_eq!(p.finish(vec![8], |r| *r).1, None, "{order}: short page");
            assert_eq!(
                p.finish(vec![8, 9], |r| *r).1,
                None,
                "{order}: exactly full"
            );
            assert_eq!(
                p.finish(vec![8, 9, 10], |r| *r),
                (vec![8, 9], Some(encode_cursor(9))),
                "{order}: one more row exists"
            );
        }
    }
}
