//! The lookup service's settings, read from the environment through the runtime's catalog.

use feepay_runtime::settings::{self, catalog, DatabaseSettings};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct LookupSettings {
    pub database: DatabaseSettings,
    /// `FEEPAY_LOOKUP_ADDR` (default `127.0.0.1:8080`): the public server.
    pub addr: SocketAddr,
    /// `FEEPAY_LOOKUP_OPS_ADDR` (default `127.0.0.1:9104`): metrics and health, not public.
    pub ops_addr: SocketAddr,
    /// `FEEPAY_LOOKUP_PUBLIC_URL` (default `http://127.0.0.1:8080`): the address citizens use;
    /// the QR code on a receipt page links to `<public url>/tra-cuu/<code>`.
    pub public_url: String,
    /// `FEEPAY_LOOKUP_RATE_PER_MINUTE` (default 120) and `FEEPAY_LOOKUP_BURST` (default 30):
    /// requests allowed per client address.
    pub rate_per_minute: u32,
    pub burst: u32,
    /// `FEEPAY_LOOKUP_MIN_RESPONSE_MS` (default 100): every answer to a lookup code takes at
    /// least this long, found or not, so timing tells nothing about which codes exist.
    pub min_response: Duration,
    /// `FEEPAY_LOOKUP_PROXY_HOPS` (default 0): how many reverse proxies stand in front; the
    /// client is the address that many hops from the right of `X-Forwarded-For` + the peer,
    /// so an address a client writes in the header itself is never believed.
    pub proxy_hops: usize,
    /// `FEEPAY_LOOKUP_HEADER_TIMEOUT_SECS` (default 10): a client must send its request
    /// head within this; `FEEPAY_LOOKUP_REQUEST_TIMEOUT_SECS` (default 20): the whole
    /// request, body included, within this (408 after).
    pub header_timeout: Duration,
    pub request_timeout: Duration,
    /// `FEEPAY_LOOKUP_MAX_CONCURRENT` (default 256): requests served at once; more wait.
    pub max_concurrent: usize,
    /// `FEEPAY_LOOKUP_MAX_UPLOADS` (default 32): verification uploads at once; more wait.
    pub max_uploads: usize,
    /// `FEEPAY_LOOKUP_IDLE_TIMEOUT_SECS` (default 30), `FEEPAY_LOOKUP_MAX_CONNECTIONS`
    /// (default 1024), `FEEPAY_LOOKUP_MAX_CONNECTIONS_PER_ADDRESS` (default 32): what
    /// clients can hold of the public port (`http::EdgeLimits`).
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    /// `FEEPAY_LOOKUP_VERIFY_WORKERS` (default: the number of cores): documents verified at
    /// once, on blocking threads, so verification never occupies the request workers.
    pub verify_workers: usize,
    /// `FEEPAY_TRUST_ANCHORS` (default `.local/pki/ca.pem`): the CA certificates (PEM) a
    /// receipt's signing certificate must chain to. Read at start-up.
    pub trust_anchors: std::path::PathBuf,
}

impl LookupSettings {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(LookupSettings {
            database: DatabaseSettings::from_env()?,
            addr: settings::parse(&catalog::LOOKUP_ADDR)?,
            ops_addr: settings::parse(&catalog::LOOKUP_OPS_ADDR)?,
            public_url: settings::get(&catalog::LOOKUP_PUBLIC_URL).trim_end_matches('/').into(),
            rate_per_minute: settings::parse(&catalog::LOOKUP_RATE_PER_MINUTE)?,
            burst: settings::parse(&catalog::LOOKUP_BURST)?,
            min_response: Duration::from_millis(settings::parse(&catalog::LOOKUP_MIN_RESPONSE_MS)?),
            proxy_hops: match settings::opt(&catalog::LOOKUP_PROXY_HOPS) {
                Some(_) => settings::parse(&catalog::LOOKUP_PROXY_HOPS)?,
                // The former switch: one proxy.
                None => usize::from(settings::parse::<bool>(&catalog::LOOKUP_TRUST_FORWARDED)?),
            },
            header_timeout: Duration::from_secs(settings::parse(&catalog::LOOKUP_HEADER_TIMEOUT_SECS)?),
            request_timeout: Duration::from_secs(settings::parse(&catalog::LOOKUP_REQUEST_TIMEOUT_SECS)?),
            max_concurrent: settings::parse(&catalog::LOOKUP_MAX_CONCURRENT)?,
            max_uploads: settings::parse::<usize>(&catalog::LOOKUP_MAX_UPLOADS)?.max(1),
            idle_timeout: Duration::from_secs(settings::parse::<u64>(&catalog::LOOKUP_IDLE_TIMEOUT_SECS)?.max(1)),
            max_connections: settings::parse::<usize>(&catalog::LOOKUP_MAX_CONNECTIONS)?.max(1),
            max_connections_per_address: settings::parse(&catalog::LOOKUP_MAX_CONNECTIONS_PER_ADDRESS)?,
            verify_workers: match settings::opt(&catalog::LOOKUP_VERIFY_WORKERS) {
                Some(_) => match settings::parse(&catalog::LOOKUP_VERIFY_WORKERS)? {
                    0 => anyhow::bail!("FEEPAY_LOOKUP_VERIFY_WORKERS must be at least 1"),
                    n => n,
                },
                None => std::thread::available_parallelism().map_or(1, |n| n.get()),
            },
            trust_anchors: settings::get(&catalog::TRUST_ANCHORS).into(),
        })
    }
}
