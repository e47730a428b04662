//! C2SP signed notes (<https://c2sp.org/signed-note>) with Ed25519 keys.
//!
//! A signed note is a text ending in a newline, a blank line, and one or more
//! signature lines `— <key name> base64(key id || signature)`, each ending in a
//! newline. The key id is the first four bytes, big-endian, of
//! `SHA-256(key name || 0x0A || signature type || public key)`.

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The largest note [`open_note`] and [`sign_note`] accept, in bytes.
pub const MAX_NOTE_SIZE: usize = 1 << 20;

/// The most signature lines [`open_note`] accepts in one note (the spec asks
/// for at least 16).
pub const MAX_NOTE_SIGNATURES: usize = 100;

/// Signature type byte of plain Ed25519 note signatures.
pub const SIGNATURE_TYPE_ED25519: u8 = 0x01;

/// What starts each signature line: an em dash (U+2014) and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// What starts a signer key string.
const SIGNER_KEY_PREFIX: &str = "PRIVATE+KEY+";

/// Returns the key id of a key: the first four bytes, big-endian, of
/// `SHA-256(name || 0x0A || signature_type || public_key)`.
pub fn key_id(name: &str, signature_type: u8, public_key: &[u8]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', signature_type]);
    h.update(public_key);
    let digest = h.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Refuses key names the signed-note spec forbids: empty ones, and ones with a
/// `+`, Unicode whitespace or a control character.
pub fn check_key_name(name: &str) -> Result<()> {
    let bad = |c: char| c == '+' || c.is_whitespace() || c.is_control();
    if name.is_empty() || name.chars().any(bad) {
        return Err(Error::InvalidKeyName(name.to_string()));
    }
    Ok(())
}

/// A key that can check signatures on a note. [`open_note`] looks verifiers up
/// by name and key id.
pub trait Verifier {
    /// The key name on this key's signature lines.
    fn name(&self) -> &str;
    /// The key id on this key's signature lines.
    fn key_id(&self) -> u32;
    /// Reports whether `signature` (the bytes after the key id) is this key's
    /// signature on the note text `text`.
    fn verify(&self, text: &[u8], signature: &[u8]) -> bool;
}

/// An Ed25519 note signing key (signature type 0x01) with its name.
#[derive(Clone)]
pub struct NoteSigner {
    name: String,
    key_id: u32,
    signing_key: SigningKey,
}

impl fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// Returns a signer for `name`, refusing invalid names.
    pub fn new(name: &str, signing_key: SigningKey) -> Result<Self> {
        check_key_name(name)?;
        let public = signing_key.verifying_key().to_bytes();
        Ok(Self {
            name: name.to_string(),
            key_id: key_id(name, SIGNATURE_TYPE_ED25519, &public),
            signing_key,
        })
    }

    /// Parses a signer key string `PRIVATE+KEY+<name>+<hex8 key id>+<base64(0x01 || 32-byte seed)>`,
    /// as written by Go's `golang.org/x/mod/sumdb/note`.
    pub fn from_skey(skey: &str) -> Result<Self> {
        let rest = skey
            .strip_prefix(SIGNER_KEY_PREFIX)
            .ok_or(Error::MalformedSignerKey("missing PRIVATE+KEY+ prefix"))?;
        let (name, id, key) =
            split_key_string(rest, SIGNATURE_TYPE_ED25519).map_err(Error::MalformedSignerKey)?;
        let signer = Self::new(name, SigningKey::from_bytes(&key))?;
        if signer.key_id != id {
            return Err(Error::MalformedSignerKey("key id does not match the key"));
        }
        Ok(signer)
    }

    /// Returns the signer key string; see [`NoteSigner::from_skey`]. It holds the
    /// private key.
    pub fn skey(&self) -> String {
        format!(
            "{SIGNER_KEY_PREFIX}{}",
            key_string(
                &self.name,
                self.key_id,
                SIGNATURE_TYPE_ED25519,
                &self.signing_key.to_bytes()
            )
        )
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
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier(NamedKey {
            name: self.name.clone(),
            key_id: self.key_id,
            signature_type: SIGNATURE_TYPE_ED25519,
            verifying_key: self.signing_key.verifying_key(),
        })
    }

    /// Returns the signature line for `text`: `— <name> base64(key id || signature)\n`.
    fn signature_line(&self, text: &str) -> String {
        let signature = self.signing_key.sign(text.as_bytes());
        signature_line(&self.name, self.key_id, &signature.to_bytes())
    }
}

/// A named Ed25519 public key of one C2SP signature type, and its key id:
/// what note verifiers and cosignature verifiers both are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NamedKey {
    pub(crate) name: String,
    pub(crate) key_id: u32,
    pub(crate) signature_type: u8,
    pub(crate) verifying_key: VerifyingKey,
}

impl NamedKey {
    /// The key `verifying_key` named `name`, refusing invalid names.
    pub(crate) fn new(name: &str, signature_type: u8, verifying_key: VerifyingKey) -> Result<Self> {
        check_key_name(name)?;
        Ok(Self {
            name: name.to_string(),
            key_id: key_id(name, signature_type, verifying_key.as_bytes()),
            signature_type,
            verifying_key,
        })
    }

    /// Parses `<name>+<hex8 key id>+<base64(type || 32-byte public key)>`,
    /// refusing invalid names, another signature type, a key id that does
    /// not match the key, and bytes that are not an Ed25519 public key.
    pub(crate) fn from_vkey(vkey: &str, signature_type: u8) -> Result<Self> {
        let (name, id, key) =
            split_key_string(vkey, signature_type).map_err(Error::MalformedVerifierKey)?;
        let verifying_key = VerifyingKey::from_bytes(&key)
            .map_err(|_| Error::MalformedVerifierKey("not an Ed25519 public key"))?;
        let named = Self::new(name, signature_type, verifying_key)?;
        if named.key_id != id {
            return Err(Error::MalformedVerifierKey("key id does not match the key"));
        }
        Ok(named)
    }

    /// The verifier key string [`NamedKey::from_vkey`] parses.
    pub(crate) fn vkey(&self) -> String {
        key_string(
            &self.name,
            self.key_id,
            self.signature_type,
            self.verifying_key.as_bytes(),
        )
    }
}

/// An Ed25519 note verifier key (signature type 0x01) with its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteVerifier(NamedKey);

impl NoteVerifier {
    /// Returns a verifier for `name`, refusing invalid names.
    pub fn new(name: &str, verifying_key: VerifyingKey) -> Result<Self> {
        NamedKey::new(name, SIGNATURE_TYPE_ED25519, verifying_key).map(Self)
    }

    /// Parses a verifier key string `<name>+<hex8 key id>+<base64(0x01 || 32-byte public key)>`.
    ///
    /// Refuses invalid names, another signature type, a key id that does not
    /// match the key, and bytes that are not an Ed25519 public key.
    pub fn from_vkey(vkey: &str) -> Result<Self> {
        NamedKey::from_vkey(vkey, SIGNATURE_TYPE_ED25519).map(Self)
    }

    /// Returns the verifier key string; see [`NoteVerifier::from_vkey`].
    pub fn vkey(&self) -> String {
        self.0.vkey()
    }

    /// Returns the Ed25519 public key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.0.verifying_key
    }
}

impl Verifier for NoteVerifier {
    fn name(&self) -> &str {
        &self.0.name
    }

    fn key_id(&self) -> u32 {
        self.0.key_id
    }

    fn verify(&self, text: &[u8], signature: &[u8]) -> bool {
        let Ok(signature) = Signature::from_slice(signature) else {
            return false;
        };
        self.0.verifying_key.verify_strict(text, &signature).is_ok()
    }
}

/// One signature line of a note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    /// Key name.
    pub name: String,
    /// Key id.
    pub key_id: u32,
    /// The signature bytes that follow the key id.
    pub signature: Vec<u8>,
}

/// A note opened by [`open_note`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// The note text, with its final newline.
    pub text: String,
    /// Signatures from known keys, all verified, one per key, in note order.
    pub verified: Vec<NoteSignature>,
    /// Signature lines from unknown keys, unchecked, without their newline.
    pub unverified: Vec<String>,
}

/// Signs `text` with each signer and returns the signed note: the text, a
/// blank line, and one signature line per signer, in order.
///
/// Refuses a text that does not end in a newline or holds a control character
/// other than newline, no signers or more than [`MAX_NOTE_SIGNATURES`], and a
/// result larger than [`MAX_NOTE_SIZE`].
pub fn sign_note(text: &str, signers: &[&NoteSigner]) -> Result<String> {
    check_note_chars(text)?;
    if !text.ends_with('\n') {
        return Err(Error::MalformedNote("text does not end in a newline"));
    }
    if signers.is_empty() {
        return Err(Error::MalformedNote("no signers"));
    }
    if signers.len() > MAX_NOTE_SIGNATURES {
        return Err(Error::TooManySignatures {
            max: MAX_NOTE_SIGNATURES,
        });
    }
    let mut note = format!("{text}\n");
    for signer in signers {
        note.push_str(&signer.signature_line(text));
    }
    if note.len() > MAX_NOTE_SIZE {
        return Err(Error::NoteTooLarge {
            size: note.len(),
            max: MAX_NOTE_SIZE,
        });
    }
    Ok(note)
}

/// Parses a signed note and checks its signatures against `verifiers`.
///
/// A signature line whose name and key id both match a verifier must verify,
/// or the whole note is refused ([`Error::BadSignature`]). Other signature
/// lines are kept unchecked in [`Note::unverified`]. A note with no verified
/// signature is refused ([`Error::NoVerifiedSignature`]). So are notes that
/// break the format, hold control characters other than newline, are larger
/// than [`MAX_NOTE_SIZE`] or have more than [`MAX_NOTE_SIGNATURES`] signatures.
pub fn open_note(note: &str, verifiers: &[&dyn Verifier]) -> Result<Note> {
    let (text, lines) = split_note(note)?;
    let mut verified: Vec<NoteSignature> = Vec::new();
    let mut unverified = Vec::new();
    for line in lines {
        let sig = parse_signature_line(line)?;
        let mut known = verifiers
            .iter()
            .filter(|v| v.name() == sig.name && v.key_id() == sig.key_id);
        let Some(verifier) = known.next() else {
            unverified.push(line.to_string());
            continue;
        };
        if known.next().is_some() {
            return Err(Error::AmbiguousVerifier {
                name: sig.name,
                key_id: sig.key_id,
            });
        }
        if !verifier.verify(text.as_bytes(), &sig.signature) {
            return Err(Error::BadSignature {
                name: sig.name,
                key_id: sig.key_id,
            });
        }
        if !verified
            .iter()
            .any(|v| v.name == sig.name && v.key_id == sig.key_id)
        {
            verified.push(sig);
        }
    }
    if verified.is_empty() {
        return Err(Error::NoVerifiedSignature);
    }
    Ok(Note {
        text: text.to_string(),
        verified,
        unverified,
    })
}

/// Splits a signed note into its text (with the final newline) and its
/// signature lines (without newlines), checking size, characters and layout.
pub fn split_note(note: &str) -> Result<(&str, Vec<&str>)> {
    if note.len() > MAX_NOTE_SIZE {
        return Err(Error::NoteTooLarge {
            size: note.len(),
            max: MAX_NOTE_SIZE,
        });
    }
    check_note_chars(note)?;
    // The text ends at the last blank line.
    let blank = note
        .rfind("\n\n")
        .ok_or(Error::MalformedNote("no blank line before the signatures"))?;
    let (text, signatures) = (&note[..=blank], &note[blank + 2..]);
    let signatures = signatures
        .strip_suffix('\n')
        .ok_or(Error::MalformedNote("signatures do not end in a newline"))?;
    if signatures.is_empty() {
        return Err(Error::MalformedNote("no signatures"));
    }
    let lines: Vec<&str> = signatures.split('\n').collect();
    if lines.len() > MAX_NOTE_SIGNATURES {
        return Err(Error::TooManySignatures {
            max: MAX_NOTE_SIGNATURES,
        });
    }
    Ok((text, lines))
}

/// Parses one signature line, without its newline.
pub fn parse_signature_line(line: &str) -> Result<NoteSignature> {
    let rest = line
        .strip_prefix(SIGNATURE_PREFIX)
        .ok_or(Error::MalformedNote(
            "signature line does not start with an em dash and a space",
        ))?;
    let (name, encoded) = rest.split_once(' ').ok_or(Error::MalformedNote(
        "signature line has no space after the key name",
    ))?;
    check_key_name(name).map_err(|_| Error::MalformedNote("bad key name on a signature line"))?;
    let bytes = BASE64
        .decode(encoded)
        .map_err(|_| Error::MalformedNote("signature is not standard base64"))?;
    if bytes.len() < 5 {
        return Err(Error::MalformedNote(
            "signature is shorter than a key id and one byte",
        ));
    }
    Ok(NoteSignature {
        name: name.to_string(),
        key_id: u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
        signature: bytes[4..].to_vec(),
    })
}

/// Returns the signature line `— <name> base64(key id || signature)\n`.
pub fn signature_line(name: &str, key_id: u32, signature: &[u8]) -> String {
    let mut bytes = Vec::with_capacity(4 + signature.len());
    bytes.extend_from_slice(&key_id.to_be_bytes());
    bytes.extend_from_slice(signature);
    format!("{SIGNATURE_PREFIX}{name} {}\n", BASE64.encode(bytes))
}

/// Refuses ASCII control characters other than newline.
fn check_note_chars(s: &str) -> Result<()> {
    if s.bytes().any(|b| b < 0x20 && b != b'\n') {
        return Err(Error::MalformedNote("control character other than newline"));
    }
    Ok(())
}

/// Returns `<name>+<hex8 key id>+<base64(signature type || key)>`.
pub(crate) fn key_string(name: &str, key_id: u32, signature_type: u8, key: &[u8]) -> String {
    let mut bytes = Vec::with_capacity(1 + key.len());
    bytes.push(signature_type);
    bytes.extend_from_slice(key);
    format!("{name}+{key_id:08x}+{}", BASE64.encode(bytes))
}

/// Splits `<name>+<hex8 key id>+<base64(signature type || 32-byte key)>` and
/// checks the shape and the type byte; the caller checks the name and key id.
pub(crate) fn split_key_string(
    s: &str,
    signature_type: u8,
) -> Result<(&str, u32, [u8; 32]), &'static str> {
    // The name has no '+'; the base64 part may.
    let mut parts = s.splitn(3, '+');
    let (Some(name), Some(id), Some(encoded)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("want <name>+<key id>+<key>");
    };
    if id.len() != 8
        || !id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err("key id is not 8 lowercase hex digits");
    }
    let id = u32::from_str_radix(id, 16).map_err(|_| "key id is not hex")?;
    let bytes = BASE64
        .decode(encoded)
        .map_err(|_| "key is not standard base64")?;
    let Some((&ty, key)) = bytes.split_first() else {
        return Err("key is empty");
    };
    if ty != signature_type {
        return Err("wrong signature type");
    }
    let key: [u8; 32] = key.try_into().map_err(|_| "key is not 32 bytes")?;
    Ok((name, id, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PETER_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const PETER_SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const PETER_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                              then you don't know what your problem is.\n";
    const PETER_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    fn peter_note() -> String {
        format!("{PETER_TEXT}\n{PETER_SIG}")
    }

    fn signer(name: &str, seed: u8) -> NoteSigner {
        NoteSigner::new(name, SigningKey::from_bytes(&[seed; 32])).unwrap()
    }

    #[test]
    fn go_vector_opens() {
        let v = NoteVerifier::from_vkey(PETER_VKEY).unwrap();
        assert_eq!(v.key_id(), 0xc74f20a3);
        assert_eq!(v.vkey(), PETER_VKEY);
        let note = open_note(&peter_note(), &[&v]).unwrap();
        assert_eq!(note.text, PETER_TEXT);
        assert_eq!(note.verified.len(), 1);
        assert_eq!(note.verified[0].name, "PeterNeumann");
        assert_eq!(note.verified[0].key_id, 0xc74f20a3);
        assert_eq!(note.verified[0].signature.len(), 64);
        assert!(note.unverified.is_empty());
    }

    #[test]
    fn go_vector_changed_byte_fails() {
        let v = NoteVerifier::from_vkey(PETER_VKEY).unwrap();
        let note = peter_note();
        for (i, _) in PETER_TEXT.char_indices() {
            let mut bytes = note.clone().into_bytes();
            if bytes[i] == b'\n' {
                continue;
            }
            bytes[i] ^= 0x01;
            let changed = String::from_utf8(bytes).unwrap();
            assert!(
                matches!(open_note(&changed, &[&v]), Err(Error::BadSignature { .. })),
                "byte {i}"
            );
        }
    }

    #[test]
    fn go_vector_changed_signature_fails() {
        let v = NoteVerifier::from_vkey(PETER_VKEY).unwrap();
        let sig = parse_signature_line(PETER_SIG.trim_end()).unwrap();
        for i in 0..sig.signature.len() {
            let mut bytes = sig.key_id.to_be_bytes().to_vec();
            bytes.extend_from_slice(&sig.signature);
            bytes[4 + i] ^= 0x01;
            let note = format!(
                "{PETER_TEXT}\n{}",
                signature_line(&sig.name, sig.key_id, &bytes[4..])
            );
            assert!(
                matches!(open_note(&note, &[&v]), Err(Error::BadSignature { .. })),
                "signature byte {i}"
            );
        }
        // A changed key id makes the line unknown, so nothing verifies.
        let note = format!(
            "{PETER_TEXT}\n{}",
            signature_line(&sig.name, sig.key_id ^ 1, &sig.signature)
        );
        assert!(matches!(
            open_note(&note, &[&v]),
            Err(Error::NoVerifiedSignature)
        ));
        // Wrong-length signature bytes never verify.
        assert!(!v.verify(PETER_TEXT.as_bytes(), &sig.signature[..63]));
        assert!(v.verify(PETER_TEXT.as_bytes(), &sig.signature));
    }

    #[test]
    fn go_vector_signs_identically() {
        let s = NoteSigner::from_skey(PETER_SKEY).unwrap();
        assert_eq!(s.skey(), PETER_SKEY);
        assert_eq!(s.verifier().vkey(), PETER_VKEY);
        assert_eq!(sign_note(PETER_TEXT, &[&s]).unwrap(), peter_note());
        let dbg = format!("{s:?}");
        assert!(dbg.contains("c74f20a3") && !dbg.contains("AYEKF"));
    }

    #[test]
    fn key_id_hashes_name_newline_type_key() {
        let v = NoteVerifier::from_vkey(PETER_VKEY).unwrap();
        let id = key_id("PeterNeumann", 0x01, v.verifying_key().as_bytes());
        assert_eq!(id, 0xc74f20a3);
        assert_ne!(
            key_id("PeterNeumann", 0x04, v.verifying_key().as_bytes()),
            id
        );
    }

    #[test]
    fn key_names() {
        for good in ["a", "example.com/log", "PeterNeumann", "ünïcode"] {
            check_key_name(good).unwrap();
        }
        for bad in [
            "",
            "a+b",
            "a b",
            "a\tb",
            "a\u{00a0}b",
            "a\u{2003}b",
            "a\u{7f}",
        ] {
            assert!(check_key_name(bad).is_err(), "{bad:?}");
            assert!(NoteSigner::new(bad, SigningKey::from_bytes(&[1; 32])).is_err());
        }
    }

    #[test]
    fn vkey_parse_refusals() {
        let good = signer("log", 3).verifier().vkey();
        NoteVerifier::from_vkey(&good).unwrap();
        let (prefix, b64) = good.rsplit_once('+').unwrap();
        let (name, id) = prefix.split_once('+').unwrap();
        let cases = [
            "log".to_string(),
            format!("{name}+{id}"),
            format!("+{id}+{b64}"),
            format!("{name}+{}+{b64}", id.to_uppercase()),
            format!("{name}+0{id}+{b64}"),
            format!("{name}+00000000+{b64}"),
            format!("{name}+{id}+{b64}x"),
            format!("{name}+{id}+{}", BASE64.encode([1u8; 32])),
            format!("{name}+{id}+{}", BASE64.encode([4u8; 33])),
            format!("other+{id}+{b64}"),
        ];
        for bad in &cases {
            assert!(NoteVerifier::from_vkey(bad).is_err(), "{bad}");
        }
        // A private key string is not a verifier key, nor the other way round.
        assert!(NoteVerifier::from_vkey(PETER_SKEY).is_err());
        assert!(NoteSigner::from_skey(PETER_VKEY).is_err());
        let mut wrong_id = PETER_SKEY.replace("c74f20a3", "c74f20a4");
        assert!(NoteSigner::from_skey(&wrong_id).is_err());
        wrong_id = PETER_SKEY.replace("PeterNeumann", "PeterNeuman");
        assert!(NoteSigner::from_skey(&wrong_id).is_err());
    }

    #[test]
    fn sign_and_open_with_several_keys() {
        let a = signer("a.example/log", 1);
        let b = signer("b.example/witness", 2);
        let c = signer("c.example/other", 3);
        let text = "line one\n\nline three after a blank line\n";
        let note = sign_note(text, &[&a, &b, &c]).unwrap();
        let (va, vb) = (a.verifier(), b.verifier());
        let opened = open_note(&note, &[&va, &vb]).unwrap();
        assert_eq!(opened.text, text);
        let names: Vec<&str> = opened.verified.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a.example/log", "b.example/witness"]);
        assert_eq!(opened.unverified.len(), 1);
        assert!(opened.unverified[0].starts_with("\u{2014} c.example/other "));
        // Only unknown keys: refused.
        let vc = c.verifier();
        let only_c = sign_note(text, &[&a]).unwrap();
        assert!(matches!(
            open_note(&only_c, &[&vc]),
            Err(Error::NoVerifiedSignature)
        ));
        assert!(matches!(
            open_note(&note, &[]),
            Err(Error::NoVerifiedSignature)
        ));
    }

    #[test]
    fn same_name_other_key_is_ignored_not_failed() {
        let real = signer("log", 1);
        let impostor = signer("log", 2);
        let note = sign_note("hello\n", &[&impostor, &real]).unwrap();
        let opened = open_note(&note, &[&real.verifier()]).unwrap();
        assert_eq!(opened.verified.len(), 1);
        assert_eq!(opened.unverified.len(), 1);
    }

    #[test]
    fn duplicate_signatures_listed_once() {
        let a = signer("a", 1);
        let note = sign_note("hello\n", &[&a, &a]).unwrap();
        let opened = open_note(&note, &[&a.verifier()]).unwrap();
        assert_eq!(opened.verified.len(), 1);
    }

    #[test]
    fn ambiguous_verifiers_refused() {
        let a = signer("a", 1);
        let note = sign_note("hello\n", &[&a]).unwrap();
        let (v1, v2) = (a.verifier(), a.verifier());
        assert!(matches!(
            open_note(&note, &[&v1, &v2]),
            Err(Error::AmbiguousVerifier { .. })
        ));
    }

    #[test]
    fn sign_note_refusals() {
        let a = signer("a", 1);
        assert!(sign_note("no newline", &[&a]).is_err());
        assert!(sign_note("", &[&a]).is_err());
        assert!(sign_note("tab\there\n", &[&a]).is_err());
        assert!(sign_note("cr\r\n", &[&a]).is_err());
        assert!(sign_note("ok\n", &[]).is_err());
        let many = vec![&a; MAX_NOTE_SIGNATURES + 1];
        assert!(matches!(
            sign_note("ok\n", &many),
            Err(Error::TooManySignatures { .. })
        ));
        let big = "x".repeat(MAX_NOTE_SIZE) + "\n";
        assert!(matches!(
            sign_note(&big, &[&a]),
            Err(Error::NoteTooLarge { .. })
        ));
    }

    #[test]
    fn open_note_refuses_malformed_notes() {
        let v = NoteVerifier::from_vkey(PETER_VKEY).unwrap();
        let good = peter_note();
        let sig_b64 = PETER_SIG.split(' ').nth(2).unwrap().trim_end();
        let cases: Vec<String> = vec![
            // No blank line, no signatures, no final newline.
            PETER_TEXT.to_string(),
            format!("{PETER_TEXT}\n"),
            good.trim_end_matches('\n').to_string(),
            // Signature line shapes.
            format!("{PETER_TEXT}\n- PeterNeumann {sig_b64}\n"),
            format!("{PETER_TEXT}\n\u{2014}PeterNeumann {sig_b64}\n"),
            format!("{PETER_TEXT}\n\u{2014} PeterNeumann{sig_b64}\n"),
            format!("{PETER_TEXT}\n\u{2014}  PeterNeumann {sig_b64}\n"),
            format!("{PETER_TEXT}\n\u{2014} PeterNeumann {sig_b64} \n"),
            format!("{PETER_TEXT}\n\u{2014} PeterNeumann !!!!\n"),
            format!("{PETER_TEXT}\n\u{2014} PeterNeumann AAAA\n"),
            format!("{PETER_TEXT}\n\u{2014} Peter+Neumann {sig_b64}\n"),
            // A stray line in the signature block.
            format!("{good}junk\n"),
            // Control characters.
            good.replacen("If", "I\r", 1),
            good.replacen("If", "I\0", 1),
        ];
        for bad in &cases {
            let err = open_note(bad, &[&v]).unwrap_err();
            assert!(matches!(err, Error::MalformedNote(_)), "{bad:?}: {err}");
        }
    }

    #[test]
    fn open_note_limits() {
        let a = signer("a", 1);
        let va = a.verifier();
        let line = a.signature_line("x\n");
        let at_limit = format!("x\n\n{}", line.repeat(MAX_NOTE_SIGNATURES));
        open_note(&at_limit, &[&va]).unwrap();
        let over = format!("x\n\n{}", line.repeat(MAX_NOTE_SIGNATURES + 1));
        assert!(matches!(
            open_note(&over, &[&va]),
            Err(Error::TooManySignatures { .. })
        ));
        let huge = format!("{}\n\n{line}", "x".repeat(MAX_NOTE_SIZE));
        assert!(matches!(
            open_note(&huge, &[&va]),
            Err(Error::NoteTooLarge { .. })
        ));
    }

    #[test]
    fn text_ending_in_blank_line_roundtrips() {
        let a = signer("a", 1);
        let text = "body\n\n";
        let note = sign_note(text, &[&a]).unwrap();
        assert_eq!(open_note(&note, &[&a.verifier()]).unwrap().text, text);
    }
}
