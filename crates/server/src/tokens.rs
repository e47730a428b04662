//! Page tokens that name where a listing stopped — an account id, possibly
//! one the reader may not see — are sealed (ChaCha20-Poly1305, keyed from
//! the log key, bound to the method): a client can hand back only a token
//! this server issued for that call, and learns nothing from it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use fundtrail_core::Rejection;

/// Seals and opens page tokens.
pub struct TokenSealer {
    cipher: ChaCha20Poly1305,
}

const NONCE_BYTES: usize = 12;

impl TokenSealer {
    pub fn new(key: &[u8; 32]) -> TokenSealer {
        TokenSealer {
            cipher: ChaCha20Poly1305::new(Key::from_slice(key)),
        }
    }

    /// The token for `raw` in answers of `method`; empty stays empty.
    pub fn seal(&self, method: &str, raw: &str) -> String {
        if raw.is_empty() {
            return String::new();
        }
        let nonce: [u8; NONCE_BYTES] = rand::random();
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: raw.as_bytes(),
                    aad: method.as_bytes(),
                },
            )
            .expect("sealing a short token cannot fail");
        let mut token = nonce.to_vec();
        token.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(token)
    }

    /// The raw position of a token this server issued for `method`.
    pub fn open(&self, method: &str, token: &str) -> Result<String, Rejection> {
        if token.is_empty() {
            return Ok(String::new());
        }
        let refused = || {
            Rejection::invalid(
                "page_token",
                "the page token is not one this server issued for this call",
            )
        };
        let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| refused())?;
        if bytes.len() <= NONCE_BYTES {
            return Err(refused());
        }
        let (nonce, sealed) = bytes.split_at(NONCE_BYTES);
        let raw = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: method.as_bytes(),
                },
            )
            .map_err(|_| refused())?;
        String::from_utf8(raw).map_err(|_| refused())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_open_only_for_their_method_and_reveal_nothing() {
        let sealer = TokenSealer::new(&[9; 32]);
        let token = sealer.seal("/a", "dx-hh-0001");
        assert!(!token.contains("hh"));
        assert_eq!(sealer.open("/a", &token).unwrap(), "dx-hh-0001");
        assert!(sealer.open("/b", &token).is_err());
        assert!(sealer.open("/a", "dx-hh-0001").is_err());
        assert!(TokenSealer::new(&[8; 32]).open("/a", &token).is_err());
        assert_eq!(sealer.seal("/a", ""), "");
        assert_eq!(sealer.open("/a", "").unwrap(), "");
    }
}
