//! Starting the real `fundtrail serve` binary for tests, without polling:
//! the server listens on port 0 and says where on its standard output, and
//! the test reads that line.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Child;
use std::sync::mpsc;
use std::time::Duration;

/// What `fundtrail serve` prints on stdout once its listener is bound.
const LISTENING: &str = "fundtrail listening on ";

/// What it prints before that when it serves an HTTP port (`--http`).
const HTTP_ON: &str = "fundtrail HTTP on ";

/// Waits (at most `timeout`) for `child`, started with a piped stdout, to
/// say where it listens, and returns its URL. A reader thread copies the
/// child's stdout into `copy` until the child exits, so the child never
/// blocks on a full pipe nor dies of a closed one.
#[allow(dead_code)]
pub fn listening_url(child: &mut Child, copy: &Path, timeout: Duration) -> Result<String, String> {
    listening_urls(child, copy, timeout).map(|(url, _)| url)
}

/// [`listening_url`], with the HTTP port's URL when the server has one.
#[allow(dead_code)]
pub fn listening_urls(
    child: &mut Child,
    copy: &Path,
    timeout: Duration,
) -> Result<(String, Option<String>), String> {
    let stdout = child
        .stdout
        .take()
        .ok_or("the child's stdout is not piped")?;
    let mut file = std::fs::File::create(copy).map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut http = None;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = writeln!(file, "{line}");
            if let Some(url) = line.strip_prefix(HTTP_ON) {
                http = Some(url.trim().to_string());
            }
            if let Some(addr) = line.strip_prefix(LISTENING) {
                let _ = tx.send((format!("http://{}", addr.trim()), http.take()));
            }
        }
    });
    rx.recv_timeout(timeout).map_err(|e| match e {
        mpsc::RecvTimeoutError::Timeout => format!("no listening line within {timeout:?}"),
        mpsc::RecvTimeoutError::Disconnected => {
            "the server closed its stdout (exited) before listening".into()
        }
    })
}
