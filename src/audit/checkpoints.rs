//! Signed checkpoints: every stockpile's head (newest sequence, entry count,
//! balance, hash) under a Merkle root, chained to the previous checkpoint and
//! signed with Ed25519. A per-stockpile chain cannot show that its newest
//! entries were deleted; a checkpoint kept (or published) elsewhere can.

use chrono::NaiveDateTime;
use diesel::prelude::*;
use serde::{Deserialize, Serialize};

use super::merkle::{self, CheckpointBody, Head, Step};
use super::signing::{self, AuditKey};
use crate::db::schema::{
    checkpoint_heads as ch, checkpoints as cp, ledger_entries as le, ledger_head, stockpiles,
};
use crate::db::types::{self, Grams};
use crate::db::DbConn;
use crate::error::{ApiError, ApiResult};
use crate::http::pagination::{Order, PageRequest};
use crate::ledger::chain::GENESIS;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = cp)]
pub struct CheckpointRow {
    pub id: i64,
    pub created_at: NaiveDateTime,
    pub created_by: String,
    pub last_sequence: i64,
    pub stockpiles: i64,
    pub merkle_root: String,
    pub prev_hash: String,
    pub hash: String,
    pub public_key: String,
    pub signature: String,
}

impl CheckpointRow {
    pub fn body(&self) -> CheckpointBody<'_> {
        CheckpointBody {
            id: self.id,
            created_at_micros: self.created_at.and_utc().timestamp_micros(),
            last_sequence: self.last_sequence,
            stockpiles: self.stockpiles,
            merkle_root: &self.merkle_root,
            prev_hash: &self.prev_hash,
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = ch)]
pub struct HeadRow {
    pub checkpoint_id: i64,
    pub leaf_index: i64,
    pub stockpile_id: i64,
    pub last_sequence: i64,
    pub entry_count: i64,
    pub balance_g: i64,
    pub head_hash: String,
}

impl HeadRow {
    pub fn head(&self) -> Head {
        Head {
            stockpile_id: self.stockpile_id,
            last_sequence: self.last_sequence,
            entry_count: self.entry_count,
            balance_g: self.balance_g,
            head_hash: self.head_hash.clone(),
        }
    }
}

/// A checkpoint as served: everything an outside tool needs to check it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointView {
    pub id: i64,
    pub created_at: String,
    pub created_by: String,
    pub last_sequence: i64,
    pub stockpiles: i64,
    pub merkle_root: String,
    pub prev_hash: String,
    pub hash: String,
    pub algorithm: String,
    pub public_key: String,
    pub signature: String,
    /// The exact bytes signed (and hashed into `hash`), hex.
    pub signed_message_hex: String,
}

impl From<&CheckpointRow> for CheckpointView {
    fn from(r: &CheckpointRow) -> CheckpointView {
        CheckpointView {
            id: r.id,
            created_at: types::rfc3339(types::from_db(r.created_at)),
            created_by: r.created_by.clone(),
            last_sequence: r.last_sequence,
            stockpiles: r.stockpiles,
            merkle_root: r.merkle_root.clone(),
            prev_hash: r.prev_hash.clone(),
            hash: r.hash.clone(),
            algorithm: "Ed25519".into(),
            public_key: r.public_key.clone(),
            signature: r.signature.clone(),
            signed_message_hex: hex::encode(r.body().message()),
        }
    }
}

/// Every stockpile's head as the ledger holds it now, by stockpile id.
/// Stockpiles without entries have no head and are left out.
pub fn current_heads(conn: &mut DbConn) -> ApiResult<Vec<Head>> {
    let rows: Vec<(i64, i64)> = stockpiles::table
        .filter(stockpiles::entry_count.gt(0))
        .order(stockpiles::id.asc())
        .select((stockpiles::id, stockpiles::entry_count))
        .load(conn)?;
    let mut heads = Vec::with_capacity(rows.len());
    for (id, count) in rows {
        // One backward step on the (stockpile_id, sequence) index.
        let newest: Option<(i64, i64, String)> = le::table
            .filter(le::stockpile_id.eq(id))
            .order(le::sequence.desc())
            .select((le::sequence, le::balance_after_g, le::hash))
            .first(conn)
            .optional()?;
        if let Some((sequence, balance, hash)) = newest {
            heads.push(Head {
                stockpile_id: id,
                last_sequence: sequence,
                entry_count: count,
                balance_g: balance,
                head_hash: hash,
            });
        }
    }
    Ok(heads)
}

/// Hex Merkle root over `heads` in order.
pub fn root_of(heads: &[Head]) -> String {
    let leaves: Vec<[u8; 32]> = heads.iter().map(Head::leaf_hash).collect();
    hex::encode(merkle::root(&leaves))
}

/// Takes a checkpoint. Must run inside a write transaction: it holds the
/// `ledger_head` row, which every posting takes last before committing, so
/// the heads read belong to one instant and no posting commits in between.
pub fn create(conn: &mut DbConn, key: &AuditKey, actor: &str) -> ApiResult<CheckpointView> {
    let last_sequence: i64 = diesel::update(ledger_head::table.filter(ledger_head::id.eq(1)))
        .set(ledger_head::last_sequence.eq(ledger_head::last_sequence))
        .returning(ledger_head::last_sequence)
        .get_result(conn)?;
    let heads = current_heads(conn)?;
    let previous: Option<(i64, String)> = cp::table
        .order(cp::id.desc())
        .select((cp::id, cp::hash))
        .first(conn)
        .optional()?;
    let (id, prev_hash) = match previous {
        Some((id, hash)) => (id + 1, hash),
        None => (1, GENESIS.to_string()),
    };
    let created_at = types::to_db(types::now());
    let merkle_root = root_of(&heads);
    let mut row = CheckpointRow {
        id,
        created_at,
        created_by: actor.to_string(),
        last_sequence,
        stockpiles: heads.len() as i64,
        merkle_root,
        prev_hash,
        hash: String::new(),
        public_key: key.public_base64(),
        signature: String::new(),
    };
    row.hash = row.body().hash();
    row.signature = key.sign(&row.body().message());
    diesel::insert_into(cp::table).values(&row).execute(conn)?;
    for (i, h) in heads.iter().enumerate() {
        diesel::insert_into(ch::table)
            .values(HeadRow {
                checkpoint_id: id,
                leaf_index: i as i64,
                stockpile_id: h.stockpile_id,
                last_sequence: h.last_sequence,
                entry_count: h.entry_count,
                balance_g: h.balance_g,
                head_hash: h.head_hash.clone(),
            })
            .execute(conn)?;
    }
    Ok(CheckpointView::from(&row))
}

pub fn get(conn: &mut DbConn, id: i64) -> ApiResult<CheckpointRow> {
    cp::table
        .filter(cp::id.eq(id))
        .select(CheckpointRow::as_select())
        .first(conn)
        .optional()?
        .ok_or_else(|| ApiError::NotFound(format!("no checkpoint {id}")))
}

pub fn latest(conn: &mut DbConn) -> ApiResult<Option<CheckpointRow>> {
    Ok(cp::table
        .order(cp::id.desc())
        .select(CheckpointRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn heads_of(conn: &mut DbConn, id: i64) -> ApiResult<Vec<HeadRow>> {
    Ok(ch::table
        .filter(ch::checkpoint_id.eq(id))
        .order(ch::leaf_index.asc())
        .select(HeadRow::as_select())
        .load(conn)?)
}

pub fn list(conn: &mut DbConn, page: &PageRequest) -> ApiResult<Vec<CheckpointRow>> {
    let q = cp::table.select(CheckpointRow::as_select()).into_boxed();
    let q = match (page.order, page.after) {
        (Order::NewestFirst, Some(a)) => q.filter(cp::id.lt(a)).order(cp::id.desc()),
        (Order::NewestFirst, None) => q.order(cp::id.desc()),
        (Order::OldestFirst, Some(a)) => q.filter(cp::id.gt(a)).order(cp::id.asc()),
        (Order::OldestFirst, None) => q.order(cp::id.asc()),
    };
    Ok(q.limit(page.limit + 1).load(conn)?)
}

/// Checks a checkpoint on its own: its hash, its signature (under `trusted`
/// when given, else under the key it names) and that its stored heads give
/// its Merkle root.
pub fn check(row: &CheckpointRow, heads: &[HeadRow], trusted: Option<&str>) -> Result<(), String> {
    if row.body().hash() != row.hash {
        return Err(format!(
            "checkpoint {} does not hash to its recorded hash",
            row.id
        ));
    }
    if let Some(key) = trusted.filter(|k| *k != row.public_key) {
        return Err(format!(
            "checkpoint {} is signed by {}, not by the trusted key {key}",
            row.id, row.public_key
        ));
    }
    signing::verify(&row.public_key, &row.body().message(), &row.signature)
        .map_err(|e| format!("checkpoint {}: {e}", row.id))?;
    let heads: Vec<Head> = heads.iter().map(HeadRow::head).collect();
    if heads.len() as i64 != row.stockpiles || root_of(&heads) != row.merkle_root {
        return Err(format!(
            "checkpoint {}'s stored heads do not give its signed Merkle root",
            row.id
        ));
    }
    Ok(())
}

/// Every checkpoint links to the one before it. Returns the first break.
pub fn check_links(conn: &mut DbConn) -> ApiResult<Option<String>> {
    let rows: Vec<(i64, String, String)> = cp::table
        .order(cp::id.asc())
        .select((cp::id, cp::prev_hash, cp::hash))
        .load(conn)?;
    let mut prev = (0i64, GENESIS.to_string());
    for (id, prev_hash, hash) in rows {
        if id != prev.0 + 1 || prev_hash != prev.1 {
            return Ok(Some(format!(
                "checkpoint {id} does not follow checkpoint {}: checkpoints were removed or rewritten",
                prev.0
            )));
        }
        prev = (id, hash);
    }
    Ok(None)
}

/// A Merkle inclusion proof of one stockpile's head in a checkpoint.
#[derive(Debug, Clone, Serialize)]
pub struct Proof {
    pub checkpoint: CheckpointView,
    pub stockpile_id: i64,
    pub leaf_index: i64,
    pub tree_size: i64,
    pub head: ProofHead,
    /// The leaf's bytes (see docs/audit.md), hex.
    pub leaf_hex: String,
    /// SHA-256(0x00 ‖ leaf), hex.
    pub leaf_hash: String,
    /// Siblings from the leaf up; fold with SHA-256(0x01 ‖ left ‖ right).
    pub path: Vec<Step>,
    pub merkle_root: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProofHead {
    pub last_sequence: i64,
    pub entry_count: i64,
    pub balance_g: i64,
    pub balance_kg: String,
    pub head_hash: String,
}

pub fn proof(conn: &mut DbConn, id: i64, stockpile_id: i64) -> ApiResult<Proof> {
    let row = get(conn, id)?;
    let heads = heads_of(conn, id)?;
    let index = heads
        .iter()
        .position(|h| h.stockpile_id == stockpile_id)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "checkpoint {id} holds no head of stockpile {stockpile_id} (it had no entries then, or does not exist)"
            ))
        })?;
    let leaves: Vec<[u8; 32]> = heads.iter().map(|h| h.head().leaf_hash()).collect();
    let h = heads[index].head();
    Ok(Proof {
        checkpoint: CheckpointView::from(&row),
        stockpile_id,
        leaf_index: index as i64,
        tree_size: heads.len() as i64,
        head: ProofHead {
            last_sequence: h.last_sequence,
            entry_count: h.entry_count,
            balance_g: h.balance_g,
            balance_kg: Grams(h.balance_g).to_kg_string(),
            head_hash: h.head_hash.clone(),
        },
        leaf_hex: hex::encode(h.encode()),
        leaf_hash: hex::encode(leaves[index]),
        path: merkle::proof(&leaves, index),
        merkle_root: row.merkle_root,
    })
}
