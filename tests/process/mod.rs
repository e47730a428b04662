//! Starting the real `fundtrail serve` binary for tests, without polling:
//! the server listens on port 0 and says where on its standard output, and
//! the test reads that line.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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

/// A child process killed when dropped.
#[allow(dead_code)]
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Seeding the demo in a debug build on a slow machine takes a while.
#[allow(dead_code)]
pub const DEMO_START_TIMEOUT: Duration = Duration::from_secs(300);

/// `fundtrail serve --demo` running on `dir/data`.
#[allow(dead_code)]
pub struct Demo {
    pub server: Killed,
    pub grpc: String,
    /// The HTTP port's URL, when started with one.
    pub http: Option<String>,
    pub data: PathBuf,
    /// The server's log so far (stderr).
    pub log: PathBuf,
}

/// Starts the real binary's demo on `dir/data`, with an HTTP port if
/// `http`, and waits (without polling) until it listens: seeding the demo
/// comes before that.
#[allow(dead_code)]
pub fn start_demo(dir: &Path, http: bool) -> Demo {
    let log = dir.join("serve.log");
    let data = dir.join("data");
    let mut command = Command::new(env!("CARGO_BIN_EXE_fundtrail"));
    command
        .args(["serve", "--demo", "--data-dir"])
        .arg(&data)
        .args(["--listen", "127.0.0.1:0"]);
    if http {
        command.args(["--http", "127.0.0.1:0"]);
    }
    let child = command
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut server = Killed(child);
    let (grpc, http) = listening_urls(&mut server.0, &dir.join("serve.stdout"), DEMO_START_TIMEOUT)
        .unwrap_or_else(|e| {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("the demo server did not come up: {e}\n{log}")
        });
    Demo {
        server,
        grpc,
        http,
        data,
        log,
    }
}
