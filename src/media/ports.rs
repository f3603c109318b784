//! The RTP port range: each call takes an even port (its RTP; the odd one above is left for
//! RTCP) and gives it back when the call ends.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

/// Shared by every call; the lock is held only to take or return one port number, at call
/// setup and teardown, never on the media path.
pub struct PortPool {
    free: Mutex<VecDeque<u16>>,
}

/// A port taken from the pool, returned when dropped.
pub struct PortLease {
    port: u16,
    pool: Arc<PortPool>,
}

impl PortLease {
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        // Returned at the back: a port is reused as late as possible, so stray packets of the
        // call that had it are unlikely to reach the next call.
        if let Ok(mut free) = self.pool.free.lock() {
            free.push_back(self.port);
        }
    }
}

impl PortPool {
    pub fn new(low: u16, high: u16) -> Arc<PortPool> {
        let first = low + (low % 2);
        let free = (first..high).step_by(2).collect();
        Arc::new(PortPool {
            free: Mutex::new(free),
        })
    }

    pub fn available(&self) -> usize {
        self.free.lock().map(|f| f.len()).unwrap_or(0)
    }

    fn take(self: &Arc<Self>) -> Option<PortLease> {
        let port = self.free.lock().ok()?.pop_front()?;
        Some(PortLease {
            port,
            pool: Arc::clone(self),
        })
    }

    /// Binds a UDP socket on the next free port of the range; ports that another process holds
    /// are skipped (and go back to the pool for later).
    /// The socket is non-blocking, for a media reactor's epoll set.
    pub fn bind(self: &Arc<Self>, ip: IpAddr) -> Option<(std::net::UdpSocket, PortLease)> {
        for _ in 0..64 {
            let lease = self.take()?;
            let addr = SocketAddr::new(ip, lease.port());
            match std::net::UdpSocket::bind(addr) {
                Ok(s) => {
                    if s.set_nonblocking(true).is_ok() {
                        return Some((s, lease));
                    }
                }
                Err(e) => tracing::debug!(%addr, error = %e, "RTP port busy; trying the next"),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_even_ports_and_returns_them_on_drop() {
        let pool = PortPool::new(20001, 20007);
        assert_eq!(pool.available(), 3); // 20002, 20004, 20006
        let a = pool.take().unwrap();
        let b = pool.take().unwrap();
        assert_eq!((a.port(), b.port()), (20002, 20004));
        assert_eq!(pool.available(), 1);
        drop(a);
        assert_eq!(pool.available(), 2);
        let c = pool.take().unwrap();
        assert_eq!(c.port(), 20006, "a returned port is reused last");
        let d = pool.take().unwrap();
        assert_eq!(d.port(), 20002);
        assert!(pool.take().is_none());
    }
}
