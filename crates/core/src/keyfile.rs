//! The key file format: a JSON object holding one Ed25519 signing key. Files
//! are written readable by their owner only (see `fundtrail_store::secret`).

use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

use crate::signing;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyFile {
    /// What the key is for, e.g. "root org mof" or "log".
    pub label: String,
    pub key_id: String,
    pub public_key_hex: String,
    pub secret_key_hex: String,
}

impl KeyFile {
    pub fn new(label: &str, key: &SigningKey) -> KeyFile {
        let public = key.verifying_key().to_bytes();
        KeyFile {
            label: label.to_string(),
            key_id: signing::key_id(&public),
            public_key_hex: hex::encode(public),
            secret_key_hex: hex::encode(key.to_bytes()),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a key file serializes")
    }

    /// Parses a key file and checks that its parts agree.
    pub fn from_json(text: &str) -> Result<(KeyFile, SigningKey), String> {
        let file: KeyFile =
            serde_json::from_str(text).map_err(|e| format!("not a fundtrail key file: {e}"))?;
        let secret: [u8; 32] = hex::decode(&file.secret_key_hex)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or("secret_key_hex must be 64 hex digits")?;
        let key = SigningKey::from_bytes(&secret);
        if hex::encode(key.verifying_key().to_bytes()) != file.public_key_hex {
            return Err("the key file's public key does not match its secret key".into());
        }
        if signing::key_id(&key.verifying_key().to_bytes()) != file.key_id {
            return Err("the key file's key_id does not match its key".into());
        }
        Ok((file, key))
    }
}
