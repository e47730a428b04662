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
    /// A cluster on its own, with PostgreSQL's default settings.
    pub fn start() -> Cluster {
        Cluster::start_with(&[])
    }

    /// A primary whose commits wait for any one of the standbys named
    /// (`synchronous_standby_names = 'ANY 1 (…)'`, `synchronous_commit =
    /// on`), as docs/deploy.md configures production.
    pub fn start_primary(standby_names: &[&str]) -> Cluster {
        let names = format!("'ANY 1 ({})'", standby_names.join(", "));
        Cluster::start_with(&[
            ("synchronous_standby_names", names.as_str()),
            ("synchronous_commit", "on"),
        ])
    }

    /// A cluster started with `settings` in its postgresql.conf.
    pub fn start_with(settings: &[(&str, &str)]) -> Cluster {
        let cluster = Cluster::new_dir();
        cluster.initdb();
        cluster.configure(settings);
        cluster.start_server();
        cluster
    }

    /// A cluster that speaks TLS only, over TCP, with the certificate and
    /// key in the PEM files given (`ssl = on`; pg_hba.conf rejects TCP
    /// without TLS). [`Cluster::admin`] and [`Cluster::query`] still
    /// connect, over the Unix socket.
    pub fn start_tls(cert_pem: &Path, key_pem: &Path) -> Cluster {
        let cluster = Cluster::new_dir();
        cluster.initdb();
        for (from, to) in [(cert_pem, "server.crt"), (key_pem, "server.key")] {
            let to = cluster.data().join(to);
            std::fs::copy(from, &to).expect("copy the TLS files");
            run("chmod", &["600", path_str(&to)]);
            if is_root() {
                run("chown", &["postgres:postgres", path_str(&to)]);
            }
        }
        std::fs::write(
            cluster.data().join("pg_hba.conf"),
            "local all all trust\n\
             hostssl all all 127.0.0.1/32 trust\n\
             hostnossl all all 127.0.0.1/32 reject\n",
        )
        .expect("write pg_hba.conf");
        cluster.configure(&[("ssl", "on")]);
        cluster.start_server();
        cluster
    }

    /// A streaming standby of `primary`, copied with pg_basebackup, that
    /// names itself `name` to it (a name in its synchronous_standby_names).
    pub fn start_standby(primary: &Cluster, name: &str) -> Cluster {
        let cluster = Cluster::new_dir();
        as_postgres(
            &cluster.bin.join("pg_basebackup"),
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &primary.port.to_string(),
                "-U",
                "postgres",
                "-D",
                path_str(&cluster.data()),
                "-R",
                "-X",
                "stream",
                "--no-sync",
            ],
        );
        cluster.follow(primary, name);
        cluster.start_server();
        cluster
    }

    /// Points this standby at `primary` (the standby must be stopped, or
    /// be restarted afterwards).
    pub fn follow(&self, primary: &Cluster, name: &str) {
        self.configure(&[(
            "primary_conninfo",
            &format!(
                "'host=127.0.0.1 port={} user=postgres application_name={name}'",
                primary.port
            ),
        )]);
    }

    /// Kills the postmaster and every process it started with SIGKILL, as
    /// a machine that loses power: nothing is flushed or answered.
    pub fn kill9(&self) {
        let pid = self.postmaster_pid();
        let children = Command::new("pgrep")
            .args(["-P", &pid.to_string()])
            .output()
            .expect("pgrep");
        // The postmaster first: killed children would make it restart them.
        run("kill", &["-KILL", &pid.to_string()]);
        for child in String::from_utf8_lossy(&children.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-KILL", child]).status();
        }
    }

    /// Stops the server at once (no checkpoint; it recovers at start).
    pub fn stop(&self) {
        as_postgres(
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                path_str(&self.data()),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    /// Starts the server again after [`Cluster::stop`].
    pub fn restart(&self) {
        self.start_server();
    }

    /// Promotes this standby to primary and waits until it takes writes.
    pub fn promote(&self) {
        as_postgres(
            &self.bin.join("pg_ctl"),
            &["-D", path_str(&self.data()), "-w", "promote"],
        );
    }

    /// The first column of the first row `sql` returns, as text, queried
    /// as the superuser.
    pub fn query(&self, sql: &str) -> String {
        let (url, sql) = (self.socket_url(), sql.to_string());
        std::thread::spawn(move || {
            let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
            let rows = client.simple_query(&sql).expect("query");
            rows.into_iter()
                .find_map(|message| match message {
                    postgres::SimpleQueryMessage::Row(row) => {
                        Some(row.get(0).unwrap_or_default().to_string())
                    }
                    _ => None,
                })
                .expect("a row")
        })
        .join()
        .expect("query ran")
    }

    fn new_dir() -> Cluster {
        let dir = tempfile::tempdir().expect("a temporary directory");
        if is_root() {
            run("chown", &["-R", "postgres:postgres", path_str(dir.path())]);
        }
        Cluster {
            dir,
            bin: server_bin_dir(),
            port: free_port(),
        }
    }

    fn initdb(&self) {
        as_postgres(
            &self.bin.join("initdb"),
            &[
                "-D",
                path_str(&self.data()),
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
            ],
        );
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Appends `settings` to postgresql.auto.conf (the last setting wins).
    fn configure(&self, settings: &[(&str, &str)]) {
        let mut lines = String::new();
        for (name, value) in settings {
            lines.push_str(&format!("{name} = {value}\n"));
        }
        let path = self.data().join("postgresql.auto.conf");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("postgresql.auto.conf");
        std::io::Write::write_all(&mut file, lines.as_bytes()).expect("write the settings");
    }

    fn start_server(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            path_str(self.dir.path())
        );
        as_postgres(
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                path_str(&self.data()),
                "-o",
                &options,
                "-l",
                path_str(&self.dir.path().join("server.log")),
                "-w",
                "start",
            ],
        );
    }

    fn postmaster_pid(&self) -> u32 {
        let text = std::fs::read_to_string(self.data().join("postmaster.pid"))
            .expect("a running server's postmaster.pid");
        text.lines()
            .next()
            .and_then(|line| line.trim().parse().ok())
            .expect("a pid on postmaster.pid's first line")
    }

    /// A connection string for `user` to database `postgres`.
    pub fn url(&self, user: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} dbname=postgres",
            self.port
        )
    }

    /// A connection string for the superuser over the Unix socket.
    fn socket_url(&self) -> String {
        format!(
            "host={} port={} user=postgres dbname=postgres",
            path_str(self.dir.path()),
            self.port
        )
    }

    /// Runs `sql` as the superuser (on a thread of its own: the driver
    /// may not be called from inside an async runtime).
    pub fn admin(&self, sql: &str) {
        let (url, sql) = (self.socket_url(), sql.to_string());
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
        // A server killed or stopped already has nothing left to stop, and
        // pg_ctl says so: its failure here is not a test's failure.
        let pg_ctl = self.bin.join("pg_ctl");
        let data = self.data();
        let args = ["-D", path_str(&data), "-m", "immediate", "-w", "stop"];
        let _ = if is_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--", path_str(&pg_ctl)])
                .args(args)
                .output()
        } else {
            Command::new(&pg_ctl).args(args).output()
        };
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

/// PEM files for a database that speaks TLS, written under `dir`: a new CA
/// named `name`, and a certificate it signed for 127.0.0.1 with its key,
/// as (CA certificate, server certificate, server key).
pub fn tls_files(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("a CA key"))
        .expect("a CA certificate");
    let key = KeyPair::generate().expect("a server key");
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("server parameters")
        .signed_by(&key, &issuer)
        .expect("a server certificate");
    let paths = (
        dir.join(format!("{name}-ca.pem")),
        dir.join(format!("{name}-server.pem")),
        dir.join(format!("{name}-server.key")),
    );
    std::fs::write(&paths.0, issuer.pem()).expect("write the CA certificate");
    std::fs::write(&paths.1, cert.pem()).expect("write the server certificate");
    std::fs::write(&paths.2, key.serialize_pem()).expect("write the server key");
    paths
}
