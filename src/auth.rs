//! Bearer-token authentication: claims, the `AuthUser` extractor, role and depot
//! scope checks, and token minting for the CLI.

use std::collections::BTreeSet;
use std::future::{ready, Ready};

use actix_web::{dev::Payload, http::header, web, FromRequest, HttpMessage, HttpRequest};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::AuthSettings;
use crate::error::ApiError;
use crate::AppState;

/// What a token may do. Parsed exactly: `"Admin"` or `"ADMIN"` is not a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Approver,
    Auditor,
    Admin,
    /// A qualified buyer: the token's subject is a buyer code.
    Bidder,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Viewer,
        Role::Operator,
        Role::Approver,
        Role::Auditor,
        Role::Admin,
        Role::Bidder,
    ];

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
            Role::Bidder => "bidder",
        }
    }
}

/// The JWT claims `reserve` issues and accepts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub roles: Vec<String>,
    /// Depot codes the token is limited to; absent means every depot. An
    /// explicit `null` is refused rather than read as "every depot": a token
    /// that widens its own scope by a typo must not pass.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "depots_not_null"
    )]
    pub depots: Option<Vec<String>>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub iss: String,
    pub aud: String,
}

/// Marker in the decoding error of a `"depots": null` claim, so that `verify`
/// can say what is wrong instead of "malformed".
const DEPOTS_NULL: &str = "depots claim is null";

/// Reads a present `depots` claim, refusing `null` (an absent claim never gets
/// here: `#[serde(default)]` makes it `None`).
fn depots_not_null<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<String>>, D::Error> {
    match Option::<Vec<String>>::deserialize(d)? {
        Some(depots) => Ok(Some(depots)),
        None => Err(serde::de::Error::custom(DEPOTS_NULL)),
    }
}

/// Signing and verification keys with the pinned validation rules.
///
/// Keys rotate by `kid`: tokens are signed with the current key and carry its
/// `kid`; verification accepts the current key and any retired key still
/// listed in `auth.previous_keys`. Dropping a retired key from that list
/// revokes every token it signed.
#[derive(Clone)]
pub struct TokenKeys {
    kid: String,
    encoding: EncodingKey,
    /// `kid` → verification key; the current key is among them.
    decoding: std::collections::BTreeMap<String, DecodingKey>,
    validation: Validation,
    issuer: String,
    audience: String,
    /// Longest lifetime a token may have (`auth.max_token_lifetime_days`), in
    /// seconds: minted tokens may not exceed it and longer ones are refused.
    max_lifetime_secs: i64,
}

/// Minimum HS256 secret length: RFC 7518 §3.2 asks for a key at least as long
/// as the hash output.
pub const MIN_SECRET_BYTES: usize = 32;

/// Parses `auth.previous_keys`: `kid=secret` pairs separated by commas.
fn parse_previous_keys(spec: &str) -> anyhow::Result<Vec<(String, String)>> {
    spec.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|pair| {
            // The entry may be a bare secret: never echo it into an error.
            let (kid, secret) = pair
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("auth.previous_keys: every entry must read kid=secret"))?;
            anyhow::ensure!(!kid.trim().is_empty(), "auth.previous_keys: a key has an empty kid");
            anyhow::ensure!(
                secret.len() >= MIN_SECRET_BYTES,
                "auth.previous_keys: the secret of kid {kid:?} must be at least {MIN_SECRET_BYTES} bytes"
            );
            Ok((kid.trim().to_string(), secret.to_string()))
        })
        .collect()
}

impl TokenKeys {
    pub fn hs256(secret: &[u8], settings: &AuthSettings) -> anyhow::Result<TokenKeys> {
        anyhow::ensure!(
            secret.len() >= MIN_SECRET_BYTES,
            "the JWT secret must be at least {MIN_SECRET_BYTES} bytes"
        );
        anyhow::ensure!(
            !settings.jwt_kid.trim().is_empty(),
            "auth.jwt_kid must not be empty"
        );
        anyhow::ensure!(
            (1..=3660).contains(&settings.max_token_lifetime_days),
            "auth.max_token_lifetime_days must be between 1 and 3660"
        );
        // Idempotent; explicit so that no other crate's feature choice can leave
        // jsonwebtoken without a provider.
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
        // Only HS256: a token announcing any other algorithm (`none`, RS256, ...)
        // is refused before its signature is looked at.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[settings.issuer.as_str()]);
        validation.set_audience(&[settings.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        validation.leeway = settings.leeway_secs;
        validation.validate_nbf = true;
        validation.validate_exp = true;
        let mut decoding = std::collections::BTreeMap::new();
        for (kid, old) in parse_previous_keys(&settings.previous_keys)? {
            decoding.insert(kid, DecodingKey::from_secret(old.as_bytes()));
        }
        decoding.insert(settings.jwt_kid.clone(), DecodingKey::from_secret(secret));
        Ok(TokenKeys {
            kid: settings.jwt_kid.clone(),
            encoding: EncodingKey::from_secret(secret),
            decoding,
            validation,
            issuer: settings.issuer.clone(),
            audience: settings.audience.clone(),
            max_lifetime_secs: settings.max_token_lifetime_days as i64 * 86_400,
        })
    }

    /// The longest lifetime a token may have, in whole days.
    pub fn max_lifetime_days(&self) -> i64 {
        self.max_lifetime_secs / 86_400
    }

    /// Signs a token for `sub` with `roles`, limited to `depots` when given.
    pub fn mint(
        &self,
        sub: &str,
        roles: &[Role],
        depots: Option<Vec<String>>,
        ttl: chrono::Duration,
    ) -> anyhow::Result<String> {
        anyhow::ensure!(
            ttl.num_seconds() <= self.max_lifetime_secs,
            "a token may live at most {} days (auth.max_token_lifetime_days); ask for a shorter lifetime",
            self.max_lifetime_days()
        );
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: sub.to_string(),
            roles: roles.iter().map(|r| r.as_str().to_string()).collect(),
            depots,
            exp: now + ttl.num_seconds(),
            iat: now,
            nbf: now,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        Ok(encode(&header, &claims, &self.encoding)?)
    }

    /// Verifies signature, algorithm, issuer, audience and time window.
    pub fn verify(&self, token: &str) -> Result<AuthUser, ApiError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| ApiError::Unauthorized("the token is malformed".into()))?;
        // A token without `kid` can only be checked against the current key.
        let kid = header.kid.as_deref().unwrap_or(&self.kid);
        let key = self.decoding.get(kid).ok_or_else(|| {
            ApiError::Unauthorized(
                "the token was signed with a key that is no longer accepted".into(),
            )
        })?;
        let data = decode::<Claims>(token, key, &self.validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            let why = match e.kind() {
                K::ExpiredSignature => "the token has expired",
                K::ImmatureSignature => "the token is not valid yet",
                K::InvalidIssuer => "the token was issued by someone else",
                K::InvalidAudience => "the token is meant for another service",
                K::InvalidAlgorithm | K::InvalidAlgorithmName => {
                    "the token's algorithm is not accepted"
                }
                K::InvalidSignature => "the token's signature does not verify",
                K::MissingRequiredClaim(_) => "the token lacks a required claim",
                K::Json(e) if e.to_string().contains(DEPOTS_NULL) => {
                    "the token's `depots` claim is null: leave it out to cover every depot, \
                     or list depot codes"
                }
                _ => "the token is malformed",
            };
            ApiError::Unauthorized(why.into())
        })?;
        let claims = data.claims;
        // A token that lives longer than policy allows is refused even though
        // its signature verifies: judged from its issue time, and from now in
        // case `iat` was set ahead to make the span look short.
        let now = chrono::Utc::now().timestamp();
        let lifetime = claims.exp.saturating_sub(claims.iat.min(now));
        if lifetime > self.max_lifetime_secs {
            return Err(ApiError::Unauthorized(format!(
                "the token lives longer than the {}-day maximum (auth.max_token_lifetime_days); \
                 mint one with a shorter lifetime",
                self.max_lifetime_days()
            )));
        }
        if claims.sub.trim().is_empty() || claims.sub.len() > 200 {
            return Err(ApiError::Unauthorized(
                "the token's subject is empty or too long".into(),
            ));
        }
        let roles: BTreeSet<Role> = claims.roles.iter().filter_map(|r| Role::parse(r)).collect();
        if roles.is_empty() {
            return Err(ApiError::Forbidden(
                "the token carries no known role".into(),
            ));
        }
        let depots = claims
            .depots
            .map(|d| d.into_iter().collect::<BTreeSet<_>>());
        Ok(AuthUser {
            subject: claims.sub,
            roles,
            depots,
            expires_at: claims.exp,
        })
    }
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub subject: String,
    pub roles: BTreeSet<Role>,
    /// `None`: every depot. `Some(codes)`: only those depots.
    pub depots: Option<BTreeSet<String>>,
    /// When the token expires (Unix seconds): an event stream ends then.
    pub expires_at: i64,
}

impl AuthUser {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.has(role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this needs the {} role",
                role.as_str()
            )))
        }
    }

    /// Refuses a write at a depot outside the token's scope.
    pub fn require_depot(&self, code: &str) -> Result<(), ApiError> {
        match &self.depots {
            Some(scope) if !scope.contains(code) => Err(ApiError::Forbidden(format!(
                "the token is not scoped to depot {code}"
            ))),
            _ => Ok(()),
        }
    }

    /// Auditors (and admins) may see who posted each entry; others see it redacted.
    pub fn may_see_actors(&self) -> bool {
        self.has(Role::Auditor) || self.has(Role::Admin)
    }
}

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = Ready<Result<AuthUser, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req))
    }
}

/// A role an endpoint requires, checked by the `Authorized` extractor before any
/// other extractor reads headers or body: a caller without the role gets 403
/// whatever else is wrong with the request.
pub trait RequiredRole {
    const ROLE: Role;
}

pub struct Operator;
impl RequiredRole for Operator {
    const ROLE: Role = Role::Operator;
}

pub struct Admin;
impl RequiredRole for Admin {
    const ROLE: Role = Role::Admin;
}

pub struct Approver;
impl RequiredRole for Approver {
    const ROLE: Role = Role::Approver;
}

pub struct Auditor;
impl RequiredRole for Auditor {
    const ROLE: Role = Role::Auditor;
}

pub struct Bidder;
impl RequiredRole for Bidder {
    const ROLE: Role = Role::Bidder;
}

/// An authenticated caller holding role `R`.
pub struct Authorized<R>(pub AuthUser, pub std::marker::PhantomData<R>);

impl<R: RequiredRole> FromRequest for Authorized<R> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req).and_then(|user| {
            user.require(R::ROLE)?;
            Ok(Authorized(user, std::marker::PhantomData))
        }))
    }
}

/// The caller of a request with an `Authorization: Bearer` header.
pub fn authenticate(req: &HttpRequest) -> Result<AuthUser, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("AppState missing")))?;
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthorized("send `Authorization: Bearer <token>`".into()))?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthorized("the Authorization header is not ASCII".into()))?;
    let token = bearer_token(value)?;
    let user = state.keys.verify(token)?;
    // A subject that keeps asking for what it may not do is slowed down too.
    state.throttle.check_subject(&user.subject)?;
    req.extensions_mut()
        .insert(crate::http::throttle::Subject(user.subject.clone()));
    // For the audit trail, which records who attempted each write.
    req.extensions_mut().insert(user.clone());
    Ok(user)
}

/// The token of an `Authorization: Bearer <token>` header value. The scheme is
/// case-insensitive (RFC 9110 §11.1); an empty token is named as such, since
/// HTTP parsers drop the trailing space of `Bearer ` and the value then looks
/// like a wrong scheme.
fn bearer_token(value: &str) -> Result<&str, ApiError> {
    let value = value.trim();
    let (scheme, token) = value.split_once([' ', '\t']).unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(ApiError::Unauthorized(
            "the Authorization scheme must be Bearer: send `Authorization: Bearer <token>`".into(),
        ));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(ApiError::Unauthorized(
            "the bearer token is empty: send `Authorization: Bearer <token>` with a token after the space"
                .into(),
        ));
    }
    Ok(token)
}

/// Parses `30m`, `8h`, `7d`, `3600s` (or bare seconds) into a duration.
pub fn parse_ttl(s: &str) -> Result<chrono::Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: i64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: use e.g. 30m, 8h, 7d"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("invalid duration unit in {s:?}: use s, m, h or d")),
    };
    if secs <= 0 || secs > 366 * 86_400 {
        return Err("the duration must be between 1 second and 366 days".into());
    }
    Ok(chrono::Duration::seconds(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AuthSettings {
        AuthSettings {
            jwt_secret: String::new(),
            jwt_kid: "k1".into(),
            previous_keys: String::new(),
            max_failures_per_minute: 30,
            issuer: "reserve".into(),
            audience: "reserve-api".into(),
            leeway_secs: 0,
            max_token_lifetime_days: 30,
        }
    }

    #[test]
    fn minted_tokens_verify_with_their_roles_and_scope() {
        let keys = TokenKeys::hs256(&[7u8; 32], &settings()).unwrap();
        let t = keys
            .mint(
                "alice",
                &[Role::Operator],
                Some(vec!["NV1".into()]),
                chrono::Duration::hours(1),
            )
            .unwrap();
        let user = keys.verify(&t).unwrap();
        assert_eq!(user.subject, "alice");
        assert!(user.has(Role::Operator) && !user.has(Role::Admin));
        assert!(user.require_depot("NV1").is_ok());
        assert!(user.require_depot("TX2").is_err());
    }

    #[test]
    fn rotated_keys_verify_until_retired() {
        let old = TokenKeys::hs256(&[1u8; 32], &settings()).unwrap();
        let token = old
            .mint("alice", &[Role::Viewer], None, chrono::Duration::hours(1))
            .unwrap();
        let mut rotated = settings();
        rotated.jwt_kid = "k2".into();
        rotated.previous_keys = format!("k1={}", String::from_utf8(vec![1u8; 32]).unwrap());
        let during = TokenKeys::hs256(&[2u8; 32], &rotated).unwrap();
        assert!(
            during.verify(&token).is_ok(),
            "a retired key still listed verifies"
        );
        rotated.previous_keys = String::new();
        let after = TokenKeys::hs256(&[2u8; 32], &rotated).unwrap();
        assert!(
            matches!(after.verify(&token), Err(ApiError::Unauthorized(_))),
            "dropping the key revokes its tokens"
        );
        let fresh = after
            .mint("alice", &[Role::Viewer], None, chrono::Duration::hours(1))
            .unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&fresh).unwrap().kid.as_deref(),
            Some("k2")
        );
        assert!(parse_previous_keys("k0=short").is_err());
    }

    #[test]
    fn roles_are_case_sensitive() {
        assert_eq!(Role::parse("admin"), Some(Role::Admin));
        assert_eq!(Role::parse("Admin"), None);
        assert_eq!(Role::parse("ADMIN"), None);
        assert_eq!(Role::parse("admin "), None);
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(TokenKeys::hs256(b"short", &settings()).is_err());
    }

    #[test]
    fn ttl_parses_units() {
        assert_eq!(parse_ttl("30m").unwrap().num_seconds(), 1800);
        assert_eq!(parse_ttl("8h").unwrap().num_seconds(), 28_800);
        assert_eq!(parse_ttl("90").unwrap().num_seconds(), 90);
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("5y").is_err());
        assert!(parse_ttl("-5m").is_err());
    }

    #[test]
    fn bearer_headers_are_read_and_an_empty_token_is_named() {
        assert_eq!(bearer_token("Bearer abc").unwrap(), "abc");
        assert_eq!(bearer_token("bearer  abc ").unwrap(), "abc");
        assert_eq!(bearer_token("BEARER abc").unwrap(), "abc");
        let why = |v: &str| match bearer_token(v) {
            Err(ApiError::Unauthorized(m)) => m,
            other => panic!("{v:?} gave {other:?}"),
        };
        assert!(why("Bearer").contains("empty"), "{}", why("Bearer"));
        assert!(why("Bearer   ").contains("empty"));
        assert!(why("Basic abc").contains("scheme must be Bearer"));
        assert!(why("Bearerabc").contains("scheme must be Bearer"));
    }

    #[test]
    fn tokens_past_the_maximum_lifetime_are_neither_minted_nor_accepted() {
        let keys = TokenKeys::hs256(&[7u8; 32], &settings()).unwrap();
        assert!(keys
            .mint("a", &[Role::Viewer], None, chrono::Duration::days(30))
            .is_ok());
        let err = keys
            .mint("a", &[Role::Viewer], None, chrono::Duration::days(31))
            .unwrap_err();
        assert!(err.to_string().contains("at most 30 days"), "{err}");
        // A token signed with the right key by someone else, living a century.
        let now = chrono::Utc::now().timestamp();
        let forge = |iat: i64, exp: i64| {
            let claims = Claims {
                sub: "a".into(),
                roles: vec!["viewer".into()],
                depots: None,
                exp,
                iat,
                nbf: now,
                iss: "reserve".into(),
                aud: "reserve-api".into(),
            };
            let mut header = Header::new(Algorithm::HS256);
            header.kid = Some("k1".into());
            encode(&header, &claims, &EncodingKey::from_secret(&[7u8; 32])).unwrap()
        };
        let century = now + 100 * 365 * 86_400;
        match keys.verify(&forge(now, century)) {
            Err(ApiError::Unauthorized(m)) => assert!(m.contains("30-day maximum"), "{m}"),
            other => panic!("a century-long token passed: {other:?}"),
        }
        // `iat` set ahead does not shorten the span that counts.
        assert!(keys.verify(&forge(century - 86_400, century)).is_err());
        assert!(keys.verify(&forge(now, now + 29 * 86_400)).is_ok());
    }
}
