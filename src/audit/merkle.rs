//! The Merkle tree a checkpoint commits to (RFC 6962 §2.1 hashing, so any
//! Certificate Transparency tool's arithmetic applies): a leaf hash is
//! `SHA-256(0x00 ‖ leaf)`, an inner node `SHA-256(0x01 ‖ left ‖ right)`, a tree
//! of n > 1 leaves splits at the largest power of two below n, and the empty
//! tree's root is `SHA-256("")`. The prefixes keep a leaf from passing for a
//! node. `docs/audit.md` gives the byte layout and a Python checker.

use sha2::{Digest, Sha256};

/// One stockpile's head as a checkpoint commits to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub stockpile_id: i64,
    /// Sequence of the stockpile's newest entry.
    pub last_sequence: i64,
    pub entry_count: i64,
    pub balance_g: i64,
    /// Hash of the stockpile's newest entry (64 hex characters).
    pub head_hash: String,
}

pub const LEAF_TAG: &[u8] = b"reserve-checkpoint-leaf-v1";
pub const CHECKPOINT_TAG: &[u8] = b"reserve-checkpoint-v1";

/// Length-prefixed field, as in the ledger's chain encoding (`docs/chain.md`).
pub fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

impl Head {
    /// The leaf's bytes: tag, stockpile id, last sequence, entry count, balance
    /// (each an 8-byte big-endian integer) and the head hash as 64 ASCII hex
    /// characters, every field length-prefixed.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        put(&mut out, LEAF_TAG);
        put(&mut out, &self.stockpile_id.to_be_bytes());
        put(&mut out, &self.last_sequence.to_be_bytes());
        put(&mut out, &self.entry_count.to_be_bytes());
        put(&mut out, &self.balance_g.to_be_bytes());
        put(&mut out, self.head_hash.as_bytes());
        out
    }

    pub fn leaf_hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update([0u8]);
        h.update(self.encode());
        h.finalize().into()
    }
}

fn node(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Largest power of two strictly below `n` (n ≥ 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// The root over leaf hashes, in leaf order.
pub fn root(leaves: &[[u8; 32]]) -> [u8; 32] {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// Which side a proof step's sibling sits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Left,
    Right,
}

/// One step of an inclusion proof, from the leaf up.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Step {
    pub side: Side,
    pub hash: String,
}

/// The audit path of leaf `index` (RFC 6962 §2.1.1), leaf first.
pub fn proof(leaves: &[[u8; 32]], index: usize) -> Vec<Step> {
    fn path(leaves: &[[u8; 32]], m: usize, out: &mut Vec<Step>) {
        let n = leaves.len();
        if n <= 1 {
            return;
        }
        let k = split(n);
        if m < k {
            path(&leaves[..k], m, out);
            out.push(Step {
                side: Side::Right,
                hash: hex::encode(root(&leaves[k..])),
            });
        } else {
            path(&leaves[k..], m - k, out);
            out.push(Step {
                side: Side::Left,
                hash: hex::encode(root(&leaves[..k])),
            });
        }
    }
    let mut out = Vec::new();
    if index < leaves.len() {
        path(leaves, index, &mut out);
    }
    out
}

/// Folds a proof from a leaf hash: the root it leads to.
pub fn fold(leaf: [u8; 32], steps: &[Step]) -> Option<[u8; 32]> {
    let mut acc = leaf;
    for s in steps {
        let sibling: [u8; 32] = hex::decode(&s.hash).ok()?.try_into().ok()?;
        acc = match s.side {
            Side::Left => node(&sibling, &acc),
            Side::Right => node(&acc, &sibling),
        };
    }
    Some(acc)
}

/// What a checkpoint signs: tag, id, creation time (µs since the epoch), the
/// newest ledger sequence, the number of leaves, the Merkle root and the
/// previous checkpoint's hash (both as 64 ASCII hex characters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointBody<'a> {
    pub id: i64,
    pub created_at_micros: i64,
    pub last_sequence: i64,
    pub stockpiles: i64,
    pub merkle_root: &'a str,
    pub prev_hash: &'a str,
}

impl CheckpointBody<'_> {
    pub fn message(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(200);
        put(&mut out, CHECKPOINT_TAG);
        put(&mut out, &self.id.to_be_bytes());
        put(&mut out, &self.created_at_micros.to_be_bytes());
        put(&mut out, &self.last_sequence.to_be_bytes());
        put(&mut out, &self.stockpiles.to_be_bytes());
        put(&mut out, self.merkle_root.as_bytes());
        put(&mut out, self.prev_hash.as_bytes());
        out
    }

    /// The checkpoint's hash, which the next checkpoint chains to.
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.message()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heads(n: i64) -> Vec<[u8; 32]> {
        (1..=n)
            .map(|i| {
                Head {
                    stockpile_id: i,
                    last_sequence: i * 10,
                    entry_count: i,
                    balance_g: i * 1000,
                    head_hash: format!("{i:064x}"),
                }
                .leaf_hash()
            })
            .collect()
    }

    #[test]
    fn every_leaf_of_every_tree_size_proves_into_the_root() {
        for n in 1..=17 {
            let leaves = heads(n);
            let r = root(&leaves);
            for (i, leaf) in leaves.iter().enumerate() {
                let p = proof(&leaves, i);
                assert_eq!(fold(*leaf, &p), Some(r), "n={n} i={i}");
                // The proof does not fit another leaf.
                let other = leaves[(i + 1) % leaves.len()];
                if n > 1 {
                    assert_ne!(fold(other, &p), Some(r), "n={n} i={i}");
                }
            }
        }
    }

    #[test]
    fn small_trees_match_rfc_6962() {
        let l = heads(3);
        let expect = node(&node(&l[0], &l[1]), &l[2]);
        assert_eq!(root(&l), expect);
        assert_eq!(
            hex::encode(root(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn any_change_to_a_head_changes_the_root() {
        let base = Head {
            stockpile_id: 1,
            last_sequence: 5,
            entry_count: 2,
            balance_g: 7,
            head_hash: "a".repeat(64),
        };
        let r = root(&[base.leaf_hash()]);
        for changed in [
            Head {
                last_sequence: 4,
                ..base.clone()
            },
            Head {
                entry_count: 1,
                ..base.clone()
            },
            Head {
                balance_g: 8,
                ..base.clone()
            },
            Head {
                head_hash: "b".repeat(64),
                ..base.clone()
            },
        ] {
            assert_ne!(root(&[changed.leaf_hash()]), r);
        }
    }

    #[test]
    fn checkpoint_hashes_commit_to_every_field() {
        let b = CheckpointBody {
            id: 1,
            created_at_micros: 2,
            last_sequence: 3,
            stockpiles: 4,
            merkle_root: "r",
            prev_hash: "p",
        };
        let h = b.hash();
        assert_ne!(CheckpointBody { id: 2, ..b.clone() }.hash(), h);
        assert_ne!(
            CheckpointBody {
                prev_hash: "q",
                ..b.clone()
            }
            .hash(),
            h
        );
        assert_ne!(
            CheckpointBody {
                last_sequence: 2,
                ..b
            }
            .hash(),
            h
        );
    }
}
