//! `fundtrail serve --config FILE` and `--log-format json`, on the real
//! binary: the file sets flags, the command line and the environment
//! override it, a bad file is refused before anything starts, and the HTTP
//! port it names serves `/metrics`.

#[path = "process/mod.rs"]
mod process;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

const START_TIMEOUT: Duration = Duration::from_secs(120);

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `fundtrail serve` with `args`, its environment cleared of fundtrail's
/// variables but for `env`.
fn serve(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fundtrail"));
    command.arg("serve").args(args).current_dir(dir);
    for (name, _) in std::env::vars() {
        if name.starts_with("FUNDTRAIL_") {
            command.env_remove(name);
        }
    }
    command.envs(env.iter().copied());
    command.env("RUST_LOG", "info");
    command
}

/// Starts it and waits until it listens; returns the server and what it
/// printed on stdout by then.
fn start(dir: &Path, mut command: Command) -> (Server, String) {
    let stderr = std::fs::File::create(dir.join("serve.stderr")).unwrap();
    let child = command
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut server = Server(child);
    let copy = dir.join("serve.stdout");
    if let Err(e) = process::listening_url(&mut server.0, &copy, START_TIMEOUT) {
        let stderr = std::fs::read_to_string(dir.join("serve.stderr")).unwrap_or_default();
        panic!("the server did not come up: {e}\n{stderr}");
    }
    (server, std::fs::read_to_string(copy).unwrap())
}

async fn get_metrics(addr: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_sets_flags_that_the_command_line_and_environment_override() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fundtrail.toml");
    std::fs::write(
        &config,
        "# the service's settings\n\
         data-dir = \"from-file\"\n\
         listen = \"127.0.0.1:0\"\n\
         http = \"127.0.0.1:0\"\n\
         checkpoint-every-records = 500\n\
         log-format = \"json\"\n",
    )
    .unwrap();

    // The file alone: its data directory, its HTTP port, JSON logs.
    let (server, stdout) = start(
        dir.path(),
        serve(dir.path(), &["--config", "fundtrail.toml"], &[]),
    );
    assert!(dir.path().join("from-file/root.key").exists());
    let http = stdout
        .lines()
        .find_map(|line| line.strip_prefix("fundtrail HTTP on http://"))
        .unwrap_or_else(|| panic!("no HTTP line in:\n{stdout}"))
        .to_string();
    let metrics = get_metrics(&http).await;
    assert!(
        metrics
            .lines()
            .any(|line| line == "fundtrail_ledger_records 1"),
        "{metrics}"
    );
    drop(server);
    let stderr = std::fs::read_to_string(dir.path().join("serve.stderr")).unwrap();
    let first = stderr.lines().next().expect("the server logged");
    let parsed: serde_json::Value =
        serde_json::from_str(first).unwrap_or_else(|e| panic!("a JSON log line: {e}: {first}"));
    assert!(parsed.get("level").is_some(), "{first}");

    // A flag on the command line wins over the file…
    let (server, _) = start(
        dir.path(),
        serve(
            dir.path(),
            &["--config", "fundtrail.toml", "--data-dir", "from-flag"],
            &[],
        ),
    );
    assert!(dir.path().join("from-flag/root.key").exists());
    drop(server);
    // …and so does its environment variable; text logs by flag.
    let (server, _) = start(
        dir.path(),
        serve(
            dir.path(),
            &["--config", "fundtrail.toml", "--log-format", "text"],
            &[("FUNDTRAIL_DATA_DIR", "from-env")],
        ),
    );
    assert!(dir.path().join("from-env/root.key").exists());
    drop(server);
    let stderr = std::fs::read_to_string(dir.path().join("serve.stderr")).unwrap();
    assert!(
        serde_json::from_str::<serde_json::Value>(stderr.lines().next().unwrap()).is_err(),
        "text logs: {stderr}"
    );
}

#[test]
fn a_bad_config_file_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "lisen = \"127.0.0.1:0\"\n",
            "`lisen` is not a flag of serve",
        ),
        (
            "listen = [1, 2]\n",
            "must be a string, an integer or a boolean",
        ),
        ("listen = \n", "is not TOML"),
        ("listen = \"nowhere\"\n", "invalid value 'nowhere'"),
    ];
    for (text, says) in cases {
        std::fs::write(dir.path().join("bad.toml"), text).unwrap();
        let output = serve(
            dir.path(),
            &["--config", "bad.toml", "--data-dir", "data"],
            &[],
        )
        .output()
        .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        // EX_CONFIG, or the argument parser's own usage status for a value
        // it refuses.
        let usage = says.starts_with("invalid value");
        let code = if usage { 2 } else { 78 };
        assert_eq!(output.status.code(), Some(code), "{text}: {stderr}");
        assert!(stderr.contains(says), "{text}: {stderr}");
        assert!(
            !dir.path().join("data").exists(),
            "nothing was created for {text}"
        );
    }
    let output = serve(dir.path(), &["--config", "missing.toml"], &[])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read the config file"));
}

#[test]
fn a_second_server_on_one_data_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--data-dir", "data", "--listen", "127.0.0.1:0"];
    let (first, _) = start(dir.path(), serve(dir.path(), &args, &[]));
    let second = serve(dir.path(), &args, &[]).output().unwrap();
    // EX_TEMPFAIL: the directory frees once the other server stops.
    assert_eq!(second.status.code(), Some(75));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("in use by another fundtrail server"),
        "{stderr}"
    );
    // Once the first is gone, the directory opens again.
    drop(first);
    let (_again, _) = start(dir.path(), serve(dir.path(), &args, &[]));
}

/// Runs `fundtrail serve` to its failure; returns its exit status and
/// what it said.
fn refused(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let output = serve(dir, args, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), stderr)
}

#[test]
fn a_server_that_cannot_start_exits_saying_who_must_act() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--data-dir", "data", "--listen", "127.0.0.1:0"];
    drop(start(dir.path(), serve(dir.path(), &args, &[])));
    let data = dir.path().join("data");

    // Plaintext where other hosts reach it: the configuration (EX_CONFIG).
    let (code, stderr) = refused(dir.path(), &["--data-dir", "data", "--listen", "0.0.0.0:0"]);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("refusing to serve plaintext"), "{stderr}");

    // A log key that is not the one genesis named: the configuration too.
    let log_key = std::fs::read(data.join("log.key")).unwrap();
    std::fs::copy(data.join("root.key"), data.join("log.key")).unwrap();
    let (code, stderr) = refused(dir.path(), &args);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(stderr.contains("is not the log key"), "{stderr}");
    std::fs::write(data.join("log.key"), log_key).unwrap();

    // A journal whose header is damaged: a person must look (EX_DATAERR).
    let journal = data.join("journal.log");
    let mut bytes = std::fs::read(&journal).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&journal, &bytes).unwrap();
    let (code, stderr) = refused(dir.path(), &args);
    assert_eq!(code, Some(65), "{stderr}");
    bytes[0] ^= 0xff;
    std::fs::write(&journal, &bytes).unwrap();

    // Mended, it starts again.
    drop(start(dir.path(), serve(dir.path(), &args, &[])));
}
