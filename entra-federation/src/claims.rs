//! Reading a JWT's claims without verifying it, for logging and shape checks.
//!
//! The library never verifies tokens Entra just handed it (TLS already authenticated Entra);
//! it reads claims to fail fast on the wrong token shape and to log a summary. Only
//! the summary is ever logged, never the token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use std::fmt;

/// The claims the library inspects and logs. `aud` may be a string or a list.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClaimSummary {
    /// Issuer.
    pub iss: Option<String>,
    /// Audience (the first one when the token carries a list).
    #[serde(default, deserialize_with = "string_or_first")]
    pub aud: Option<String>,
    /// Subject.
    pub sub: Option<String>,
    /// Object id of the caller.
    pub oid: Option<String>,
    /// Tenant id.
    pub tid: Option<String>,
    /// Token version, `1.0` or `2.0`.
    pub ver: Option<String>,
    /// Client application (v1).
    pub appid: Option<String>,
    /// Client application (v2).
    pub azp: Option<String>,
    /// Expiry, Unix seconds.
    pub exp: Option<u64>,
    /// Issued at, Unix seconds (with `exp`, the token's lifetime on its issuer's clock).
    pub iat: Option<u64>,
}

/// Why a string is not a readable JWT.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClaimsError {
    /// Not three dot-separated parts.
    #[error("not a JWT (expected three dot-separated base64url parts)")]
    NotAJwt,
    /// The payload is not base64url.
    #[error("JWT payload is not base64url")]
    BadEncoding,
    /// The payload is not a JSON object of the expected types.
    #[error("JWT payload is not a JSON claims object: {0}")]
    BadJson(String),
}

impl ClaimSummary {
    /// Reads the claims of `jwt` without verifying its signature.
    ///
    /// ```
    /// use entra_federation::ClaimSummary;
    /// // {"alg":"none"} . {"iss":"https://sts.windows.net/t/","aud":["api://a"],"exp":1}
    /// let jwt = "eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwczovL3N0cy53aW5kb3dzLm5ldC90LyIsImF1ZCI6WyJhcGk6Ly9hIl0sImV4cCI6MX0.x";
    /// let c = ClaimSummary::read_unverified(jwt).unwrap();
    /// assert_eq!(c.aud.as_deref(), Some("api://a"));
    /// ```
    pub fn read_unverified(jwt: &str) -> Result<Self, ClaimsError> {
        let mut parts = jwt.split('.');
        let (Some(_header), Some(payload), Some(_sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ClaimsError::NotAJwt);
        };
        let bytes = URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .map_err(|_| ClaimsError::BadEncoding)?;
        serde_json::from_slice(&bytes).map_err(|e| ClaimsError::BadJson(e.to_string()))
    }
}

impl fmt::Display for ClaimSummary {
    /// `iss=… aud=… sub=… oid=… exp=…`, the shape the tutorial's verification step greps for.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        write!(
            f,
            "iss={} aud={} sub={} oid={} exp={}",
            show(&self.iss),
            show(&self.aud),
            show(&self.sub),
            show(&self.oid),
            self.exp
                .map(|e| e.to_string())
                .unwrap_or_else(|| "-".into())
        )
    }
}

fn string_or_first<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => None,
        Some(OneOrMany::One(s)) => Some(s),
        Some(OneOrMany::Many(v)) => v.into_iter().next(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(payload: &str) -> String {
        format!("e30.{}.sig", URL_SAFE_NO_PAD.encode(payload))
    }

    #[test]
    fn reads_string_and_list_audiences() {
        let c = ClaimSummary::read_unverified(&jwt(r#"{"aud":"api://x","exp":5}"#)).unwrap();
        assert_eq!(c.aud.as_deref(), Some("api://x"));
        assert_eq!(c.exp, Some(5));
        let c = ClaimSummary::read_unverified(&jwt(r#"{"aud":["a","b"]}"#)).unwrap();
        assert_eq!(c.aud.as_deref(), Some("a"));
    }

    #[test]
    fn rejects_non_jwts_with_typed_errors() {
        assert_eq!(
            ClaimSummary::read_unverified("abc"),
            Err(ClaimsError::NotAJwt)
        );
        assert_eq!(
            ClaimSummary::read_unverified("a.b.c.d"),
            Err(ClaimsError::NotAJwt)
        );
        assert_eq!(
            ClaimSummary::read_unverified("a.!!.c"),
            Err(ClaimsError::BadEncoding)
        );
        assert!(matches!(
            ClaimSummary::read_unverified(&jwt("[1]")),
            Err(ClaimsError::BadJson(_))
        ));
        // exp as a string is not what Entra or STS accept.
        assert!(matches!(
            ClaimSummary::read_unverified(&jwt(r#"{"exp":"5"}"#)),
            Err(ClaimsError::BadJson(_))
        ));
    }

    #[test]
    fn display_is_a_claim_summary_not_a_token() {
        let c = ClaimSummary {
            iss: Some("i".into()),
            aud: Some("a".into()),
            sub: Some("s".into()),
            oid: Some("o".into()),
            exp: Some(9),
            ..Default::default()
        };
        assert_eq!(c.to_string(), "iss=i aud=a sub=s oid=o exp=9");
    }
}
