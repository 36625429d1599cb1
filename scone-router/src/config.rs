//! The relay's settings: [`RelayConfig`], the `SERVICE=...` forms of routes and trusted
//! keys, and the TOML config file ([`ConfigFile`]).

mod file;
mod mesh;

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::num::NonZeroUsize;
use std::str::FromStr;
use std::time::Duration;

use scone::{CacheLimits, PublicKey, ServiceId};
use scone_rpc::server::ServerConfig;

pub use file::ConfigFile;
pub use mesh::MeshConfig;

use crate::error::ConfigError;

/// Settings of a relay. The `scone-relay` binary fills them from its config file, then
/// its flags (and their environment variables), which override the file.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Where the relay listens for clients (`--listen`; default `127.0.0.1:7400`).
    pub listen: SocketAddr,
    /// The upstream servers of each service (`--route`). A request for a service with no
    /// route is refused with `wrong-service`.
    pub routes: Vec<Route>,
    /// The public keys trusted for each service (`--trust`). Only SCONEs that verify
    /// under a key trusted for their own service are held; a relay that trusts no key for
    /// a routed service forwards its calls but holds none of its state.
    pub trust: Vec<TrustEntry>,
    /// Bounds of the held SCONEs, by count (`--cache-entries`, default 100,000) and
    /// encoded bytes (`--cache-bytes`, default 256 MiB); the least recently used go
    /// first. Each SCONE also goes at its own expiry.
    pub cache: CacheLimits,
    /// Most verified Merkle roots remembered (`--verified-roots`, default 4,096): a SCONE
    /// whose root is among them costs no signature check.
    pub verified_roots: NonZeroUsize,
    /// Largest SCONE the relay decodes, verifies or holds (default 64 KiB, the servers'
    /// default).
    pub max_scone_bytes: usize,
    /// How long a request waits for the verification of its client's previous reply
    /// before going on with what the relay holds (`--pending-wait`, default 1 s). That
    /// verification takes tens of microseconds: this bounds a stuck one, not a normal one.
    pub pending_wait: Duration,
    /// Connections to the upstream servers.
    pub upstream: UpstreamConfig,
    /// The listener's bounds and timeouts (connections, frames, idle and slow peers):
    /// `scone_rpc::server::run`'s own (`--max-connections`, `--idle-timeout`).
    pub server: ServerConfig,
    /// The relay mesh: peers, secret, copies (off unless a secret is given).
    pub mesh: MeshConfig,
    /// Where to serve the counters for Prometheus, `GET /metrics` (`--metrics`; default
    /// none: not served). See [`metrics`](crate::metrics).
    pub metrics: Option<SocketAddr>,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7400)),
            metrics: None,
            routes: Vec::new(),
            trust: Vec::new(),
            cache: CacheLimits {
                max_entries: NonZeroUsize::new(100_000).unwrap_or(NonZeroUsize::MIN),
                max_bytes: 256 * 1024 * 1024,
            },
            verified_roots: NonZeroUsize::new(4096).unwrap_or(NonZeroUsize::MIN),
            max_scone_bytes: scone::DEFAULT_MAX_SCONE_BYTES,
            pending_wait: Duration::from_secs(1),
            upstream: UpstreamConfig::default(),
            server: ServerConfig::default(),
            mesh: MeshConfig::default(),
        }
    }
}

impl RelayConfig {
    /// Sets the routes of the services `routes` name, replacing what was set for those
    /// services (a later source overrides an earlier one service by service).
    pub fn set_routes(&mut self, routes: impl IntoIterator<Item = Route>) {
        for route in routes {
            self.routes.retain(|held| held.service != route.service);
            self.routes.push(route);
        }
    }

    /// Sets the keys trusted for the services `entries` name, replacing the keys set for
    /// those services before; several entries for one service are all kept (a key
    /// rotation trusts the old and the new key).
    pub fn set_trust(&mut self, entries: impl IntoIterator<Item = TrustEntry>) {
        let entries: Vec<TrustEntry> = entries.into_iter().collect();
        self.trust
            .retain(|held| !entries.iter().any(|new| new.service == held.service));
        self.trust.extend(entries);
    }
}

/// Connections from the relay to its upstream servers: one multiplexed connection per
/// upstream address, opened on first use and again after it is lost.
#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// How long connecting to an upstream may take before it counts as failed
    /// (`--connect-timeout`, default 2 s).
    pub connect_timeout: Duration,
    /// After an upstream fails to connect, it is skipped (while another of its route is
    /// healthy) for this long, doubling on each further failure up to
    /// [`backoff_max`](Self::backoff_max) (default 100 ms).
    pub backoff_min: Duration,
    /// Longest an upstream that keeps failing is skipped (default 5 s). When every
    /// upstream of a route is being skipped, each is tried anyway: a request is never
    /// refused for backoff alone.
    pub backoff_max: Duration,
    /// Whether a request whose upstream connection was lost (closed, reset) is sent
    /// again, on a new connection or to the next upstream (default `true`;
    /// `--no-retry`). A connection can be lost after the request went out, so the
    /// request may then run twice. Its SCONE state cannot fork: the retry carries the
    /// same SCONE, so both runs start from the same state, and only the reply that
    /// arrives is kept. Effects outside the state (a mail sent, a card charged) may
    /// repeat: turn this off for a service whose calls have them and are not idempotent.
    /// Off, the first request after an upstream restarts fails too (the relay cannot tell
    /// a connection closed before the request went out from one lost after), and the
    /// next one connects again.
    pub retry_after_connection_loss: bool,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            retry_after_connection_loss: true,
        }
    }
}

/// The upstream servers of one service: `SERVICE=ADDR[,ADDR...]`, each `ADDR` an
/// `IP:PORT` or a `HOST:PORT` resolved once, when parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The service routed.
    pub service: ServiceId,
    /// Its servers, used in turn (round-robin), a failing one skipped.
    pub upstreams: Vec<SocketAddr>,
}

impl FromStr for Route {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, ConfigError> {
        let (service, addrs) = text
            .split_once('=')
            .ok_or_else(|| ConfigError::RouteSyntax(text.to_owned()))?;
        let service = parse_service(service)?;
        let upstreams = addrs
            .split(',')
            .map(str::trim)
            .filter(|addr| !addr.is_empty())
            .map(parse_addr)
            .collect::<Result<Vec<_>, _>>()?;
        if upstreams.is_empty() {
            return Err(ConfigError::EmptyRoute(service));
        }
        Ok(Self { service, upstreams })
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}=", self.service)?;
        for (i, addr) in self.upstreams.iter().enumerate() {
            let comma = if i == 0 { "" } else { "," };
            write!(f, "{comma}{addr}")?;
        }
        Ok(())
    }
}

/// A public key trusted for one service's SCONEs: `SERVICE=PUBKEY`, the key in the text
/// form `scone keygen` and `scone pubkey` print (32 bytes in base64url).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustEntry {
    /// The service whose SCONEs the key may sign.
    pub service: ServiceId,
    /// The key.
    pub key: PublicKey,
}

impl FromStr for TrustEntry {
    type Err = ConfigError;

    fn from_str(text: &str) -> Result<Self, ConfigError> {
        let (service, key) = text
            .split_once('=')
            .ok_or_else(|| ConfigError::TrustSyntax(text.to_owned()))?;
        let service = parse_service(service)?;
        let key = parse_key(&service, key)?;
        Ok(Self { service, key })
    }
}

fn parse_service(name: &str) -> Result<ServiceId, ConfigError> {
    let name = name.trim();
    ServiceId::new(name).map_err(|source| ConfigError::Service {
        name: name.to_owned(),
        source,
    })
}

fn parse_key(service: &ServiceId, text: &str) -> Result<PublicKey, ConfigError> {
    text.trim().parse().map_err(|source| ConfigError::Key {
        service: service.clone(),
        source,
    })
}

/// `IP:PORT`, else `HOST:PORT` resolved now (its first address).
fn parse_addr(text: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let error = |source| ConfigError::Address {
        addr: text.to_owned(),
        source,
    };
    text.to_socket_addrs()
        .map_err(|e| error(Some(e)))?
        .next()
        .ok_or_else(|| error(None))
}

fn parse_duration(field: &'static str, text: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(text.trim()).map_err(|source| ConfigError::Duration {
        field,
        value: text.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use scone::SigningKey;

    use super::*;

    #[test]
    fn routes_parse_and_print_back() {
        let route: Route = "cart=127.0.0.1:7001, 127.0.0.1:7002".parse().unwrap();
        assert_eq!(route.service.as_str(), "cart");
        assert_eq!(route.upstreams.len(), 2);
        assert_eq!(route.to_string(), "cart=127.0.0.1:7001,127.0.0.1:7002");
        assert_eq!(route.to_string().parse::<Route>().unwrap(), route);
        for bad in ["cart", "cart=", "cart=nowhere", "ca rt=127.0.0.1:1"] {
            assert!(bad.parse::<Route>().is_err(), "{bad}");
        }
    }

    #[test]
    fn trusted_keys_parse() {
        let key = SigningKey::from_seed(&[3; 32]).public_key();
        let entry: TrustEntry = format!("cart={key}").parse().unwrap();
        assert_eq!((entry.service.as_str(), entry.key), ("cart", key));
        assert!(matches!(
            "cart=AAAA".parse::<TrustEntry>(),
            Err(ConfigError::Key { .. })
        ));
        assert!(matches!(
            "cart".parse::<TrustEntry>(),
            Err(ConfigError::TrustSyntax(_))
        ));
    }

    #[test]
    fn later_settings_replace_earlier_ones_service_by_service() {
        let key = |seed| SigningKey::from_seed(&[seed; 32]).public_key();
        let mut config = RelayConfig::default();
        config.set_routes([
            "cart=127.0.0.1:1".parse().unwrap(),
            "ledger=127.0.0.1:2".parse().unwrap(),
        ]);
        config.set_routes(["cart=127.0.0.1:3".parse().unwrap()]);
        let routes: Vec<String> = config.routes.iter().map(Route::to_string).collect();
        assert_eq!(routes, ["ledger=127.0.0.1:2", "cart=127.0.0.1:3"]);

        let trust = |service: &str, seed| TrustEntry {
            service: ServiceId::new(service).unwrap(),
            key: key(seed),
        };
        config.set_trust([trust("cart", 1), trust("ledger", 2)]);
        config.set_trust([trust("cart", 3), trust("cart", 4)]);
        let keys: Vec<(&str, PublicKey)> = config
            .trust
            .iter()
            .map(|entry| (entry.service.as_str(), entry.key))
            .collect();
        assert_eq!(
            keys,
            [("ledger", key(2)), ("cart", key(3)), ("cart", key(4))]
        );
    }
}
