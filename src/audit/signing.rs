//! The reserve's Ed25519 signing key, and the canonical JSON a report's
//! signature covers.
//!
//! Canonical JSON: object members sorted by key (byte order; every key is
//! ASCII), no insignificant whitespace, strings escaped as serde_json (and
//! Python's `json.dumps(..., ensure_ascii=False)`) escape them, UTF-8. Reports
//! hold no floating-point numbers (quantities are decimal strings), so this is
//! RFC 8785 for the documents it is used on, and
//! `json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`
//! reproduces it byte for byte.

use base64::{engine::general_purpose::STANDARD, Engine};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde_json::Value;

/// The key that signs checkpoints and reports.
#[derive(Clone)]
pub struct AuditKey {
    signing: SigningKey,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the seed.
        write!(f, "AuditKey({})", self.public_base64())
    }
}

/// Reads a 32-byte seed written as base64 or as 64 hex characters.
fn seed_of(text: &str) -> Option<[u8; 32]> {
    let t = text.trim();
    if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        return hex::decode(t).ok()?.try_into().ok();
    }
    STANDARD.decode(t).ok()?.try_into().ok()
}

impl AuditKey {
    pub fn from_seed(seed: [u8; 32]) -> AuditKey {
        AuditKey {
            signing: SigningKey::from_bytes(&seed),
        }
    }

    /// `audit.signing_key`: a base64 (or hex) seed, or the path of a file
    /// holding one.
    pub fn parse(spec: &str) -> anyhow::Result<AuditKey> {
        if let Some(seed) = seed_of(spec) {
            return Ok(AuditKey::from_seed(seed));
        }
        let path = std::path::Path::new(spec.trim());
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!(
                "audit.signing_key is neither a base64 or hex 32-byte seed nor a readable file ({e})"
            )
        })?;
        seed_of(&text).map(AuditKey::from_seed).ok_or_else(|| {
            anyhow::anyhow!(
                "audit.signing_key: {} does not hold a base64 or hex 32-byte seed",
                path.display()
            )
        })
    }

    pub fn public_bytes(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    pub fn public_base64(&self) -> String {
        STANDARD.encode(self.public_bytes())
    }

    /// Detached Ed25519 signature of `message`, base64.
    pub fn sign(&self, message: &[u8]) -> String {
        STANDARD.encode(self.signing.sign(message).to_bytes())
    }
}

/// Checks a base64 signature of `message` under a base64 public key.
pub fn verify(public_key_b64: &str, message: &[u8], signature_b64: &str) -> Result<(), String> {
    let key: [u8; 32] = STANDARD
        .decode(public_key_b64.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("the public key is not 32 bytes of base64")?;
    let key =
        VerifyingKey::from_bytes(&key).map_err(|_| "the public key is not a valid Ed25519 key")?;
    let sig: [u8; 64] = STANDARD
        .decode(signature_b64.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("the signature is not 64 bytes of base64")?;
    key.verify(message, &Signature::from_bytes(&sig))
        .map_err(|_| {
            "the signature does not verify: the document or the key differs from what was signed"
                .to_string()
        })
}

/// The canonical encoding of `value` (see the module documentation).
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_at_every_depth_and_drops_whitespace() {
        let v = json!({"b": 1, "a": {"d": [true, null, "x\"y\n"], "c": "é"}});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"c":"é","d":[true,null,"x\"y\n"]},"b":1}"#
        );
        // Key order on input does not matter.
        let w = json!({"a": {"c": "é", "d": [true, null, "x\"y\n"]}, "b": 1});
        assert_eq!(canonical_json(&v), canonical_json(&w));
    }

    #[test]
    fn signatures_verify_and_any_change_breaks_them() {
        let key = AuditKey::from_seed([7u8; 32]);
        let doc = canonical_json(&json!({"closing_kg": "100.000"}));
        let sig = key.sign(doc.as_bytes());
        assert!(verify(&key.public_base64(), doc.as_bytes(), &sig).is_ok());
        let tampered = doc.replace("100.000", "100.001");
        assert!(verify(&key.public_base64(), tampered.as_bytes(), &sig).is_err());
        let other = AuditKey::from_seed([8u8; 32]);
        assert!(verify(&other.public_base64(), doc.as_bytes(), &sig).is_err());
        assert!(verify("not base64", doc.as_bytes(), &sig).is_err());
    }

    #[test]
    fn seeds_parse_from_base64_hex_or_a_file() {
        let b64 = STANDARD.encode([7u8; 32]);
        let a = AuditKey::parse(&b64).unwrap();
        let b = AuditKey::parse(&hex::encode([7u8; 32])).unwrap();
        assert_eq!(a.public_bytes(), b.public_bytes());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("seed");
        std::fs::write(&file, format!("{b64}\n")).unwrap();
        let c = AuditKey::parse(file.to_str().unwrap()).unwrap();
        assert_eq!(a.public_bytes(), c.public_bytes());
        assert!(AuditKey::parse("short").is_err());
        assert!(
            !format!("{a:?}").contains(&b64),
            "Debug never shows the seed"
        );
    }

    /// RFC 8032 §7.1, test 1: the key derivation and signature are standard.
    #[test]
    fn rfc_8032_test_vector_1() {
        let seed: [u8; 32] =
            hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .unwrap()
                .try_into()
                .unwrap();
        let key = AuditKey::from_seed(seed);
        assert_eq!(
            hex::encode(key.public_bytes()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        let sig = STANDARD.decode(key.sign(b"")).unwrap();
        assert_eq!(hex::encode(sig), "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b");
    }
}
