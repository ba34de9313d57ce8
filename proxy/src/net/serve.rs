//! Serving one process's share of the clients: accept loops on the given listeners (with
//! the `-C` cap as backpressure), one task per client, and a bounded drain when the
//! process stops or hands its sockets over.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, TryAcquireError};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::net::admission::{Admission, PerIp};
use crate::net::client::{self, ClientCancel};
use crate::net::listener;
use crate::net::shared::Shared;
use crate::stats::inc;

/// How often [`trim_heap_when_settled`] looks at the activity counters.
pub const TRIM_CHECK: Duration = Duration::from_secs(1);

/// Gives freed heap pages back to the kernel once a burst of activity (connections
/// opened or closed, packets forwarded) has settled: one check per [`TRIM_CHECK`], one
/// `malloc_trim` per burst, nothing while idle or while traffic keeps flowing.
pub async fn trim_heap_when_settled(shared: Arc<Shared>, shutdown: CancellationToken) {
    use std::sync::atomic::Ordering::Relaxed;
    let activity = || {
        let c = &shared.counters;
        (
            c.inbound_connections_accepted.load(Relaxed),
            c.total_connections.load(Relaxed),
            c.tot_forwarded_queries.load(Relaxed),
            c.tot_forwarded_responses.load(Relaxed),
        )
    };
    let mut last = activity();
    let mut dirty = false;
    let mut tick = tokio::time::interval(TRIM_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = activity();
        if now != last {
            last = now;
            dirty = true;
        } else if dirty {
            dirty = false;
            let released = crate::sys::trim_heap();
            tracing::trace!(released, "heap trimmed after activity settled");
        }
    }
}

/// When a process may accept clients, and how it stops.
#[derive(Debug, Clone, Default)]
pub struct Gates {
    /// SIGTERM/SIGINT (or a worker's master is gone): stop accepting, let clients finish
    /// what is in flight for at most the drain grace, close the rest.
    pub shutdown: CancellationToken,
    /// Accepting starts once this is cancelled: at once, except in the new process of a
    /// handover, which waits for the old one's confirmation (see [`crate::handover`]).
    pub go: CancellationToken,
    /// The sockets were handed over: stop accepting, keep relaying for established
    /// clients until they leave or the drain grace passes, then close them gracefully.
    pub retire: CancellationToken,
}

impl Gates {
    /// Gates that let accepting start at once and stop on `shutdown`.
    pub fn open(shutdown: CancellationToken) -> Self {
        let go = CancellationToken::new();
        go.cancel();
        Self {
            shutdown,
            go,
            retire: CancellationToken::new(),
        }
    }
}

/// How a [`serve`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// The sockets were handed over (else: shutdown).
    pub handed_over: bool,
    /// Clients still open when the grace was over, closed at once.
    pub cut: usize,
}

/// Accepts clients on every listener (once `gates.go` opens) until shutdown or a
/// handover, then drains (see [`Gates`]); returns once every client task is gone, within
/// [`crate::net::shared::Grace::total`] of the signal.
pub async fn serve(shared: Arc<Shared>, listeners: Vec<TcpListener>, gates: Gates) -> Drained {
    let tracker = TaskTracker::new();
    let permits = Arc::new(Semaphore::new(shared.settings.max_client_connections));
    let stop_accepting = CancellationToken::new();
    let draining = CancellationToken::new();
    let conn_cancel = CancellationToken::new();
    let admission = Arc::new(Admission::default());
    let per_ip = PerIp::new(shared.settings.max_connections_per_ip);
    shared
        .counters
        .listening_connections
        .store(listeners.len() as i64, std::sync::atomic::Ordering::Relaxed);
    for l in listeners {
        tracker.spawn(accept_loop(
            l,
            Acceptor {
                shared: shared.clone(),
                permits: permits.clone(),
                tracker: tracker.clone(),
                go: gates.go.clone(),
                stop: stop_accepting.clone(),
                per_ip: per_ip.clone(),
                cancel: ClientCancel {
                    draining: draining.clone(),
                    hard: conn_cancel.clone(),
                    admission: admission.clone(),
                },
            },
        ));
    }
    let handed_over = tokio::select! {
        () = gates.shutdown.cancelled() => false,
        () = gates.retire.cancelled() => true,
    };
    stop_accepting.cancel();
    tracker.close();
    let grace = shared.settings.grace;
    let mut cut = 0;
    if handed_over {
        if shared.settings.planted_handover_cut {
            conn_cancel.cancel();
        }
        // The new process accepts now; ours leave when they are done (or at the deadline).
        tokio::select! {
            () = tracker.wait() => {}
            () = tokio::time::sleep(grace.drain) => {}
            () = gates.shutdown.cancelled() => {}
        }
        draining.cancel();
        if tokio::time::timeout(grace.close, tracker.wait())
            .await
            .is_err()
        {
            // The accept loops left at once: what is still tracked are clients.
            cut = tracker.len();
            conn_cancel.cancel();
            let _ = tokio::time::timeout(grace.cut, tracker.wait()).await;
        }
    } else {
        draining.cancel();
        // Let clients finish what is in flight, then close the rest.
        if tokio::time::timeout(grace.drain, tracker.wait())
            .await
            .is_err()
        {
            // The accept loops left at once: what is still tracked are clients.
            cut = tracker.len();
            conn_cancel.cancel();
            let _ = tokio::time::timeout(grace.cut, tracker.wait()).await;
        }
    }
    conn_cancel.cancel();
    Drained { handed_over, cut }
}

/// What every accept loop of one [`serve`] shares.
struct Acceptor {
    shared: Arc<Shared>,
    /// The `-C` slots.
    permits: Arc<Semaphore>,
    /// The client tasks (drained by [`serve`]).
    tracker: TaskTracker,
    /// Accepting starts when this fires.
    go: CancellationToken,
    /// Accepting stops when this fires.
    stop: CancellationToken,
    /// `--max-connections-per-ip`.
    per_ip: Arc<PerIp>,
    /// Handed to every client task.
    cancel: ClientCancel,
}

async fn accept_loop(listener: TcpListener, a: Acceptor) {
    let Acceptor {
        shared,
        permits,
        tracker,
        go,
        stop,
        per_ip,
        cancel,
    } = a;
    tokio::select! {
        () = go.cancelled() => {}
        () = stop.cancelled() => return,
    }
    let mut backoff = Duration::from_millis(5);
    let mut tuning = listener::AcceptTuning::default();
    let mut leaked: Vec<std::os::fd::OwnedFd> = Vec::new();
    let bound = listener
        .local_addr()
        .ok()
        .filter(|a| !a.ip().is_unspecified());
    loop {
        // -C: below the cap, take a slot; at the cap with only authenticated clients,
        // stop accepting until one leaves (backpressure); at the cap with unauthenticated
        // connections, accept and evict the oldest of them (see [`Admission`]).
        let mut permit = match permits.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(TryAcquireError::Closed) => return,
            Err(TryAcquireError::NoPermits) if cancel.admission.has_waiting() => None,
            Err(TryAcquireError::NoPermits) => tokio::select! {
                () = stop.cancelled() => return,
                p = permits.clone().acquire_owned() => match p {
                    Ok(p) => Some(p),
                    Err(_) => return,
                },
            },
        };
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => { backoff = Duration::from_millis(5); x }
                Err(e) => {
                    // EMFILE and friends: back off, never exit.
                    tracing::warn!(error = %e, "accept failed");
                    inc(&shared.counters.accept_connection_limit_failed);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            },
        };
        let permit = match permit.take() {
            Some(p) => p,
            None => {
                if cancel.admission.evict_oldest() {
                    tracing::debug!(
                        "connection cap reached: oldest unauthenticated connection evicted"
                    );
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    p = permits.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => return,
                    },
                }
            }
        };
        // A listener bound to one address tells every connection's local address without
        // a getsockname per connection.
        let local = match bound {
            Some(a) => a,
            None => stream
                .local_addr()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0))),
        };
        tuning.apply(&stream, shared.settings.window_clamp);
        if shared.settings.planted_fd_leak {
            use std::os::fd::AsFd;
            if let Ok(fd) = stream.as_fd().try_clone_to_owned() {
                leaked.push(fd);
            }
        }
        let Some(share) = per_ip.try_enter(peer.ip()) else {
            // --max-connections-per-ip: closed at once (the slot goes back with it).
            inc(&shared.counters.per_ip_refusals);
            continue;
        };
        let shared2 = shared.clone();
        let cancel = cancel.clone();
        tracker.spawn(async move {
            client::serve(stream, peer, local, shared2, cancel).await;
            drop(share);
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests;
