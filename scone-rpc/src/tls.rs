//! TLS for SCONE connections: rustls through tokio-rustls, re-exported so that a service
//! builds its configs against the same versions.
//!
//! A server passes a [`TlsAcceptor`] to [`server::run_tls`](crate::server::run_tls); a
//! client passes a [`TlsConnector`] and the name in the server's certificate to
//! [`client::connect_tls`](crate::client::connect_tls), or wraps a stream of its own and
//! hands it to [`client::over`](crate::client::over). rustls is built with its `ring`
//! crypto provider ([`rustls::crypto::ring`]). The SCONEs are signed either way; TLS
//! keeps them and the bodies private on the wire, and tells the client whom it talks to.
//!
//! ```
//! use std::sync::Arc;
//!
//! use scone::{ServiceId, SigningKey};
//! use scone_rpc::tls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
//! use scone_rpc::tls::{rustls, TlsAcceptor, TlsConnector};
//! use scone_rpc::{SconeClient, SconeLayer, SconeStore};
//! use tarpc::server::Serve;
//! # use scone_rpc::state::SconeState;
//! # use serde::{Deserialize, Serialize};
//! # #[derive(SconeState, Serialize, Deserialize, Default)]
//! # #[scone(service = "counter")]
//! # struct Count { hits: u64 }
//! # #[tarpc::service]
//! # trait Counter { async fn hit() -> u64; }
//! # #[derive(Clone)]
//! # struct CounterServer;
//! # impl Counter for CounterServer {
//! #     async fn hit(self, _: tarpc::context::Context) -> u64 {
//! #         let Ok(mut count) = Count::load() else { return 0 };
//! #         *count.hits_mut() += 1;
//! #         let hits = count.hits;
//! #         let _ = count.save();
//! #         hits
//! #     }
//! # }
//!
//! # #[tokio::main] async fn main() -> anyhow::Result<()> {
//! // A certificate for "localhost", made here; a real server loads its own (see below).
//! let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
//! let certificate = made.cert.der().clone();
//! let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.key_pair.serialize_der()));
//! let provider = Arc::new(rustls::crypto::ring::default_provider());
//!
//! // The server: its certificate and key.
//! let server_tls = rustls::ServerConfig::builder_with_provider(provider.clone())
//!     .with_safe_default_protocol_versions()?
//!     .with_no_client_auth()
//!     .with_single_cert(vec![certificate.clone()], key)?;
//! let acceptor = TlsAcceptor::from(Arc::new(server_tls));
//! let service = ServiceId::new("counter")?;
//! let layer = SconeLayer::new(service.clone(), SigningKey::generate()?)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! let serve = layer.wrap(CounterServer.serve());
//! let config = Default::default();
//! let shutdown = std::future::pending::<()>();
//! tokio::spawn(scone_rpc::server::run_tls(listener, acceptor, serve, config, shutdown));
//!
//! // The client: the certificates it trusts, and the server's name.
//! let mut roots = rustls::RootCertStore::empty();
//! roots.add(certificate)?;
//! let client_tls = rustls::ClientConfig::builder_with_provider(provider)
//!     .with_safe_default_protocol_versions()?
//!     .with_root_certificates(roots)
//!     .with_no_client_auth();
//! let connector = TlsConnector::from(Arc::new(client_tls));
//! let name = ServerName::try_from("localhost")?;
//! let channel = scone_rpc::client::connect_tls(addr, name, &connector).await?;
//! let client = CounterClient::from(SconeClient::caching(channel, service, SconeStore::default())?);
//! assert_eq!(client.hit(tarpc::context::current()).await?, 1);
//! assert_eq!(client.hit(tarpc::context::current()).await?, 2);
//! # Ok(()) }
//! ```
//!
//! A server's certificate chain and key, from PEM files:
//!
//! ```no_run
//! use scone_rpc::tls::rustls::pki_types::pem::PemObject;
//! use scone_rpc::tls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
//!
//! # fn main() -> anyhow::Result<()> {
//! let chain = CertificateDer::pem_file_iter("server.crt")?.collect::<Result<Vec<_>, _>>()?;
//! let key = PrivateKeyDer::from_pem_file("server.key")?;
//! # let _ = (chain, key);
//! # Ok(()) }
//! ```

pub use tokio_rustls::{rustls, TlsAcceptor, TlsConnector};
