//! The server that faces the internet (the lookup's public port). What one client, or many,
//! can hold of it is bounded:
//! - a client that does not send its request head in time is cut off (slow loris);
//! - a connection with no request in flight and nothing received for `idle_timeout` is
//!   closed, whatever the protocol: a silent TCP connection (which would otherwise sit in
//!   HTTP version detection for ever), an idle keep-alive connection, an idle HTTP/2
//!   connection that answers pings;
//! - at most `max_connections` are open at once and at most `max_connections_per_address`
//!   from one address (IPv6 counted per /64); a connection over either cap is closed at
//!   once, before anything is read from it, so memory follows what is admitted;
//! - a shutdown waits for open connections only up to a deadline.
//!
//! Behind reverse proxies every connection comes from a proxy, so the per-address cap is
//! the proxies' job there (`per_address: 0` turns it off); the total cap still holds.

use axum::Router;
use prometheus::{IntCounterVec, IntGauge};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;

/// Limits of a server that faces the internet.
#[derive(Debug, Clone, Copy)]
pub struct EdgeLimits {
    /// Longest a client may take to send a request head (slow-loris protection).
    pub header_read_timeout: Duration,
    /// A connection with no request in flight and nothing received for this long is closed.
    pub idle_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
    /// Connections open at once from one address (IPv6: one /64); 0 for no such cap.
    pub max_connections_per_address: usize,
    /// Longest a shutdown waits for open connections before dropping them.
    pub shutdown_grace: Duration,
}

/// What the edge counts: open connections, those refused (`total`, `per_address`) and
/// those closed for idleness.
#[derive(Clone)]
pub struct EdgeMetrics {
    pub open: IntGauge,
    pub closed: IntCounterVec,
}

impl EdgeMetrics {
    pub fn new(registry: &prometheus::Registry, prefix: &str) -> EdgeMetrics {
        let m = EdgeMetrics {
            open: crate::metrics::gauge(registry, &format!("{prefix}_connections_open"), "Open public connections"),
            closed: crate::metrics::counter_vec(
                registry,
                &format!("{prefix}_connections_closed_total"),
                "Public connections closed by the server: over the total cap, over the per-address cap, idle",
                &["reason"],
            ),
        };
        for reason in ["total", "per_address", "idle"] {
            m.closed.with_label_values(&[reason]);
        }
        m
    }
}

/// The address a cap counts: IPv4 as it is, IPv6 by its /64 (one subscriber's prefix).
fn counted(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        IpAddr::V6(v6) => IpAddr::V4(v6.to_ipv4_mapped().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED)),
        v4 => v4,
    }
}

/// Admission of connections under the caps.
struct Gate {
    limits: EdgeLimits,
    open: AtomicUsize,
    per_address: Mutex<HashMap<IpAddr, usize>>,
}

/// An admitted connection; leaving the gate when dropped.
struct Admitted {
    gate: Arc<Gate>,
    ip: IpAddr,
}

impl Gate {
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, &'static str> {
        let ip = counted(ip);
        let mut per = self.per_address.lock().unwrap_or_else(|e| e.into_inner());
        if self.open.load(Ordering::Relaxed) >= self.limits.max_connections {
            return Err("total");
        }
        let mine = per.entry(ip).or_insert(0);
        if self.limits.max_connections_per_address > 0 && *mine >= self.limits.max_connections_per_address {
            return Err("per_address");
        }
        *mine += 1;
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(Admitted { gate: self.clone(), ip })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut per = self.gate.per_address.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = per.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per.remove(&self.ip);
            }
        }
        self.gate.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What a connection is doing: requests in flight and when it last received anything.
struct Activity {
    in_flight: AtomicUsize,
    last: Mutex<Instant>,
}

impl Activity {
    fn touch(&self) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        Some(self.last.lock().unwrap_or_else(|e| e.into_inner()).elapsed())
    }
}

/// The client's stream, noting when it receives something.
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A request in flight on a connection, until its response is produced.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(a: &Arc<Activity>) -> InFlight {
        a.in_flight.fetch_add(1, Ordering::Relaxed);
        a.touch();
        InFlight(a.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves `router` on `addr` for the internet, under `limits` (see the module comment).
pub async fn serve_public(
    addr: SocketAddr,
    router: Router,
    limits: EdgeLimits,
    metrics: Option<EdgeMetrics>,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::server::graceful::GracefulShutdown;
    use tower::ServiceExt;

    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let gate = Arc::new(Gate { limits, open: AtomicUsize::new(0), per_address: Mutex::new(HashMap::new()) });
    let check_every = (limits.idle_timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    let handle = tokio::spawn(async move {
        let mut builder = Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
        let graceful = GracefulShutdown::new();
        loop {
            let (stream, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = shutdown.cancelled() => break,
            };
            let admitted = match gate.admit(peer.ip()) {
                Ok(a) => a,
                Err(reason) => {
                    // Closed at once: nothing read, nothing buffered.
                    if let Some(m) = &metrics {
                        m.closed.with_label_values(&[reason]).inc();
                    }
                    tracing::debug!(%peer, reason, "connection over the cap closed");
                    drop(stream);
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let activity = Arc::new(Activity { in_flight: AtomicUsize::new(0), last: Mutex::new(Instant::now()) });
            let router = router.clone();
            let on_request = activity.clone();
            let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
                let flight = InFlight::start(&on_request);
                let call = router.clone().oneshot(req.map(axum::body::Body::new));
                async move {
                    let r = call.await;
                    drop(flight);
                    r
                }
            });
            let io = TokioIo::new(Watched { inner: stream, activity: activity.clone() });
            let conn = graceful.watch(builder.serve_connection_with_upgrades(io, service).into_owned());
            let metrics = metrics.clone();
            if let Some(m) = &metrics {
                m.open.inc();
            }
            tokio::spawn(async move {
                let _admitted = admitted;
                tokio::pin!(conn);
                loop {
                    tokio::select! {
                        r = &mut conn => {
                            if let Err(e) = r {
                                tracing::debug!(error = %e, %peer, "connection ended with an error");
                            }
                            break;
                        }
                        _ = tokio::time::sleep(check_every) => {
                            if activity.idle_for().is_some_and(|d| d >= limits.idle_timeout) {
                                if let Some(m) = &metrics {
                                    m.closed.with_label_values(&["idle"]).inc();
                                }
                                tracing::debug!(%peer, "idle connection closed");
                                break;
                            }
                        }
                    }
                }
                if let Some(m) = &metrics {
                    m.open.dec();
                }
            });
        }
        tokio::select! {
            _ = graceful.shutdown() => {}
            _ = tokio::time::sleep(limits.shutdown_grace) => {
                tracing::warn!("connections still open after the shutdown grace period were dropped");
            }
        }
    });
    Ok((bound, handle))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(total: usize, per: usize) -> Arc<Gate> {
        let limits = EdgeLimits {
            header_read_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            max_connections: total,
            max_connections_per_address: per,
            shutdown_grace: Duration::from_secs(1),
        };
        Arc::new(Gate { limits, open: AtomicUsize::new(0), per_address: Mutex::new(HashMap::new()) })
    }

    #[test]
    fn caps_count_per_address_and_in_total_and_free_on_close() {
        let g = gate(3, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let (a1, a2) = (g.admit(a).unwrap(), g.admit(a).unwrap());
        assert_eq!(g.admit(a).err(), Some("per_address"));
        let b1 = g.admit(b).unwrap();
        assert_eq!(g.admit(b).err(), Some("total"));
        drop(a1);
        assert!(g.admit(b).is_ok(), "a closed connection frees its places");
        drop((a2, b1));
        assert_eq!(g.per_address.lock().unwrap().len(), 0);
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let g = gate(10, 1);
        let _x = g.admit("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert_eq!(g.admit("2001:db8:1:2:ffff::9".parse().unwrap()).err(), Some("per_address"));
        assert!(g.admit("2001:db8:1:3::1".parse().unwrap()).is_ok());
        let _y = g.admit("192.0.2.7".parse().unwrap()).unwrap();
        assert_eq!(g.admit("::ffff:192.0.2.7".parse().unwrap()).err(), Some("per_address"));
    }
}
