//! The request signature (DESIGN.md §4, fixed): Ed25519 over
//! `"fundtrail/v1/request\n" ‖ payload`, and key ids.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::Rejection;

/// Domain-separation prefix of every request signature.
pub const REQUEST_SIGNING_PREFIX: &[u8] = b"fundtrail/v1/request\n";

/// The bytes a request signature covers.
pub fn signed_message(payload: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(REQUEST_SIGNING_PREFIX.len() + payload.len());
    message.extend_from_slice(REQUEST_SIGNING_PREFIX);
    message.extend_from_slice(payload);
    message
}

/// A key's id: lowercase hex of the first 8 bytes of SHA-256(public key).
pub fn key_id(public_key: &[u8; 32]) -> String {
    let digest = Sha256::digest(public_key);
    hex::encode(&digest[..8])
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Signs a request payload.
pub fn sign(key: &SigningKey, payload: &[u8]) -> [u8; 64] {
    key.sign(&signed_message(payload)).to_bytes()
}

/// Checks that `signature` is `public_key`'s signature over `payload`.
pub fn verify(public_key: &[u8; 32], payload: &[u8], signature: &[u8]) -> Result<(), Rejection> {
    let key = VerifyingKey::from_bytes(public_key).map_err(|_| {
        Rejection::unauthenticated(
            "key_id",
            "the registered public key is not a valid Ed25519 key",
        )
    })?;
    let signature = Signature::from_slice(signature).map_err(|_| {
        Rejection::unauthenticated(
            "signature",
            "the signature must be 64 bytes of Ed25519 signature",
        )
    })?;
    key.verify_strict(&signed_message(payload), &signature).map_err(|_| {
        Rejection::unauthenticated(
            "signature",
            "the signature does not match the request and key; the request may have been altered or signed with another key",
        )
    })
}

/// Checks that `bytes` is a usable Ed25519 public key.
pub fn parse_public_key(field: &str, bytes: &[u8]) -> Result<[u8; 32], Rejection> {
    let key: [u8; 32] = bytes.try_into().map_err(|_| {
        Rejection::invalid(field, "a public key must be 32 bytes of Ed25519 public key")
    })?;
    let parsed = VerifyingKey::from_bytes(&key)
        .map_err(|_| Rejection::invalid(field, "the public key is not a valid Ed25519 key"))?;
    if parsed.is_weak() {
        return Err(Rejection::invalid(
            field,
            "the public key is a weak Ed25519 key",
        ));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_covers_prefix_and_payload() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let public = key.verifying_key().to_bytes();
        let sig = sign(&key, b"payload");
        assert!(verify(&public, b"payload", &sig).is_ok());
        assert!(verify(&public, b"payloaD", &sig).is_err());
        // A bare signature over the payload alone (no prefix) is refused.
        let bare = key.sign(b"payload").to_bytes();
        assert!(verify(&public, b"payload", &bare).is_err());
        assert!(verify(&public, b"payload", &sig[..63]).is_err());
    }

    #[test]
    fn key_id_is_16_hex_chars() {
        let id = key_id(&[1; 32]);
        assert_eq!(id.len(), 16);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    }
}
