//! The request signature (docs/design.md §4, fixed): Ed25519 over
//! `"fundtrail/v1/request\n" ‖ payload`; the read signature
//! (docs/read-signature.md, fixed); and key ids.

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

/// The gRPC metadata of a signed read (docs/read-signature.md).
pub const READ_KEY_ID_HEADER: &str = "fundtrail-key-id";
pub const READ_SIGNED_AT_HEADER: &str = "fundtrail-signed-at-ms";
pub const READ_NONCE_HEADER: &str = "fundtrail-nonce";
/// Binary metadata: base64 on the wire, as gRPC sends every `-bin` key.
pub const READ_SIGNATURE_HEADER: &str = "fundtrail-signature-bin";

/// Request metadata: answer only from derived state that holds this record
/// (decimal seq), waiting for it at most `limits::MIN_SEQ_WAIT_MS`. How a
/// client reads its own writes (docs/access.md §6).
pub const MIN_SEQ_HEADER: &str = "fundtrail-min-seq";
/// Response metadata of every Ledger call: the durable record count when it
/// was answered (decimal), at least one more than any seq in the answer.
pub const RECORD_COUNT_HEADER: &str = "fundtrail-record-count";

/// Domain-separation prefix of every read signature.
pub const READ_SIGNING_PREFIX: &str = "fundtrail/v1/read\n";

/// What a read signature covers (docs/read-signature.md): the ledger, the
/// gRPC method, the exact request message bytes (by their SHA-256), when it
/// was signed and a fresh nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadClaim<'a> {
    pub ledger_id: &'a str,
    /// The gRPC method path, e.g. `/fundtrail.v1.Query/GetAccount`.
    pub method: &'a str,
    pub request_sha256: [u8; 32],
    pub signed_at_ms: i64,
    /// 32 lowercase hex digits (16 random bytes).
    pub nonce: &'a str,
}

impl ReadClaim<'_> {
    /// The signed bytes: the prefix, then each field on its own line, each
    /// line ended by `\n`: ledger id, method, lowercase hex SHA-256 of the
    /// request message, signed_at_ms in decimal, nonce.
    pub fn message(&self) -> Vec<u8> {
        format!(
            "{READ_SIGNING_PREFIX}{}\n{}\n{}\n{}\n{}\n",
            self.ledger_id,
            self.method,
            hex::encode(self.request_sha256),
            self.signed_at_ms,
            self.nonce
        )
        .into_bytes()
    }

    pub fn sign(&self, key: &SigningKey) -> [u8; 64] {
        key.sign(&self.message()).to_bytes()
    }

    /// Checks `signature` over this claim with `public_key`.
    pub fn verify(&self, public_key: &[u8; 32], signature: &[u8]) -> Result<(), Rejection> {
        let key = VerifyingKey::from_bytes(public_key).map_err(|_| {
            Rejection::unauthenticated(
                "fundtrail-key-id",
                "the registered public key is not a valid Ed25519 key",
            )
        })?;
        let signature = Signature::from_slice(signature).map_err(|_| {
            Rejection::unauthenticated(
                "fundtrail-signature-bin",
                "the read signature must be 64 bytes of Ed25519 signature",
            )
        })?;
        key.verify_strict(&self.message(), &signature).map_err(|_| {
            Rejection::unauthenticated(
                "fundtrail-signature-bin",
                "the read signature does not match the method, request, time and key (docs/read-signature.md)",
            )
        })
    }
}

/// A key's id: lowercase hex of the first 8 bytes of SHA-256(public key).
pub fn key_id(public_key: &[u8; 32]) -> String {
    let digest = Sha256::digest(public_key);
    hex::encode(&digest[..8])
}

/// Characters of every key id [`key_id`] makes.
pub const KEY_ID_CHARS: usize = 16;

/// Whether `text` has the shape of a key id: exactly [`KEY_ID_CHARS`]
/// lowercase hex digits. Anything else names no key, so it is refused
/// before any store is asked (a 64 KiB id once reached the key store and
/// failed the whole batch it came in).
pub fn is_key_id(text: &str) -> bool {
    text.len() == KEY_ID_CHARS && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Refuses a key id of the wrong shape, naming `field`.
pub fn check_key_id(field: &str, text: &str) -> Result<(), Rejection> {
    if is_key_id(text) {
        return Ok(());
    }
    let shown: String = text.chars().take(KEY_ID_CHARS + 4).collect();
    Err(Rejection::invalid(
        field,
        format!(
            "{field} must be {KEY_ID_CHARS} lowercase hex digits (a key's id); {shown:?}{} is not one",
            if shown.len() < text.len() { "…" } else { "" }
        ),
    ))
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
    verify_with(&verifying_key(public_key)?, payload, signature)
}

/// `public_key` decompressed, once, for [`verify_with`].
pub fn verifying_key(public_key: &[u8; 32]) -> Result<VerifyingKey, Rejection> {
    VerifyingKey::from_bytes(public_key).map_err(|_| {
        Rejection::unauthenticated(
            "key_id",
            "the registered public key is not a valid Ed25519 key",
        )
    })
}

/// [`verify`] with the key already decompressed. Strict (RFC 8032 with
/// small-order keys and R refused), one signature at a time: batch
/// verification answers otherwise for an R with a small-order component
/// (docs/record-format.md §5.2), and a record every outside verifier must
/// accept is admitted only by the check they make.
pub fn verify_with(key: &VerifyingKey, payload: &[u8], signature: &[u8]) -> Result<(), Rejection> {
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

    /// The exact bytes are a contract with clients in other languages.
    #[test]
    fn read_claim_bytes_are_fixed() {
        let claim = ReadClaim {
            ledger_id: "fundtrail-606991f8cb79",
            method: "/fundtrail.v1.Query/GetAccount",
            request_sha256: sha256(b""),
            signed_at_ms: 1_764_460_800_000,
            nonce: "000102030405060708090a0b0c0d0e0f",
        };
        assert_eq!(
            String::from_utf8(claim.message()).unwrap(),
            "fundtrail/v1/read\nfundtrail-606991f8cb79\n/fundtrail.v1.Query/GetAccount\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
             1764460800000\n000102030405060708090a0b0c0d0e0f\n"
        );
        let key = SigningKey::from_bytes(&[7; 32]);
        let signature = claim.sign(&key);
        // The value docs/read-signature.md gives, computed apart (Python's
        // `cryptography` package) from the documented bytes.
        assert_eq!(
            hex::encode(signature),
            "dc545502025dcae67020bb69b9dde3d61fc7becb0965697f27b9a96608e6aad7\
             ffb0b42f96e45216793d7a937d6fe358b2b7dfc590c06d43e0ca90e6e7adc003"
        );
        let public = key.verifying_key().to_bytes();
        assert_eq!(key_id(&public), "fe812c12f3ab4ce6");
        assert!(claim.verify(&public, &signature).is_ok());
        let other_method = ReadClaim {
            method: "/fundtrail.v1.Query/GetEntry",
            ..claim.clone()
        };
        assert!(other_method.verify(&public, &signature).is_err());
        // A request signature over the same bytes is not a read signature.
        assert!(verify(&public, &claim.message(), &signature).is_err());
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
