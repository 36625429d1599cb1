//! The relay's errors: in its settings, and in building it.

use std::path::PathBuf;

use scone::{InvalidId, KeyError, ServiceId};

/// A setting that does not parse or does not make sense.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A route is not `SERVICE=ADDR[,ADDR...]`.
    #[error("`{0}` is not SERVICE=ADDR[,ADDR...]")]
    RouteSyntax(String),
    /// A trusted key is not `SERVICE=PUBKEY`.
    #[error("`{0}` is not SERVICE=PUBKEY")]
    TrustSyntax(String),
    /// A service name is not a valid service ID.
    #[error("`{name}` is not a valid service name")]
    Service {
        /// The name given.
        name: String,
        /// Why it is not valid.
        #[source]
        source: InvalidId,
    },
    /// An upstream address is neither `IP:PORT` nor a `HOST:PORT` that resolves.
    #[error("`{addr}` is not a socket address (IP:PORT or HOST:PORT)")]
    Address {
        /// The address given.
        addr: String,
        /// Why it did not resolve, if it was looked up.
        #[source]
        source: Option<std::io::Error>,
    },
    /// A route names no upstream.
    #[error("the route for {0} names no upstream")]
    EmptyRoute(ServiceId),
    /// The mesh secret is not 32 bytes in hex or base64.
    #[error("the mesh secret is not 32 bytes in hex or base64")]
    MeshSecret,
    /// Mesh settings were given (peers, a mesh listener) but no mesh secret.
    #[error("the mesh needs a secret (--mesh-secret-file)")]
    MeshWithoutSecret,
    /// A public key does not parse.
    #[error("the key trusted for {service} is not a public key")]
    Key {
        /// The service it was given for.
        service: ServiceId,
        /// Why it does not parse.
        #[source]
        source: KeyError,
    },
    /// A duration does not parse (`500ms`, `2s`, `1m`...).
    #[error("`{value}` is not a duration, for {field}")]
    Duration {
        /// The setting.
        field: &'static str,
        /// The value given.
        value: String,
        /// Why it does not parse.
        #[source]
        source: humantime::DurationError,
    },
    /// The config file could not be read.
    #[error("could not read the config file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML, or has an unknown or mistyped setting.
    #[error("the config file {} is not valid", path.display())]
    Toml {
        /// The file.
        path: PathBuf,
        /// Where and why.
        #[source]
        source: toml::de::Error,
    },
}

/// Why a relay could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RelayError {
    /// Its settings are not valid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Two different trusted keys share a key ID.
    #[error("could not trust the key given for {service}")]
    Trust {
        /// The service the key was given for.
        service: ServiceId,
        /// The collision.
        #[source]
        source: KeyError,
    },
    /// A relay connects to upstreams and verifies replies on a tokio runtime: the one it
    /// is built in.
    #[error("a relay must be built inside a tokio runtime")]
    NoRuntime(#[source] tokio::runtime::TryCurrentError),
}
