//! The TOML config file: the same settings as the flags, under the same names.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::path::Path;

use serde::Deserialize;

use super::{parse_addr, parse_duration, parse_key, parse_service, RelayConfig, Route, TrustEntry};
use crate::error::ConfigError;

/// The settings a config file may hold:
///
/// ```toml
/// listen = "0.0.0.0:7400"
/// metrics = "127.0.0.1:9400"
/// cache-entries = 100000
/// cache-bytes = 268435456
/// connect-timeout = "2s"
/// # The mesh (optional)
/// mesh-listen = "0.0.0.0:7500"
/// peers = ["10.0.0.2:7500", "10.0.0.3:7500"]
/// mesh-secret-file = "/etc/scone/mesh.secret"
/// replicas = 1
/// fast = false
/// peer-timeout = "500ms"
///
/// [routes]
/// cart = ["10.0.0.1:7001", "10.0.0.2:7001"]
///
/// [trust]
/// cart = ["<public key from `scone pubkey`>"]
/// ```
///
/// Every setting is optional; an unknown one is an error (a misspelt setting must not
/// be silently ignored). Durations are written the way `humantime` reads them: `500ms`,
/// `2s`, `1m 30s`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConfigFile {
    /// `listen`: [`RelayConfig::listen`].
    listen: Option<String>,
    /// `metrics`: [`RelayConfig::metrics`].
    metrics: Option<String>,
    /// `[routes]`: service = list of upstream addresses ([`RelayConfig::routes`]).
    #[serde(default)]
    routes: BTreeMap<String, Vec<String>>,
    /// `[trust]`: service = list of public keys ([`RelayConfig::trust`]).
    #[serde(default)]
    trust: BTreeMap<String, Vec<String>>,
    /// `cache-entries`: [`RelayConfig::cache`]'s count bound.
    cache_entries: Option<NonZeroUsize>,
    /// `cache-bytes`: [`RelayConfig::cache`]'s byte bound.
    cache_bytes: Option<usize>,
    /// `verified-roots`: [`RelayConfig::verified_roots`].
    verified_roots: Option<NonZeroUsize>,
    /// `pending-wait`: [`RelayConfig::pending_wait`].
    pending_wait: Option<String>,
    /// `connect-timeout`: [`UpstreamConfig::connect_timeout`](super::UpstreamConfig::connect_timeout).
    connect_timeout: Option<String>,
    /// `retry-after-connection-loss`:
    /// [`UpstreamConfig::retry_after_connection_loss`](super::UpstreamConfig::retry_after_connection_loss).
    retry_after_connection_loss: Option<bool>,
    /// `max-connections`: the listener's `max_connections`.
    max_connections: Option<usize>,
    /// `idle-timeout`: the listener's `idle_timeout`.
    idle_timeout: Option<String>,
    /// `mesh-listen`: [`MeshConfig::listen`](super::MeshConfig::listen).
    mesh_listen: Option<String>,
    /// `peers`: [`MeshConfig::peers`](super::MeshConfig::peers).
    peers: Option<Vec<String>>,
    /// `mesh-secret-file`: where [`MeshConfig::secret`](super::MeshConfig::secret) is read
    /// from (the secret itself never goes in the config file).
    mesh_secret_file: Option<std::path::PathBuf>,
    /// `replicas`: [`MeshConfig::replicas`](super::MeshConfig::replicas).
    replicas: Option<NonZeroUsize>,
    /// `fast`: [`MeshConfig::fast`](super::MeshConfig::fast).
    fast: Option<bool>,
    /// `peer-timeout`: [`MeshConfig::peer_timeout`](super::MeshConfig::peer_timeout).
    peer_timeout: Option<String>,
}

impl ConfigFile {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|source| ConfigError::Toml {
            path: path.to_owned(),
            source,
        })
    }

    /// Parses a config file's text.
    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// Writes the settings the file holds into `config`, leaving the others alone.
    pub fn apply(self, config: &mut RelayConfig) -> Result<(), ConfigError> {
        if let Some(listen) = &self.listen {
            config.listen = parse_addr(listen)?;
        }
        if let Some(metrics) = &self.metrics {
            config.metrics = Some(parse_addr(metrics)?);
        }
        let mut routes = Vec::with_capacity(self.routes.len());
        for (service, addrs) in &self.routes {
            let service = parse_service(service)?;
            let upstreams = addrs
                .iter()
                .map(|addr| parse_addr(addr))
                .collect::<Result<Vec<_>, _>>()?;
            if upstreams.is_empty() {
                return Err(ConfigError::EmptyRoute(service));
            }
            routes.push(Route { service, upstreams });
        }
        config.set_routes(routes);
        let mut trust = Vec::new();
        for (service, keys) in &self.trust {
            let service = parse_service(service)?;
            for key in keys {
                let key = parse_key(&service, key)?;
                trust.push(TrustEntry {
                    service: service.clone(),
                    key,
                });
            }
        }
        config.set_trust(trust);
        if let Some(entries) = self.cache_entries {
            config.cache.max_entries = entries;
        }
        if let Some(bytes) = self.cache_bytes {
            config.cache.max_bytes = bytes;
        }
        if let Some(roots) = self.verified_roots {
            config.verified_roots = roots;
        }
        if let Some(wait) = &self.pending_wait {
            config.pending_wait = parse_duration("pending-wait", wait)?;
        }
        if let Some(timeout) = &self.connect_timeout {
            config.upstream.connect_timeout = parse_duration("connect-timeout", timeout)?;
        }
        if let Some(retry) = self.retry_after_connection_loss {
            config.upstream.retry_after_connection_loss = retry;
        }
        if let Some(max) = self.max_connections {
            config.server.max_connections = max;
        }
        if let Some(timeout) = &self.idle_timeout {
            config.server.idle_timeout = parse_duration("idle-timeout", timeout)?;
        }
        if let Some(listen) = &self.mesh_listen {
            config.mesh.listen = Some(parse_addr(listen)?);
        }
        if let Some(peers) = &self.peers {
            config.mesh.peers = peers
                .iter()
                .map(|peer| parse_addr(peer))
                .collect::<Result<_, _>>()?;
        }
        if let Some(path) = &self.mesh_secret_file {
            config.mesh.secret = Some(crate::mesh::MeshSecret::load(path)?);
        }
        if let Some(replicas) = self.replicas {
            config.mesh.replicas = replicas;
        }
        if let Some(fast) = self.fast {
            config.mesh.fast = fast;
        }
        if let Some(timeout) = &self.peer_timeout {
            config.mesh.peer_timeout = parse_duration("peer-timeout", timeout)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use scone::SigningKey;

    use super::*;

    #[test]
    fn a_file_sets_what_it_holds_and_nothing_else() {
        let key = SigningKey::from_seed(&[4; 32]).public_key();
        let text = format!(
            r#"
            listen = "127.0.0.1:9000"
            metrics = "127.0.0.1:9400"
            cache-entries = 10
            connect-timeout = "250ms"
            [routes]
            cart = ["127.0.0.1:7001", "127.0.0.1:7002"]
            [trust]
            cart = ["{key}"]
            "#
        );
        let mut config = RelayConfig::default();
        ConfigFile::parse(&text)
            .unwrap()
            .apply(&mut config)
            .unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(config.metrics, Some("127.0.0.1:9400".parse().unwrap()));
        assert_eq!(config.cache.max_entries.get(), 10);
        assert_eq!(
            config.cache.max_bytes,
            RelayConfig::default().cache.max_bytes
        );
        assert_eq!(config.upstream.connect_timeout, Duration::from_millis(250));
        assert_eq!(
            config.routes[0].to_string(),
            "cart=127.0.0.1:7001,127.0.0.1:7002"
        );
        assert_eq!(config.trust[0].key, key);
    }

    #[test]
    fn mesh_settings_are_read_and_the_secret_comes_from_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("mesh.secret");
        std::fs::write(&secret, format!("{}\n", "ab".repeat(32))).unwrap();
        let text = format!(
            "mesh-listen = \"127.0.0.1:7500\"\npeers = [\"127.0.0.1:7501\", \"127.0.0.1:7502\"]\n\
             mesh-secret-file = {:?}\nreplicas = 2\nfast = true\npeer-timeout = \"250ms\"\n",
            secret.display().to_string()
        );
        let mut config = RelayConfig::default();
        ConfigFile::parse(&text)
            .unwrap()
            .apply(&mut config)
            .unwrap();
        let mesh = &config.mesh;
        assert_eq!(mesh.listen, Some("127.0.0.1:7500".parse().unwrap()));
        assert_eq!(mesh.peers.len(), 2);
        assert_eq!(mesh.secret, Some(crate::MeshSecret::from_bytes([0xab; 32])));
        assert_eq!((mesh.replicas.get(), mesh.fast), (2, true));
        assert_eq!(mesh.peer_timeout, Duration::from_millis(250));
        std::fs::write(&secret, "short").unwrap();
        let mut config = RelayConfig::default();
        let file = ConfigFile::parse(&text).unwrap();
        assert!(matches!(
            file.apply(&mut config),
            Err(ConfigError::MeshSecret)
        ));
    }

    #[test]
    fn unknown_or_malformed_settings_are_errors() {
        assert!(ConfigFile::parse("cache-entrys = 10").is_err());
        assert!(ConfigFile::parse("cache-entries = 0").is_err());
        let mut config = RelayConfig::default();
        let file = ConfigFile::parse("connect-timeout = \"soon\"").unwrap();
        assert!(matches!(
            file.apply(&mut config),
            Err(ConfigError::Duration {
                field: "connect-timeout",
                ..
            })
        ));
        let file = ConfigFile::parse("[routes]\ncart = []").unwrap();
        assert!(matches!(
            file.apply(&mut config),
            Err(ConfigError::EmptyRoute(_))
        ));
    }
}
