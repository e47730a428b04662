//! The writer lease: one row naming the writer, a fencing epoch and an
//! expiry on the database's clock. A node becomes writer only when the
//! lease has expired or was released, and every batch it commits checks
//! (and extends) its epoch inside the batch's own transaction, so a writer
//! that lost the lease while paused commits nothing afterwards.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use postgres::{GenericClient, Transaction};
use tracing::{info, warn};

use crate::conn::Conn;
use crate::{db_error, PgError};

/// The shortest lease: renewals every third of it must fit between a
/// paused writer's batches.
pub const LEASE_MS_MIN: u64 = 300;

/// The longest a waiting writer goes without looking at the lease again.
const RELEASE_POLL_MS_MAX: u64 = 200;

/// Who this process is, in the lease row and in the database's logs.
pub fn holder_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into());
    format!("{host} pid {}", std::process::id())
}

/// A lease this process holds until it is dropped (which releases it) or
/// lost (another writer took it after it expired).
pub struct Lease {
    epoch: i64,
    ttl_ms: u64,
    lost: Arc<AtomicBool>,
    stop: Option<Sender<()>>,
    renewer: Option<JoinHandle<()>>,
    conn: Conn,
}

fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

impl Lease {
    /// Takes the lease for `ttl_ms` at a time, waiting while another
    /// holder's lease runs, and renews it every third of that until dropped.
    pub fn acquire(url: &str, holder: &str, ttl_ms: u64) -> Result<Lease, PgError> {
        if ttl_ms < LEASE_MS_MIN {
            return Err(PgError::Refused(format!(
                "a writer lease must last at least {LEASE_MS_MIN} ms, not {ttl_ms}"
            )));
        }
        let conn = Conn::connect(url)?;
        let epoch = loop {
            let name = holder.to_string();
            let taken = conn.run(move |client| {
                client.query_opt(
                    "UPDATE fundtrail_lease SET holder = $1, epoch = epoch + 1,
                         expires_at = now() + make_interval(secs => $2)
                     WHERE expires_at <= now() RETURNING epoch",
                    &[&name, &seconds(ttl_ms)],
                )
            })??;
            if let Some(row) = taken {
                break row.get::<_, i64>(0);
            }
            let row = conn.run(|client| {
                client.query_one(
                    "SELECT coalesce(holder, ''),
                            ceil(extract(epoch FROM greatest(expires_at, now()) - now()) * 1000)::bigint
                     FROM fundtrail_lease",
                    &[],
                )
            })??;
            let (other, wait_ms): (String, i64) = (row.get(0), row.get(1));
            info!(holder = %other, wait_ms, "another writer holds the lease; waiting for it to end");
            // Polled, not slept through: a released lease passes on at once.
            let wait_ms = u64::try_from(wait_ms)
                .unwrap_or(0)
                .clamp(10, RELEASE_POLL_MS_MAX);
            std::thread::sleep(Duration::from_millis(wait_ms));
        };
        info!(epoch, ttl_ms, "writer lease taken");
        let lost = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = channel::<()>();
        let renewer = {
            let (lost, conn) = (lost.clone(), Conn::connect(url)?);
            std::thread::Builder::new()
                .name("lease".into())
                .spawn(move || {
                    let every = Duration::from_millis(ttl_ms / 3);
                    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
                        match conn.run(move |client| extend(client, epoch, ttl_ms)) {
                            Ok(Ok(true)) => {}
                            Ok(Ok(false)) => {
                                warn!(epoch, "the writer lease was lost");
                                lost.store(true, Ordering::Release);
                                return;
                            }
                            // The next renewal or batch tries again; a batch
                            // after the expiry fails inside its transaction.
                            Ok(Err(e)) => {
                                warn!(error = %db_error(e), "cannot renew the writer lease")
                            }
                            Err(e) => warn!(error = %e, "cannot renew the writer lease"),
                        }
                    }
                })
                .map_err(|e| PgError::Refused(format!("cannot start the lease thread: {e}")))?
        };
        Ok(Lease {
            epoch,
            ttl_ms,
            lost,
            stop: Some(stop),
            renewer: Some(renewer),
            conn,
        })
    }

    /// The fencing epoch: it grows by one each time the lease changes hands.
    pub fn epoch(&self) -> u64 {
        u64::try_from(self.epoch).expect("the table keeps epochs non-negative")
    }

    /// The epoch and duration a batch checks and extends, or why it may not.
    pub(crate) fn fence(&self) -> io::Result<(i64, u64)> {
        if self.lost.load(Ordering::Acquire) {
            return Err(io::Error::other(format!(
                "this writer lost its lease (epoch {}): another writer may hold it, so it commits nothing more",
                self.epoch
            )));
        }
        Ok((self.epoch, self.ttl_ms))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(renewer) = self.renewer.take() {
            let _ = renewer.join();
        }
        let epoch = self.epoch;
        // Released, the next writer need not wait for the expiry.
        let _ = self.conn.run(move |client| {
            client.execute(
                "UPDATE fundtrail_lease SET expires_at = '-infinity' WHERE epoch = $1",
                &[&epoch],
            )
        });
    }
}

/// Extends the lease of `epoch` unless another writer took it since; false
/// if one did. An expired lease no one took is this writer's still: the
/// epoch, not the clock, fences writers (a renewal may itself wait for a
/// standby long past the expiry).
fn extend(
    client: &mut impl GenericClient,
    epoch: i64,
    ttl_ms: u64,
) -> Result<bool, postgres::Error> {
    let rows = client.execute(
        "UPDATE fundtrail_lease SET expires_at = now() + make_interval(secs => $2)
         WHERE epoch = $1",
        &[&epoch, &seconds(ttl_ms)],
    )?;
    Ok(rows == 1)
}

/// [`extend`] inside a batch's transaction, failing it when the lease is
/// no longer this writer's.
pub(crate) fn extend_in(tx: &mut Transaction<'_>, epoch: i64, ttl_ms: u64) -> io::Result<()> {
    if !extend(tx, epoch, ttl_ms).map_err(db_error)? {
        return Err(io::Error::other(format!(
            "this writer lost its lease (epoch {epoch}): another writer took it, so this one commits nothing more"
        )));
    }
    Ok(())
}
