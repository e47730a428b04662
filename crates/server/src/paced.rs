//! Server streams paced by their client: items are made a chunk at a time
//! on the blocking pool and sent from an async task, so a client that stops
//! reading holds no blocking thread. One that reads nothing for
//! [`STREAM_SEND_TIMEOUT_MS`] is ended with DEADLINE_EXCEEDED naming the
//! position to resume from, after the items it was already sent.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use fundtrail_core::limits::STREAM_SEND_TIMEOUT_MS;
use tokio::sync::mpsc;
use tonic::Status;

/// A stream of `T` that ends with the status its producer left, if any.
pub struct Paced<T> {
    items: mpsc::Receiver<Result<T, Status>>,
    stopped: Arc<Mutex<Option<Status>>>,
}

impl<T> tokio_stream::Stream for Paced<T> {
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.items.poll_recv(cx) {
            Poll::Ready(None) => {
                let stopped = self
                    .stopped
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                Poll::Ready(stopped.map(Err))
            }
            other => other,
        }
    }
}

/// Streams the items at positions `start..end`, made by `make(from, to)`
/// for chunks of at most `chunk` positions, `buffered` sent ahead of the
/// client. `what` says how a position is named in the status that ends a
/// stalled stream: "seq 7", or "position 7 of the indexes asked".
pub fn chunked<T, F>(
    start: u64,
    end: u64,
    chunk: usize,
    buffered: usize,
    what: &'static str,
    make: F,
) -> Paced<T>
where
    T: Send + 'static,
    F: Fn(u64, u64) -> Result<Vec<T>, Status> + Send + Sync + 'static,
{
    assert!(
        chunk >= 1 && buffered >= 1,
        "a stream moves at least one item"
    );
    let (tx, items) = mpsc::channel(buffered);
    let stopped = Arc::new(Mutex::new(None));
    let stop = stopped.clone();
    let make = Arc::new(make);
    tokio::spawn(async move {
        let send_timeout = Duration::from_millis(STREAM_SEND_TIMEOUT_MS);
        let mut position = start;
        while position < end {
            let chunk_end = end.min(position.saturating_add(chunk as u64));
            let make = make.clone();
            let made = tokio::task::spawn_blocking(move || make(position, chunk_end))
                .await
                .unwrap_or_else(|e| Err(Status::unavailable(format!("the stream stopped: {e}"))));
            let items = match made {
                Ok(items) => items,
                Err(status) => {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            };
            for item in items {
                match tokio::time::timeout(send_timeout, tx.send(Ok(item))).await {
                    Ok(Ok(())) => position += 1,
                    Ok(Err(_)) => return,
                    Err(_) => {
                        *stop.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some(Status::deadline_exceeded(format!(
                                "the client read nothing for {STREAM_SEND_TIMEOUT_MS} ms, so the stream was ended; resume from {}",
                                what.replace("{}", &position.to_string())
                            )));
                        return;
                    }
                }
            }
        }
    });
    Paced { items, stopped }
}
