//! Shared fixtures: cart servers and relays on 127.0.0.1, thin cart clients, and bounded
//! waits.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use examples::cart::{self, CartClient, CartRequest, CartResponse};
use scone::{ClientId, SigningKey};
use scone_router::{Relay, RelayConfig, Route, TrustEntry};
use scone_rpc::SconeClient;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Every await that could hang gets this long.
pub const LIMIT: Duration = Duration::from_secs(10);

/// Awaits `future`, failing the test if it takes longer than [`LIMIT`].
pub async fn bounded<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(LIMIT, future)
        .await
        .expect("operation finished within the test's time limit")
}

/// Waits until `condition` holds, checking every few milliseconds, failing the test
/// after [`LIMIT`].
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A task serving on a loopback port, stopped by [`Running::stop`].
pub struct Running {
    pub addr: SocketAddr,
    stop_tx: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Shuts it down and waits until it has stopped.
    pub async fn stop(mut self) {
        if let Some(stop_tx) = self.stop_tx.take() {
            let _ = stop_tx.send(());
        }
        bounded(&mut self.task)
            .await
            .expect("task did not panic")
            .expect("served without error");
    }
}

/// A cart server named `name`, signing with `key`, on `listener`.
pub fn cart_on(listener: TcpListener, key: &SigningKey, name: &'static str) -> Running {
    let addr = listener.local_addr().expect("local addr");
    let (stop_tx, stop_rx) = oneshot::channel();
    let task = tokio::spawn(cart::serve(listener, key.clone(), name, stop_rx));
    Running {
        addr,
        stop_tx: Some(stop_tx),
        task,
    }
}

/// A cart server on a fresh loopback port.
pub async fn cart_server(key: &SigningKey, name: &'static str) -> Running {
    cart_on(loopback().await, key, name)
}

/// A listener on a fresh loopback port.
pub async fn loopback() -> TcpListener {
    TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback")
}

/// A relay settings with `cart` routed to `upstreams` and `trusted` trusted for it.
pub fn relay_config(upstreams: &[SocketAddr], trusted: &SigningKey) -> RelayConfig {
    let mut config = RelayConfig::default();
    config.set_routes([Route {
        service: cart::service_id().unwrap(),
        upstreams: upstreams.to_vec(),
    }]);
    config.set_trust([TrustEntry {
        service: cart::service_id().unwrap(),
        key: trusted.public_key(),
    }]);
    config
}

/// A relay serving on a fresh loopback port, and a handle to it (for its counters and
/// store).
pub async fn start_relay(config: &RelayConfig) -> (Running, Relay) {
    let relay = Relay::new(config).expect("relay");
    let listener = loopback().await;
    let addr = listener.local_addr().expect("local addr");
    let (stop_tx, stop_rx) = oneshot::channel();
    let task = tokio::spawn(relay.clone().run(listener, stop_rx));
    let running = Running {
        addr,
        stop_tx: Some(stop_tx),
        task,
    };
    (running, relay)
}

/// A cart client through `relay` that keeps no SCONE and sends `client` as its ID.
pub type ThinCart = CartClient<SconeClient<CartRequest, CartResponse>>;

/// A thin cart client through `relay`, with client ID `client`.
pub async fn thin_cart(relay: SocketAddr, client: ClientId) -> ThinCart {
    let channel = bounded(scone_rpc::client::connect(relay))
        .await
        .expect("connect");
    let stub = SconeClient::thin(channel, cart::service_id().unwrap())
        .expect("thin client")
        .with_client_id(client);
    CartClient::from(stub)
}

/// The items of a view, as (name, quantity).
pub fn items(view: &cart::CartView) -> Vec<(&str, u32)> {
    view.items.iter().map(|(k, v)| (k.as_str(), *v)).collect()
}

/// Adds `quantity` of `item` through `client`, panicking on any error.
pub async fn add(client: &ThinCart, item: &str, quantity: u32) -> cart::CartView {
    bounded(client.add(tarpc::context::current(), item.into(), quantity))
        .await
        .expect("call went through")
        .expect("cart accepted it")
}

/// The cart of `client`, panicking on any error.
pub async fn view(client: &ThinCart) -> cart::CartView {
    bounded(client.view(tarpc::context::current()))
        .await
        .expect("call went through")
        .expect("cart answered")
}

/// A fixed client ID (tests use distinct bytes for distinct clients).
pub fn client_id(byte: u8) -> ClientId {
    ClientId::from_bytes([byte; 16])
}
