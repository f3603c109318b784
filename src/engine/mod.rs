//! The media engine: reactor threads that run answered calls' RTP and agent sessions.
//!
//! A call task sets its call up over SIP, then hands the media (socket, media session, agent
//! session) to the least loaded reactor and keeps only SIP; it takes the media back at
//! teardown. Between the two, every packet is handled on the reactor's thread: one `recvfrom`,
//! the session, the agent, one `sendto`. See [`reactor`] for the loop.

pub mod call;
pub mod epoll;
pub mod peer;
pub mod reactor;
pub mod wheel;

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

use tokio::sync::oneshot;

pub use call::{Hangup, MediaCall, Sinks};
use reactor::{Command, Inbox, Reactor};

use crate::media::session::MediaParams;

/// How often a call's RTP figures are published (registry and metrics), wherever it runs.
pub const REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The reactors a gateway runs.
pub struct Engine {
    inboxes: Vec<Arc<Inbox>>,
    next_key: AtomicU64,
}

/// How many reactors to run when the config leaves it open: one per core but one, which is
/// left to SIP and the agents' network I/O on tokio; one on a 2-core machine.
pub fn default_reactors() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get().saturating_sub(1))
        .unwrap_or(1)
        .max(1)
}

impl Engine {
    /// Starts `reactors` threads. They enter the current tokio runtime, if any, so an agent
    /// session polled there may use tokio's timers and I/O as it does on a task.
    pub fn start(reactors: usize, sinks: Sinks) -> std::io::Result<Engine> {
        let runtime = tokio::runtime::Handle::try_current().ok();
        let mut inboxes = Vec::new();
        for n in 0..reactors.max(1) {
            let inbox = Arc::new(Inbox::new()?);
            let reactor = Reactor::new(Arc::clone(&inbox), sinks.clone())?;
            let runtime = runtime.clone();
            std::thread::Builder::new()
                .name(format!("media-{n}"))
                .spawn(move || {
                    let _rt = runtime.as_ref().map(|h| h.enter());
                    // However the loop ends (stop, an epoll failure, a panic outside any one
                    // call), the inbox closes: queued and later commands are dropped, so no call
                    // task waits on a thread that is gone.
                    let _close = CloseOnExit(reactor.inbox());
                    reactor.run();
                })?;
            inboxes.push(inbox);
        }
        Ok(Engine {
            inboxes,
            next_key: AtomicU64::new(1),
        })
    }

    /// Hands a call's media and its RTP socket (non-blocking) to the live reactor running the
    /// fewest calls. With none left alive the call is dropped, and its task hangs up.
    pub fn add(&self, socket: std::net::UdpSocket, call: MediaCall) -> CallHandle {
        let inbox = self
            .inboxes
            .iter()
            .min_by_key(|i| (i.is_closed(), i.calls.load(SeqCst)))
            .map(Arc::clone)
            .expect("an engine has at least one reactor");
        inbox.calls.fetch_add(1, SeqCst);
        let key = self.next_key.fetch_add(1, SeqCst);
        inbox.command(Command::Add {
            key,
            socket,
            call: Box::new(call),
            span: tracing::Span::current(),
        });
        CallHandle { inbox, key }
    }

    /// Calls each reactor runs.
    pub fn load(&self) -> Vec<usize> {
        self.inboxes.iter().map(|i| i.calls.load(SeqCst)).collect()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // The threads end on their own; calls still inside are dropped with them.
        for inbox in &self.inboxes {
            inbox.command(Command::Stop);
        }
    }
}

struct CloseOnExit(Arc<Inbox>);

impl Drop for CloseOnExit {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// A call task's hold on its media inside a reactor.
pub struct CallHandle {
    inbox: Arc<Inbox>,
    key: u64,
}

impl CallHandle {
    /// A re-INVITE changed the media: the stream carries on with the new parameters.
    pub fn update(&self, params: MediaParams) {
        self.inbox.command(Command::Update {
            key: self.key,
            params,
        });
    }

    /// Takes the media and its socket back from the reactor (teardown). `None` only when the
    /// reactor is gone.
    pub async fn take_back(self) -> Option<(std::net::UdpSocket, MediaCall)> {
        let (reply, rx) = oneshot::channel();
        self.inbox.command(Command::Remove {
            key: self.key,
            reply,
        });
        rx.await.ok().map(|(socket, call)| (socket, *call))
    }
}

#[cfg(test)]
mod tests;
