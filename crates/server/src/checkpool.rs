//! The threads that check request signatures: one per core, at a lower
//! scheduling priority than the rest of the server. A bulk load keeps them
//! busy; a reader's query, woken on another thread, then gets a core at
//! once instead of waiting out their time slices.

use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// Niceness of the checking threads and the indexer (Linux: 0 is the
/// default, 19 the lowest priority). Idle cores still run them at full
/// speed.
const CHECKER_NICE: i32 = 5;

type Job = Box<dyn FnOnce() + Send>;

pub(crate) struct CheckPool {
    jobs: Sender<Job>,
}

impl CheckPool {
    /// Starts `threads` checking threads. They end once the pool is dropped
    /// and its queue is empty.
    pub fn start(threads: usize) -> Result<CheckPool, String> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name("checker".into())
                .spawn(move || {
                    lower_priority();
                    loop {
                        // The guard is a temporary: released before the job runs.
                        let job = queue.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|e| format!("cannot start a signature-checking thread: {e}"))?;
        }
        Ok(CheckPool { jobs })
    }

    /// Runs `check` on a checking thread; `None` if it could not finish
    /// (the pool stopped, or the check panicked).
    pub async fn run<T: Send + 'static>(
        &self,
        check: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (done, answer) = oneshot::channel();
        let job: Job = Box::new(move || {
            // A panicking check is a bug; it fails its request, not the thread.
            if let Ok(answer) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(check)) {
                let _ = done.send(answer);
            }
        });
        self.jobs.send(job).ok()?;
        answer.await.ok()
    }
}

/// Lowers the calling thread's scheduling priority to [`CHECKER_NICE`].
pub(crate) fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority reads only its integer arguments; on Linux,
    // PRIO_PROCESS with `who` 0 names the calling thread alone.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, CHECKER_NICE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_each_check_and_survives_one_that_panics() {
        let pool = CheckPool::start(2).unwrap();
        for i in 0..8u64 {
            assert_eq!(pool.run(move || i * i).await, Some(i * i));
        }
        for _ in 0..3 {
            assert_eq!(pool.run(|| -> u8 { panic!("a bug") }).await, None);
        }
        assert_eq!(
            pool.run(|| 7).await,
            Some(7),
            "the threads outlive the panics"
        );
    }
}
