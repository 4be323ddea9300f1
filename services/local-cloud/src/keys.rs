//! RSA signing keys of one issuer: generated at start, published as a JWKS, rotated on demand.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Serialize;
use std::sync::Arc;

/// One RSA key.
pub struct SigningKey {
    /// Key id (also the `x5t` in v1 tokens, as Entra does).
    pub kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    n: String,
    e: String,
    x5c: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a 2048-bit RSA key and a self-signed certificate for its `x5c`.
    pub fn generate() -> Result<Self, String> {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::rsa::{KeyPair, KeySize};
        use aws_lc_rs::signature::KeyPair as _;
        let key =
            KeyPair::generate(KeySize::Rsa2048).map_err(|e| format!("RSA key generation: {e}"))?;
        let pkcs8 = key.as_der().map_err(|e| format!("RSA key encoding: {e}"))?;
        let pem = pem_wrap("PRIVATE KEY", pkcs8.as_ref());
        let encoding = EncodingKey::from_rsa_pem(pem.as_bytes())
            .map_err(|e| format!("RSA key import: {e}"))?;
        let public = key.public_key();
        let n = URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero());
        let e = URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero());
        let decoding =
            DecodingKey::from_rsa_components(&n, &e).map_err(|e| format!("RSA public key: {e}"))?;
        let kid = URL_SAFE_NO_PAD.encode(random_bytes::<20>());
        let cert_key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
            &pkcs8.as_ref().into(),
            &rcgen::PKCS_RSA_SHA256,
        )
        .map_err(|e| format!("certificate key: {e}"))?;
        let mut params =
            rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| e.to_string())?;
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            "accounts.accesscontrol.windows.net",
        );
        let cert = params
            .self_signed(&cert_key)
            .map_err(|e| format!("certificate: {e}"))?;
        let x5c = STANDARD.encode(cert.der());
        Ok(Self {
            kid,
            encoding,
            decoding,
            n,
            e,
            x5c,
        })
    }

    /// The public key, for verifying.
    pub fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }
}

/// The keys of one issuer; the first signs.
#[derive(Debug, Clone)]
pub struct KeySet {
    keys: Vec<Arc<SigningKey>>,
}

#[derive(Serialize)]
struct Jwk<'a> {
    kty: &'static str,
    #[serde(rename = "use")]
    use_: &'static str,
    kid: &'a str,
    x5t: &'a str,
    n: &'a str,
    e: &'a str,
    x5c: [&'a str; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    issuer: Option<&'a str>,
}

impl KeySet {
    /// A new set with one generated key.
    pub fn generate() -> Result<Self, String> {
        Ok(Self {
            keys: vec![Arc::new(SigningKey::generate()?)],
        })
    }

    /// A new signing key; the previous ones stay published (at most three in all), as Entra
    /// publishes upcoming and retiring keys.
    pub fn rotate(&mut self) -> Result<(), String> {
        self.keys.insert(0, Arc::new(SigningKey::generate()?));
        self.keys.truncate(3);
        Ok(())
    }

    /// The key that signs now.
    pub fn current(&self) -> &Arc<SigningKey> {
        &self.keys[0]
    }

    /// A published key by id.
    pub fn find(&self, kid: &str) -> Option<&Arc<SigningKey>> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// The JWKS document; `issuer` is set on v2 keys, as Entra's v2 keys document does.
    pub fn jwks(&self, issuer: Option<&str>) -> serde_json::Value {
        let keys: Vec<Jwk<'_>> = self
            .keys
            .iter()
            .map(|k| Jwk {
                kty: "RSA",
                use_: "sig",
                kid: &k.kid,
                x5t: &k.kid,
                n: &k.n,
                e: &k.e,
                x5c: [&k.x5c],
                issuer,
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }

    /// Signs `claims` as an RS256 JWT with the current key; `with_x5t` adds the v1 header field.
    pub fn sign(&self, claims: &serde_json::Value, with_x5t: bool) -> String {
        let key = self.current();
        let mut header = Header::new(Algorithm::RS256);
        header.typ = Some("JWT".into());
        header.kid = Some(key.kid.clone());
        if with_x5t {
            header.x5t = Some(key.kid.clone());
        }
        jsonwebtoken::encode(&header, claims, &key.encoding)
            .expect("RS256 signing with a generated key cannot fail")
    }
}

/// Why a token's signature was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    /// Not a JWT.
    Malformed,
    /// Not RS256.
    Algorithm,
    /// No published key has its `kid`.
    UnknownKey,
    /// The signature does not verify.
    Signature,
}

impl KeySet {
    /// Verifies an RS256 signature with the published key its `kid` names and returns the claims;
    /// time, issuer and audience are the caller's to check (each service reports them its own way).
    pub fn verify(&self, token: &str) -> Result<serde_json::Value, VerifyError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
        if header.alg != Algorithm::RS256 {
            return Err(VerifyError::Algorithm);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|k| self.find(k))
            .ok_or(VerifyError::UnknownKey)?;
        let mut v = Validation::new(Algorithm::RS256);
        v.validate_exp = false;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        jsonwebtoken::decode::<serde_json::Value>(token, key.decoding_key(), &v)
            .map(|d| d.claims)
            .map_err(|_| VerifyError::Signature)
    }
}

fn pem_wrap(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Random bytes from the system RNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    aws_lc_rs::rand::fill(&mut b).expect("system RNG");
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Validation, decode};

    #[test]
    fn signed_tokens_verify_with_the_published_key_only() {
        let mut set = KeySet::generate().unwrap();
        let token = set.sign(&serde_json::json!({"sub":"x","exp":4102444800u64}), true);
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.x5t, header.kid);
        let key = set.find(header.kid.as_deref().unwrap()).unwrap();
        let mut v = Validation::new(Algorithm::RS256);
        v.validate_aud = false;
        decode::<serde_json::Value>(&token, key.decoding_key(), &v).unwrap();
        set.rotate().unwrap();
        assert_ne!(set.current().kid, header.kid.clone().unwrap());
        assert!(
            set.find(header.kid.as_deref().unwrap()).is_some(),
            "the previous key stays published"
        );
        let jwks = set.jwks(Some("iss"));
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
        assert_eq!(jwks["keys"][0]["e"], "AQAB");
        assert!(decode::<serde_json::Value>(&token, set.current().decoding_key(), &v).is_err());
    }
}
