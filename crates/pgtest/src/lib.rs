//! A real PostgreSQL cluster for tests (a dev-dependency only): initdb in a temporary directory,
//! started with pg_ctl on a free loopback port, stopped when dropped. The
//! server programs are Debian's (`/usr/lib/postgresql/<version>/bin`, or
//! the directory in `FUNDTRAIL_PG_BIN`); run as root, they run as the
//! `postgres` user, since PostgreSQL refuses to run as root.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
}

impl Cluster {
    pub fn start() -> Cluster {
        let bin = server_bin_dir();
        let dir = tempfile::tempdir().expect("a temporary directory");
        if is_root() {
            run("chown", &["-R", "postgres:postgres", path_str(dir.path())]);
        }
        let data = dir.path().join("data");
        let port = free_port();
        as_postgres(
            &bin.join("initdb"),
            &[
                "-D",
                path_str(&data),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
            ],
        );
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1",
            path_str(dir.path())
        );
        as_postgres(
            &bin.join("pg_ctl"),
            &[
                "-D",
                path_str(&data),
                "-o",
                &options,
                "-l",
                path_str(&dir.path().join("server.log")),
                "-w",
                "start",
            ],
        );
        Cluster { dir, bin, port }
    }

    /// A connection string for `user` to database `postgres`.
    pub fn url(&self, user: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} dbname=postgres",
            self.port
        )
    }

    /// Runs `sql` as the superuser (on a thread of its own: the driver
    /// may not be called from inside an async runtime).
    pub fn admin(&self, sql: &str) {
        let (url, sql) = (self.url("postgres"), sql.to_string());
        std::thread::spawn(move || {
            let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
            client.batch_execute(&sql).expect("admin SQL");
        })
        .join()
        .expect("admin SQL ran");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        as_postgres(
            &self.bin.join("pg_ctl"),
            &["-D", path_str(&data), "-m", "immediate", "-w", "stop"],
        );
    }
}

fn server_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FUNDTRAIL_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server programs in /usr/lib/postgresql (apt install postgresql), or FUNDTRAIL_PG_BIN")
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    found.sort();
    found
        .pop()
        .expect("an initdb under /usr/lib/postgresql/*/bin")
}

fn is_root() -> bool {
    // SAFETY: geteuid takes no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn as_postgres(program: &Path, args: &[&str]) {
    if is_root() {
        let mut all = vec!["-u", "postgres", "--", path_str(program)];
        all.extend_from_slice(args);
        run("runuser", &all);
    } else {
        run(path_str(program), args);
    }
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address").port()
}
