//! The standalone `fundtrail-audit` binary on the golden ledger the whole
//! workspace replays (`tests/fixtures/golden-v1`): it audits the export
//! and its journal alike, and fails on a single changed byte.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn golden() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/golden-v1")
}

fn audit(export: &Path) -> Output {
    let dir = golden();
    let vkey = std::fs::read_to_string(dir.join("vkey.txt")).unwrap();
    Command::new(env!("CARGO_BIN_EXE_fundtrail-audit"))
        .args(["--json", "--vkey", vkey.trim()])
        .arg("--export")
        .arg(export)
        .arg("--checkpoint")
        .arg(dir.join("checkpoint.note"))
        .output()
        .unwrap()
}

#[test]
fn the_golden_export_and_journal_audit_alike() {
    let mut summaries = Vec::new();
    for file in ["export.ftlog", "journal.log"] {
        let output = audit(&golden().join(file));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{file}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let summary: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(summary["ok"], true, "{file}");
        assert_eq!(summary["disbursed_fen"], 5_000_00, "{file}");
        summaries.push((
            summary["records"].clone(),
            summary["appropriated_fen"].clone(),
        ));
    }
    assert_eq!(summaries[0], summaries[1]);
}

#[test]
fn one_changed_byte_fails_the_audit() {
    let bytes = std::fs::read(golden().join("export.ftlog")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("export.ftlog");
    let mut changed = bytes.clone();
    let last = changed.len() - 1;
    changed[last] ^= 0x01;
    std::fs::write(&export, changed).unwrap();
    let output = audit(&export);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("FAILED") || stderr.contains("damaged"),
        "{stderr}"
    );
}
