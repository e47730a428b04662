//! C2SP transparency log checkpoints (<https://c2sp.org/tlog-checkpoint>).
//!
//! A checkpoint is a signed note whose text is exactly:
//!
//! ```text
//! <origin>
//! <tree size in decimal>
//! <base64 root hash>
//! [extension lines]
//! ```

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use crate::error::{Error, Result};
use crate::note::{open_note, sign_note, NoteSigner, NoteVerifier};
use crate::tree::Hash;

/// A log's signed statement of its tree size and tree hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Names the log; non-empty, without ASCII control characters.
    pub origin: String,
    /// Number of records in the tree.
    pub tree_size: u64,
    /// RFC 9162 tree hash of the first `tree_size` records.
    pub root_hash: Hash,
}

impl Checkpoint {
    /// Returns the note text: origin, tree size and base64 root hash, each on
    /// its own line. It has no extension lines.
    pub fn to_body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.tree_size,
            BASE64.encode(self.root_hash)
        )
    }

    /// Parses a checkpoint body of exactly three lines, so that
    /// `Checkpoint::parse(b)?.to_body() == b`. Refuses extension lines; see
    /// [`Checkpoint::parse_with_extensions`] for those.
    pub fn parse(body: &str) -> Result<Self> {
        let (checkpoint, extensions) = Self::parse_with_extensions(body)?;
        if !extensions.is_empty() {
            return Err(Error::MalformedCheckpoint("unexpected extension lines"));
        }
        Ok(checkpoint)
    }

    /// Parses a checkpoint body and returns its extension lines (without
    /// newlines) as well.
    ///
    /// Strict: the body must end in a newline and hold no ASCII control
    /// character but newline; the origin must be non-empty; the tree size must
    /// be ASCII decimal with no
    /// sign and no leading zero (except `0` itself); the root hash must be the
    /// canonical standard base64 of 32 bytes; extension lines must be non-empty.
    pub fn parse_with_extensions(body: &str) -> Result<(Self, Vec<String>)> {
        let body = body
            .strip_suffix('\n')
            .ok_or(Error::MalformedCheckpoint("body does not end in a newline"))?;
        if body.bytes().any(|b| b < 0x20 && b != b'\n') {
            return Err(Error::MalformedCheckpoint("control character in body"));
        }
        let mut lines = body.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(Error::MalformedCheckpoint("fewer than three lines"));
        };
        if origin.is_empty() {
            return Err(Error::MalformedCheckpoint("empty origin"));
        }
        let tree_size = parse_tree_size(size)?;
        let root_hash = parse_root_hash(root)?;
        let extensions: Vec<String> = lines.map(str::to_string).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(Error::MalformedCheckpoint("empty extension line"));
        }
        Ok((
            Self {
                origin: origin.to_string(),
                tree_size,
                root_hash,
            },
            extensions,
        ))
    }
}

/// Parses decimal digits with no sign and no leading zero, `0` excepted.
fn parse_tree_size(s: &str) -> Result<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::MalformedCheckpoint(
            "tree size is not decimal digits",
        ));
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err(Error::MalformedCheckpoint("tree size has a leading zero"));
    }
    s.parse()
        .map_err(|_| Error::MalformedCheckpoint("tree size does not fit in 64 bits"))
}

/// Parses the canonical standard base64 encoding of a 32-byte hash.
fn parse_root_hash(s: &str) -> Result<Hash> {
    let bytes = BASE64
        .decode(s)
        .map_err(|_| Error::MalformedCheckpoint("root hash is not standard base64"))?;
    let hash: Hash = bytes
        .try_into()
        .map_err(|_| Error::MalformedCheckpoint("root hash is not 32 bytes"))?;
    if BASE64.encode(hash) != s {
        return Err(Error::MalformedCheckpoint(
            "root hash is not canonical base64",
        ));
    }
    Ok(hash)
}

/// Returns the checkpoint as a note signed by the log's key.
///
/// Refuses a checkpoint whose body would not parse back to itself (an empty
/// origin, or one with a newline or other control character).
pub fn sign_checkpoint(checkpoint: &Checkpoint, signer: &NoteSigner) -> Result<String> {
    let body = checkpoint.to_body();
    if Checkpoint::parse(&body)? != *checkpoint {
        return Err(Error::MalformedCheckpoint(
            "origin does not survive a round trip",
        ));
    }
    sign_note(&body, &[signer])
}

/// Opens a checkpoint note signed by the log key `log` and returns the
/// checkpoint, refusing it unless its origin is `origin`.
///
/// Other signature lines, such as cosignatures, are allowed and left
/// unchecked; see [`crate::verify_cosignature`]. The body must have no
/// extension lines.
pub fn open_checkpoint(note: &str, log: &NoteVerifier, origin: &str) -> Result<Checkpoint> {
    let opened = open_note(note, &[log])?;
    let checkpoint = Checkpoint::parse(&opened.text)?;
    if checkpoint.origin != origin {
        return Err(Error::WrongOrigin {
            want: origin.to_string(),
            got: checkpoint.origin,
        });
    }
    Ok(checkpoint)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    // The example from the tlog-checkpoint spec.
    const SPEC_BODY: &str =
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

    fn log_signer() -> NoteSigner {
        NoteSigner::new("example.com/log", SigningKey::from_bytes(&[9; 32])).unwrap()
    }

    fn checkpoint() -> Checkpoint {
        Checkpoint {
            origin: "example.com/log".into(),
            tree_size: 42,
            root_hash: [0xab; 32],
        }
    }

    #[test]
    fn spec_example_roundtrips() {
        let cp = Checkpoint::parse(SPEC_BODY).unwrap();
        assert_eq!(cp.origin, "example.com/behind-the-sofa");
        assert_eq!(cp.tree_size, 20852163);
        assert_eq!(cp.to_body(), SPEC_BODY);
    }

    #[test]
    fn body_layout() {
        let cp = Checkpoint {
            origin: "o".into(),
            tree_size: 0,
            root_hash: crate::EMPTY_TREE_HASH,
        };
        assert_eq!(
            cp.to_body(),
            "o\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
        );
        assert_eq!(Checkpoint::parse(&cp.to_body()).unwrap(), cp);
    }

    #[test]
    fn extensions() {
        let body = format!("{SPEC_BODY}ext one\next two\n");
        let (cp, ext) = Checkpoint::parse_with_extensions(&body).unwrap();
        assert_eq!(cp.tree_size, 20852163);
        assert_eq!(ext, ["ext one", "ext two"]);
        assert!(Checkpoint::parse(&body).is_err());
        assert!(Checkpoint::parse_with_extensions(&format!("{SPEC_BODY}\n")).is_err());
        assert!(Checkpoint::parse_with_extensions(&format!("{SPEC_BODY}x\n\ny\n")).is_err());
    }

    #[test]
    fn parse_refusals() {
        let root = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";
        let cases = [
            String::new(),
            "o\n1\n".to_string(),
            format!("o\n1\n{root}"),
            format!("\n1\n{root}\n"),
            format!("o\n\n{root}\n"),
            format!("o\n01\n{root}\n"),
            format!("o\n00\n{root}\n"),
            format!("o\n+1\n{root}\n"),
            format!("o\n-1\n{root}\n"),
            format!("o\n 1\n{root}\n"),
            format!("o\n1 \n{root}\n"),
            format!("o\n1e3\n{root}\n"),
            format!("o\n18446744073709551616\n{root}\n"),
            "o\n1\nAAAA\n".to_string(),
            format!("o\n1\n{}\n", root.trim_end_matches('=')),
            // Non-canonical trailing bits in the last base64 character.
            "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2J=\n".to_string(),
            format!("o\n1\n{}\n", root.replace('/', "_")),
            format!("o\r\n1\n{root}\n"),
            format!("o\t\n1\n{root}\n"),
        ];
        for bad in &cases {
            assert!(
                matches!(Checkpoint::parse(bad), Err(Error::MalformedCheckpoint(_))),
                "{bad:?}"
            );
        }
        let max = format!("o\n{}\n{root}\n", u64::MAX);
        assert_eq!(Checkpoint::parse(&max).unwrap().tree_size, u64::MAX);
    }

    #[test]
    fn sign_and_open() {
        let signer = log_signer();
        let note = sign_checkpoint(&checkpoint(), &signer).unwrap();
        assert!(note.starts_with(&checkpoint().to_body()));
        let got = open_checkpoint(&note, &signer.verifier(), "example.com/log").unwrap();
        assert_eq!(got, checkpoint());
    }

    #[test]
    fn open_refusals() {
        let signer = log_signer();
        let note = sign_checkpoint(&checkpoint(), &signer).unwrap();
        assert!(matches!(
            open_checkpoint(&note, &signer.verifier(), "example.com/other"),
            Err(Error::WrongOrigin { .. })
        ));
        let other = NoteSigner::new("example.com/log", SigningKey::from_bytes(&[8; 32])).unwrap();
        assert!(matches!(
            open_checkpoint(&note, &other.verifier(), "example.com/log"),
            Err(Error::NoVerifiedSignature)
        ));
        let tampered = note.replacen("42", "43", 1);
        assert!(matches!(
            open_checkpoint(&tampered, &signer.verifier(), "example.com/log"),
            Err(Error::BadSignature { .. })
        ));
        // A validly signed note that is not a checkpoint.
        let not_cp = sign_note("example.com/log\nhello\n", &[&signer]).unwrap();
        assert!(matches!(
            open_checkpoint(&not_cp, &signer.verifier(), "example.com/log"),
            Err(Error::MalformedCheckpoint(_))
        ));
    }

    #[test]
    fn sign_refuses_bad_origins() {
        let signer = log_signer();
        for origin in ["", "a\nb", "a\rb"] {
            let cp = Checkpoint {
                origin: origin.into(),
                ..checkpoint()
            };
            assert!(sign_checkpoint(&cp, &signer).is_err(), "{origin:?}");
        }
    }
}
