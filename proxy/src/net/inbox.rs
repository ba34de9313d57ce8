//! The queue from the middle-end links to one client task: answers, quick acks and
//! closes, with the bytes queued accounted under the same lock as the queue.
//!
//! It replaces an unbounded tokio channel, which allocates a 32-slot block per client
//! whether or not anything is ever queued. An [`Inbox`] with nothing queued owns no heap
//! memory beyond itself (about 100 bytes): the deque is allocated when a message arrives
//! and released when the client has taken the last one.
//!
//! Accounting: a message's bytes are added to the client's count (and to the global
//! budget) only when it is actually queued, and [`Inbox::close`] takes back exactly what
//! is still queued, so the global budget cannot drift however a client's exit races a
//! link's delivery.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::protocol::session::CloseReason;

/// A message for a client task.
#[derive(Debug)]
pub enum ToClient {
    /// One transport packet from RPC_PROXY_ANS.
    Answer(Bytes),
    /// A quick ack from RPC_SIMPLE_ACK.
    QuickAck(u32),
    /// Close the client (CLOSE_EXT, link lost, buffer limits).
    Close(CloseReason),
}

/// Why an answer was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The client task is gone.
    Gone,
    /// The client's own queue would exceed the per-connection cap (C: flood).
    ConnCap,
    /// The global budget is ¾ used and this client holds a large queue (C: LRU).
    GlobalBudget,
}

/// The buffer budgets an answer is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Budget<'a> {
    /// Bytes queued towards all clients together.
    pub global: &'a AtomicUsize,
    /// Per-connection cap.
    pub per_conn: usize,
    /// Above this many globally queued bytes, large queues are closed.
    pub global_high: usize,
    /// What counts as a large queue.
    pub large_queue: usize,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<ToClient>,
    /// Answer bytes in `queue`.
    queued: usize,
    closed: bool,
}

/// One client's queue (shared by the client task and the link it is pinned to).
#[derive(Debug, Default)]
pub struct Inbox {
    state: Mutex<State>,
    notify: Notify,
}

/// How a link reaches one client.
pub type ClientHandle = Arc<Inbox>;

impl Inbox {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a control message (quick ack, close); `false` when the client is gone.
    pub fn push(&self, msg: ToClient) -> bool {
        {
            let mut st = self.lock();
            if st.closed {
                return false;
            }
            st.queue.push_back(msg);
        }
        self.notify.notify_one();
        true
    }

    /// Queues an answer if the budgets allow; a refusal for a budget also queues a
    /// close, so the client goes away as C's would.
    ///
    /// # Errors
    /// [`Refused`] with the reason; nothing is accounted then.
    pub fn offer(&self, data: Bytes, budget: Budget<'_>) -> Result<(), Refused> {
        let n = data.len();
        let refused = {
            let mut st = self.lock();
            if st.closed {
                return Err(Refused::Gone);
            }
            let queued = st.queued + n;
            let refused = if queued > budget.per_conn {
                Some(Refused::ConnCap)
            } else if budget.global.load(Relaxed) + n > budget.global_high
                && queued > budget.large_queue
            {
                Some(Refused::GlobalBudget)
            } else {
                None
            };
            match refused {
                Some(_) => st
                    .queue
                    .push_back(ToClient::Close(CloseReason::BufferLimit)),
                None => {
                    st.queued = queued;
                    budget.global.fetch_add(n, Relaxed);
                    st.queue.push_back(ToClient::Answer(data));
                }
            }
            refused
        };
        self.notify.notify_one();
        refused.map_or(Ok(()), Err)
    }

    /// Takes the oldest message, giving its bytes back to `global`. The queue's memory is
    /// released when it becomes empty.
    pub fn pop(&self, global: &AtomicUsize) -> Option<ToClient> {
        let mut st = self.lock();
        let msg = st.queue.pop_front();
        if let Some(ToClient::Answer(d)) = &msg {
            st.queued -= d.len();
            global.fetch_sub(d.len(), Relaxed);
        }
        if st.queue.is_empty() && st.queue.capacity() > 0 {
            st.queue = VecDeque::new();
        }
        msg
    }

    /// Waits until something may have been queued since the last wait (spurious wake-ups
    /// are possible: [`Inbox::pop`] may then find nothing).
    pub async fn notified(&self) {
        self.notify.notified().await;
    }

    /// Wakes the client task as if something had been queued (it has more to take).
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    /// Marks the client gone, drops what is queued and gives its bytes back to `global`.
    pub fn close(&self, global: &AtomicUsize) {
        let mut st = self.lock();
        st.closed = true;
        global.fetch_sub(st.queued, Relaxed);
        st.queued = 0;
        st.queue = VecDeque::new();
    }

    /// Answer bytes queued now.
    pub fn queued(&self) -> usize {
        self.lock().queued
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(global: &AtomicUsize) -> Budget<'_> {
        Budget {
            global,
            per_conn: 100,
            global_high: 150,
            large_queue: 40,
        }
    }

    #[test]
    fn accounting_follows_the_queue_and_close_takes_back_the_rest() {
        let global = AtomicUsize::new(0);
        let inbox = Inbox::default();
        inbox
            .offer(Bytes::from(vec![1; 30]), budget(&global))
            .unwrap();
        assert!(inbox.push(ToClient::QuickAck(7)));
        inbox
            .offer(Bytes::from(vec![2; 20]), budget(&global))
            .unwrap();
        assert_eq!((inbox.queued(), global.load(Relaxed)), (50, 50));
        assert!(matches!(inbox.pop(&global), Some(ToClient::Answer(d)) if d.len() == 30));
        assert_eq!((inbox.queued(), global.load(Relaxed)), (20, 20));
        inbox.close(&global);
        assert_eq!((inbox.queued(), global.load(Relaxed)), (0, 0));
        assert_eq!(
            inbox.offer(Bytes::from(vec![3; 5]), budget(&global)),
            Err(Refused::Gone)
        );
        assert!(!inbox.push(ToClient::QuickAck(1)));
        assert!(inbox.pop(&global).is_none());
        assert_eq!(global.load(Relaxed), 0, "nothing accounted after close");
    }

    #[test]
    fn over_a_budget_the_answer_is_refused_and_a_close_is_queued() {
        let global = AtomicUsize::new(0);
        let inbox = Inbox::default();
        assert_eq!(
            inbox.offer(Bytes::from(vec![0; 101]), budget(&global)),
            Err(Refused::ConnCap)
        );
        assert!(matches!(
            inbox.pop(&global),
            Some(ToClient::Close(CloseReason::BufferLimit))
        ));
        // Global pressure: another client holds 120 bytes; this one may queue 40 but
        // not more.
        global.fetch_add(120, Relaxed);
        inbox
            .offer(Bytes::from(vec![0; 40]), budget(&global))
            .unwrap();
        assert_eq!(
            inbox.offer(Bytes::from(vec![0; 10]), budget(&global)),
            Err(Refused::GlobalBudget)
        );
        assert_eq!(global.load(Relaxed), 160);
        inbox.close(&global);
        assert_eq!(global.load(Relaxed), 120);
    }

    #[tokio::test]
    async fn a_push_before_the_wait_is_not_lost() {
        let global = AtomicUsize::new(0);
        let inbox = Arc::new(Inbox::default());
        assert!(inbox.push(ToClient::QuickAck(5)));
        tokio::time::timeout(std::time::Duration::from_secs(5), inbox.notified())
            .await
            .expect("the stored permit wakes the waiter");
        assert!(matches!(inbox.pop(&global), Some(ToClient::QuickAck(5))));
        let i2 = inbox.clone();
        let waiter = tokio::spawn(async move { i2.notified().await });
        inbox.push(ToClient::Close(CloseReason::ClosedByMe));
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("a waiting task is woken")
            .unwrap();
    }
}
