//! Transports besides plain TCP: a cart served over TLS with a certificate made here, the
//! ways a mismatched client fails (cleanly, never hanging), and the transport over an
//! in-memory duplex.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{bounded, TestServer};
use examples::cart::{self, Cart, CartClient, CartServer, ServeCart};
use futures::StreamExt;
use scone::SigningKey;
use scone_rpc::server::{self, SconeServe, ServerConfig};
use scone_rpc::tls::rustls::pki_types::ServerName;
use scone_rpc::tls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use scone_rpc::tls::{rustls, TlsAcceptor, TlsConnector};
use scone_rpc::{SconeClient, SconeLayer, SconeStore};
use tarpc::context;
use tarpc::server::{BaseChannel, Channel};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// A self-signed certificate for "localhost" and its key.
fn make_certificate() -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let key = PrivatePkcs8KeyDer::from(made.key_pair.serialize_der());
    (made.cert.der().clone(), PrivateKeyDer::Pkcs8(key))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn acceptor(certificate: CertificateDer<'static>, key: PrivateKeyDer<'static>) -> TlsAcceptor {
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certificate], key)
        .unwrap();
    TlsAcceptor::from(Arc::new(config))
}

/// A connector that trusts `root` only.
fn connector(root: CertificateDer<'static>) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").unwrap()
}

/// The cart behind a SCONE layer.
type CartServe = SconeServe<ServeCart<CartServer>>;

fn cart_serve(key: SigningKey) -> CartServe {
    let layer = SconeLayer::new(cart::service_id().unwrap(), key).unwrap();
    layer.wrap(CartServer { name: "tls".into() }.serve())
}

async fn tls_cart_server(acceptor: TlsAcceptor, config: ServerConfig) -> TestServer {
    let serve = cart_serve(SigningKey::generate().unwrap());
    TestServer::start(move |listener, stop| async move {
        server::run_tls(listener, acceptor, serve, config, stop).await?;
        Ok(())
    })
    .await
}

fn cart_client(
    channel: scone_rpc::client::SconeChannel,
) -> CartClient<SconeClient<cart::CartRequest, cart::CartResponse>> {
    let caching = SconeClient::caching(channel, cart::service_id().unwrap(), SconeStore::default());
    CartClient::from(caching.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cart_is_served_over_tls_and_keeps_its_state() {
    let (certificate, key) = make_certificate();
    let server = tls_cart_server(acceptor(certificate.clone(), key), ServerConfig::default()).await;
    let channel = bounded(scone_rpc::client::connect_tls(
        server.addr,
        localhost(),
        &connector(certificate),
    ))
    .await
    .unwrap();
    let client = cart_client(channel);
    for expected in 1..=2 {
        let view = bounded(client.add(context::current(), "apple".into(), 1))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            view.items.get("apple"),
            Some(&expected),
            "the SCONE came back"
        );
        assert_eq!(view.served_by, "tls");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_client_against_a_tls_server_fails_cleanly() {
    let (certificate, key) = make_certificate();
    let server = tls_cart_server(acceptor(certificate, key), ServerConfig::default()).await;
    // TCP connects; the first frame is no TLS handshake, so the server hangs up.
    let channel = bounded(scone_rpc::client::connect(server.addr))
        .await
        .unwrap();
    let client = cart_client(channel);
    let reply = bounded(client.view(context::current())).await;
    assert!(reply.is_err(), "an error, not a reply: {reply:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_client_against_a_plain_server_fails_cleanly() {
    let (certificate, _) = make_certificate();
    let key = SigningKey::generate().unwrap();
    let server = TestServer::start(move |listener, stop| async move {
        cart::serve(listener, key, "plain", stop).await?;
        Ok(())
    })
    .await;
    // The server reads the client's hello as a frame far over its limit, and hangs up.
    let connected = bounded(scone_rpc::client::connect_tls(
        server.addr,
        localhost(),
        &connector(certificate),
    ))
    .await;
    assert!(connected.is_err(), "the handshake fails");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_the_client_does_not_trust_is_refused() {
    let (certificate, key) = make_certificate();
    let (stranger, _) = make_certificate();
    let server = tls_cart_server(acceptor(certificate, key), ServerConfig::default()).await;
    let connected = bounded(scone_rpc::client::connect_tls(
        server.addr,
        localhost(),
        &connector(stranger),
    ))
    .await;
    let error = connected.expect_err("an untrusted certificate fails the handshake");
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData, "{error}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_says_hello_is_dropped_after_the_handshake_timeout() {
    let (certificate, key) = make_certificate();
    let config = ServerConfig {
        tls_handshake_timeout: Duration::from_millis(300),
        ..ServerConfig::default()
    };
    let server = tls_cart_server(acceptor(certificate, key), config).await;
    let mut socket = bounded(TcpStream::connect(server.addr)).await.unwrap();
    let read = bounded(socket.read(&mut [0u8; 16])).await;
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "closed by the server: {read:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transport_runs_over_an_in_memory_duplex() {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let max_frame_bytes = scone_rpc::codec::DEFAULT_MAX_FRAME_BYTES;
    let serve = cart_serve(SigningKey::generate().unwrap());
    let transport = scone_rpc::codec::ServerTransport::<tokio::io::DuplexStream>::new(
        server_io,
        max_frame_bytes,
    );
    tokio::spawn(
        BaseChannel::with_defaults(transport)
            .execute(serve)
            .for_each(|request| async {
                tokio::spawn(request);
            }),
    );
    let channel =
        scone_rpc::client::over(client_io, tarpc::client::Config::default(), max_frame_bytes);
    let client = cart_client(channel);
    let view = bounded(client.add(context::current(), "pear".into(), 3))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.items.get("pear"), Some(&3));
}
