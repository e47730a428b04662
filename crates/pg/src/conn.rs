//! One database connection on a thread of its own.

use std::io;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};

use postgres::error::Severity;
use postgres::{Client, NoTls};

use crate::{describe_db, PgError};

type Job = Box<dyn FnOnce(&mut Client) + Send>;

/// A connection on a thread of its own. The `postgres` driver runs a
/// runtime of its own and panics when called from inside another (the
/// server's async workers); this way any thread may use the database, and
/// waits for it as it would wait for a file.
pub(crate) struct Conn {
    jobs: Sender<Job>,
    /// WARNING notices the server sent since the last [`Conn::run_write`].
    warnings: Arc<Mutex<Vec<String>>>,
}

impl Conn {
    pub(crate) fn connect(url: &str) -> Result<Conn, PgError> {
        let mut config: postgres::Config = url.parse()?;
        let warnings = Arc::new(Mutex::new(Vec::new()));
        let heard = warnings.clone();
        config.notice_callback(move |notice| {
            if matches!(notice.parsed_severity(), Some(Severity::Warning)) {
                lock(&heard).push(describe_db(&notice));
            }
        });
        let (jobs, queue) = channel::<Job>();
        let (ready, connected) = channel();
        std::thread::Builder::new()
            .name("postgres".into())
            .spawn(move || {
                let connected = match crate::TLS.get() {
                    Some(tls) => config.connect(tls.clone()),
                    None => config.connect(NoTls),
                };
                let mut client = match connected {
                    Ok(client) => {
                        let _ = ready.send(Ok(()));
                        client
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                while let Ok(job) = queue.recv() {
                    job(&mut client);
                }
            })
            .map_err(|e| PgError::Refused(format!("cannot start a database thread: {e}")))?;
        connected
            .recv()
            .map_err(|_| PgError::Refused("the database thread stopped".into()))??;
        Ok(Conn { jobs, warnings })
    }

    /// Runs `job` with the connection and waits for its answer.
    pub(crate) fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Client) -> T + Send + 'static,
    ) -> io::Result<T> {
        let (done, answer) = channel();
        let job: Job = Box::new(move |client| {
            let _ = done.send(job(client));
        });
        let gone = || io::Error::other("the database connection's thread stopped");
        self.jobs.send(job).map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())
    }

    /// Runs a `job` that commits, and fails if the server warned meanwhile.
    /// PostgreSQL answers a commit whose wait for a synchronous standby was
    /// cancelled (by an operator, or a timeout) with success and a WARNING:
    /// the transaction is committed here but may be on no standby, so a
    /// failover could lose it. Such a commit is neither "written" nor "not
    /// written" and must be treated like a failed fsync.
    pub(crate) fn run_write<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Client) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        lock(&self.warnings).clear();
        let answer = self.run(job)??;
        let warnings = std::mem::take(&mut *lock(&self.warnings));
        if !warnings.is_empty() {
            return Err(io::Error::other(format!(
                "the database warned while committing, so the commit may not have reached a standby: {}",
                warnings.join("; ")
            )));
        }
        Ok(answer)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The vector is whole after any push or take: a panic elsewhere while
    // holding it leaves nothing half-done.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
