//! C2SP Ed25519 checkpoint cosignatures, version 1
//! (<https://c2sp.org/tlog-cosignature>).
//!
//! A cosignature is a note signature line on a checkpoint, by a cosigner
//! (witness) that checked the checkpoint is consistent with what it saw before.
//! Its key id uses signature type 0x04; its signature bytes are
//! `timestamp (u64, big-endian) || Ed25519 signature`, and the Ed25519
//! signature covers
//!
//! ```text
//! cosignature/v1
//! time <timestamp in decimal>
//! <the whole checkpoint body>
//! ```
//!
//! The timestamp is POSIX seconds, at most 2^63 - 1. This follows the text of
//! the tlog-cosignature spec (the Ed25519 part, unchanged since v1.0.0); no
//! published Ed25519 cosignature with its public key was at hand to test
//! against, so the tests check the layout on the spec's example line and
//! round-trip our own signatures.

use std::fmt;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::note::NamedKey;
use crate::note::{check_key_name, key_id, open_note, signature_line, Verifier};

/// Signature type byte of Ed25519 cosignatures (cosignature/v1).
pub const SIGNATURE_TYPE_COSIGNATURE_V1: u8 = 0x04;

/// The largest cosignature timestamp: 2^63 - 1 seconds.
pub const MAX_COSIGNATURE_TIME: u64 = i64::MAX as u64;

/// Length of a cosignature's signature bytes after the key id: an 8-byte
/// timestamp and a 64-byte Ed25519 signature.
const COSIGNATURE_LEN: usize = 8 + 64;

/// Returns the message a cosignature/v1 signs: the header line, the time line
/// and the checkpoint body (which ends in a newline).
pub fn cosignature_message(checkpoint_body: &str, time_s: u64) -> String {
    format!("cosignature/v1\ntime {time_s}\n{checkpoint_body}")
}

/// Returns the timestamp of a cosignature, given its signature bytes after the
/// key id (as in [`crate::NoteSignature::signature`]). Does not verify it.
pub fn cosignature_time(signature: &[u8]) -> Result<u64> {
    if signature.len() != COSIGNATURE_LEN {
        return Err(Error::MalformedCosignature("signature is not 8 + 64 bytes"));
    }
    let mut time = [0u8; 8];
    time.copy_from_slice(&signature[..8]);
    let time = u64::from_be_bytes(time);
    if time > MAX_COSIGNATURE_TIME {
        return Err(Error::CosignatureTimeTooLarge(time));
    }
    Ok(time)
}

/// An Ed25519 cosigner key (signature type 0x04) with its name.
#[derive(Clone)]
pub struct CosignerKey {
    name: String,
    key_id: u32,
    signing_key: SigningKey,
}

impl fmt::Debug for CosignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CosignerKey")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

impl CosignerKey {
    /// Returns a cosigner for `name`, refusing invalid key names.
    ///
    /// The spec asks for a distinct key per cosigner name, since the signed
    /// message does not hold the name.
    pub fn new(name: &str, signing_key: SigningKey) -> Result<Self> {
        check_key_name(name)?;
        let public = signing_key.verifying_key().to_bytes();
        Ok(Self {
            name: name.to_string(),
            key_id: key_id(name, SIGNATURE_TYPE_COSIGNATURE_V1, &public),
            signing_key,
        })
    }

    /// Returns the key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// Returns the verifier for this key.
    pub fn verifier(&self) -> CosignatureVerifier {
        CosignatureVerifier(NamedKey {
            name: self.name.clone(),
            key_id: self.key_id,
            signature_type: SIGNATURE_TYPE_COSIGNATURE_V1,
            verifying_key: self.signing_key.verifying_key(),
        })
    }

    /// Returns the cosignature line `— <name> base64(key id || time || signature)\n`
    /// for `checkpoint_body` at `time_s` POSIX seconds. Append it to the
    /// checkpoint note to add the cosignature.
    ///
    /// Refuses a body that is not a strict checkpoint body (extension lines
    /// allowed) and a time above [`MAX_COSIGNATURE_TIME`].
    pub fn cosign(&self, checkpoint_body: &str, time_s: u64) -> Result<String> {
        Checkpoint::parse_with_extensions(checkpoint_body)?;
        if time_s > MAX_COSIGNATURE_TIME {
            return Err(Error::CosignatureTimeTooLarge(time_s));
        }
        let message = cosignature_message(checkpoint_body, time_s);
        let signature = self.signing_key.sign(message.as_bytes());
        let mut bytes = Vec::with_capacity(COSIGNATURE_LEN);
        bytes.extend_from_slice(&time_s.to_be_bytes());
        bytes.extend_from_slice(&signature.to_bytes());
        Ok(signature_line(&self.name, self.key_id, &bytes))
    }
}

/// Returns the cosignature line by the key `signing_key` named `name` on
/// `checkpoint_body` at `time_s`; see [`CosignerKey::cosign`].
pub fn cosign(
    checkpoint_body: &str,
    name: &str,
    signing_key: &SigningKey,
    time_s: u64,
) -> Result<String> {
    CosignerKey::new(name, signing_key.clone())?.cosign(checkpoint_body, time_s)
}

/// An Ed25519 cosigner's public key (signature type 0x04) with its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CosignatureVerifier(NamedKey);

impl CosignatureVerifier {
    /// Returns a verifier for `name`, refusing invalid key names.
    pub fn new(name: &str, verifying_key: VerifyingKey) -> Result<Self> {
        NamedKey::new(name, SIGNATURE_TYPE_COSIGNATURE_V1, verifying_key).map(Self)
    }

    /// Parses a verifier key string `<name>+<hex8 key id>+<base64(0x04 || 32-byte public key)>`.
    pub fn from_vkey(vkey: &str) -> Result<Self> {
        NamedKey::from_vkey(vkey, SIGNATURE_TYPE_COSIGNATURE_V1).map(Self)
    }

    /// Returns the verifier key string; see [`CosignatureVerifier::from_vkey`].
    pub fn vkey(&self) -> String {
        self.0.vkey()
    }

    /// Returns the Ed25519 public key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.0.verifying_key
    }
}

impl Verifier for CosignatureVerifier {
    fn name(&self) -> &str {
        &self.0.name
    }

    fn key_id(&self) -> u32 {
        self.0.key_id
    }

    /// Checks a cosignature on the note text (the checkpoint body).
    fn verify(&self, text: &[u8], signature: &[u8]) -> bool {
        let Ok(time) = cosignature_time(signature) else {
            return false;
        };
        let Ok(ed_signature) = Signature::from_slice(&signature[8..]) else {
            return false;
        };
        let mut message = format!("cosignature/v1\ntime {time}\n").into_bytes();
        message.extend_from_slice(text);
        self.0
            .verifying_key
            .verify_strict(&message, &ed_signature)
            .is_ok()
    }
}

/// Checks the cosignature by `cosigner` on a checkpoint note and returns its
/// timestamp in POSIX seconds.
///
/// The note text must be a strict checkpoint body (extension lines allowed).
/// Other signature lines, the log's included, are left unchecked: open the
/// note with [`crate::open_checkpoint`] too. Refuses a note without a
/// signature line from this cosigner ([`Error::MissingCosignature`]) and one
/// whose cosignature does not verify ([`Error::BadSignature`]).
pub fn verify_cosignature(note: &str, cosigner: &CosignatureVerifier) -> Result<u64> {
    let opened = open_note(note, &[cosigner]).map_err(|err| match err {
        Error::NoVerifiedSignature => Error::MissingCosignature {
            name: cosigner.0.name.clone(),
            key_id: cosigner.0.key_id,
        },
        other => other,
    })?;
    Checkpoint::parse_with_extensions(&opened.text)?;
    cosignature_time(&opened.verified[0].signature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::sign_checkpoint;
    use crate::note::{parse_signature_line, NoteSigner, NoteVerifier};
    use crate::open_checkpoint;
    use base64::engine::general_purpose::STANDARD as BASE64;
    use base64::Engine as _;

    const BODY: &str =
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

    fn witness() -> CosignerKey {
        CosignerKey::new("witness.example.com/w1", SigningKey::from_bytes(&[5; 32])).unwrap()
    }

    fn log() -> NoteSigner {
        NoteSigner::new(
            "example.com/behind-the-sofa",
            SigningKey::from_bytes(&[6; 32]),
        )
        .unwrap()
    }

    fn cosigned_note(time_s: u64) -> String {
        let cp = crate::Checkpoint::parse(BODY).unwrap();
        let note = sign_checkpoint(&cp, &log()).unwrap();
        note + &witness().cosign(BODY, time_s).unwrap()
    }

    #[test]
    fn message_layout_matches_spec_example() {
        assert_eq!(
            cosignature_message(BODY, 1679315147),
            "cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\n\
             CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
        );
        assert_eq!(cosignature_message(BODY, 0).lines().nth(1), Some("time 0"));
    }

    #[test]
    fn spec_example_line_has_key_id_time_signature() {
        // The spec's example cosignature line: 4 + 8 + 64 bytes, and the
        // timestamp is the one in the spec's example message.
        let line = "\u{2014} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==";
        let sig = parse_signature_line(line).unwrap();
        assert_eq!(sig.signature.len(), 72);
        assert_eq!(cosignature_time(&sig.signature).unwrap(), 1679315147);
    }

    #[test]
    fn published_cosigner_vkey_parses() {
        // A type-0x04 verifier key in use by a public witness.
        let vkey = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2";
        let v = CosignatureVerifier::from_vkey(vkey).unwrap();
        assert_eq!(v.key_id(), 0xda77ade7);
        assert_eq!(v.vkey(), vkey);
        // The same bytes are not a plain Ed25519 note key.
        assert!(NoteVerifier::from_vkey(vkey).is_err());
    }

    #[test]
    fn cosign_and_verify() {
        let note = cosigned_note(1679315147);
        let w = witness().verifier();
        assert_eq!(verify_cosignature(&note, &w).unwrap(), 1679315147);
        // The log signature still opens, with the cosignature left unchecked.
        let cp = open_checkpoint(&note, &log().verifier(), "example.com/behind-the-sofa").unwrap();
        assert_eq!(cp.tree_size, 20852163);
        // Opening with both verifiers checks both.
        let lv = log().verifier();
        let opened = open_note(&note, &[&lv, &w]).unwrap();
        assert_eq!(opened.verified.len(), 2);
        assert!(opened.unverified.is_empty());
        // A round trip through the vkey string.
        let w2 = CosignatureVerifier::from_vkey(&w.vkey()).unwrap();
        assert_eq!(w2, w);
        // The free function gives the same line.
        assert_eq!(
            cosign(
                BODY,
                "witness.example.com/w1",
                &SigningKey::from_bytes(&[5; 32]),
                7
            )
            .unwrap(),
            witness().cosign(BODY, 7).unwrap()
        );
    }

    #[test]
    fn key_id_uses_type_0x04() {
        let w = witness();
        let pk = SigningKey::from_bytes(&[5; 32]).verifying_key();
        assert_eq!(w.key_id(), key_id(w.name(), 0x04, pk.as_bytes()));
        assert_ne!(w.key_id(), key_id(w.name(), 0x01, pk.as_bytes()));
        let vkey = w.verifier().vkey();
        let encoded = vkey.splitn(3, '+').nth(2).unwrap();
        assert_eq!(BASE64.decode(encoded).unwrap()[0], 0x04);
    }

    #[test]
    fn tampering_fails() {
        let note = cosigned_note(1000);
        let w = witness().verifier();
        // Changed body.
        let changed = note.replacen("20852163", "20852164", 1);
        assert!(matches!(
            verify_cosignature(&changed, &w),
            Err(Error::BadSignature { .. })
        ));
        // Changed timestamp inside the signature.
        let line = note.lines().last().unwrap();
        let sig = parse_signature_line(line).unwrap();
        let mut bytes = sig.key_id.to_be_bytes().to_vec();
        bytes.extend_from_slice(&sig.signature);
        bytes[4 + 7] ^= 1;
        let forged = note.replace(
            line,
            &format!("\u{2014} {} {}", sig.name, BASE64.encode(&bytes)),
        );
        assert!(matches!(
            verify_cosignature(&forged, &w),
            Err(Error::BadSignature { .. })
        ));
        // A plain note signature from the same key and name is a different key id.
        let plain =
            NoteSigner::new("witness.example.com/w1", SigningKey::from_bytes(&[5; 32])).unwrap();
        let plain_note = crate::sign_note(BODY, &[&plain]).unwrap();
        assert!(matches!(
            verify_cosignature(&plain_note, &w),
            Err(Error::MissingCosignature { .. })
        ));
        // Another cosigner's key.
        let other = CosignerKey::new("witness.example.com/w1", SigningKey::from_bytes(&[4; 32]))
            .unwrap()
            .verifier();
        assert!(matches!(
            verify_cosignature(&note, &other),
            Err(Error::MissingCosignature { .. })
        ));
    }

    #[test]
    fn time_limits() {
        let w = witness();
        assert!(matches!(
            w.cosign(BODY, MAX_COSIGNATURE_TIME + 1),
            Err(Error::CosignatureTimeTooLarge(_))
        ));
        let note = cosigned_note(MAX_COSIGNATURE_TIME);
        assert_eq!(
            verify_cosignature(&note, &w.verifier()).unwrap(),
            MAX_COSIGNATURE_TIME
        );
        let mut sig = vec![0xff; 8];
        sig.extend_from_slice(&[0; 64]);
        assert!(matches!(
            cosignature_time(&sig),
            Err(Error::CosignatureTimeTooLarge(_))
        ));
        assert!(cosignature_time(&[0; 64]).is_err());
        assert!(!w.verifier().verify(BODY.as_bytes(), &sig));
        assert!(!w.verifier().verify(BODY.as_bytes(), &[0; 5]));
    }

    #[test]
    fn cosign_refuses_non_checkpoints() {
        let w = witness();
        assert!(w.cosign("not a checkpoint\n", 1).is_err());
        assert!(w.cosign(BODY.trim_end(), 1).is_err());
        // Extension lines are signed too.
        let ext = format!("{BODY}extension\n");
        let line = w.cosign(&ext, 1).unwrap();
        let note = crate::sign_note(&ext, &[&log()]).unwrap() + &line;
        assert_eq!(verify_cosignature(&note, &w.verifier()).unwrap(), 1);
        let changed = note.replacen("extension", "extensioN", 1);
        assert!(verify_cosignature(&changed, &w.verifier()).is_err());
    }

    #[test]
    fn debug_hides_private_key() {
        let dbg = format!("{:?}", witness());
        assert!(dbg.contains("witness.example.com/w1"));
        assert!(!dbg.contains("signing_key"));
    }
}
