//! A shopping cart built with `#[derive(SconeState)]`: the cart travels in a SCONE, so any
//! server holding the key can serve any request, and servers can restart freely.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use scone::{ServiceId, SigningKey};
use scone_rpc::server::{Placement, ServerConfig};
use scone_rpc::state::SconeState;
use scone_rpc::{SconeClient, SconeLayer, SconeStore};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

/// The cart's per-session state.
#[derive(SconeState, Serialize, Deserialize, Default, Debug, Clone, PartialEq)]
#[scone(service = "cart")]
pub struct CartState {
    /// Item name to quantity.
    pub items: BTreeMap<String, u32>,
    /// How many `add` calls changed the cart: a field that moves on every change.
    pub changes: u64,
}

/// What a call returns: the cart, and which server answered.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct CartView {
    /// Item name to quantity.
    pub items: BTreeMap<String, u32>,
    /// The server that answered (to show that any server can).
    pub served_by: String,
}

/// A refused cart operation.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CartError {
    /// The quantity is out of range.
    #[error("quantity must be 1 to {MAX_QUANTITY}, not {0}")]
    BadQuantity(u32),
    /// Removing an item that is not in the cart.
    #[error("{0} is not in the cart")]
    NotInCart(String),
    /// The state could not be read or written.
    #[error("cart state unavailable: {0}")]
    State(String),
}

/// Largest quantity of one item.
pub const MAX_QUANTITY: u32 = 1000;

/// The cart's RPC interface.
#[tarpc::service]
pub trait Cart {
    /// Adds `quantity` of `item`.
    async fn add(item: String, quantity: u32) -> Result<CartView, CartError>;
    /// Removes `item` entirely.
    async fn remove(item: String) -> Result<CartView, CartError>;
    /// Shows the cart.
    async fn view() -> Result<CartView, CartError>;
    /// Shows the cart one last time and ends the session: the next call starts an empty
    /// cart.
    async fn checkout() -> Result<CartView, CartError>;
}

/// The cart server: its only field is its name, so it holds no client's state.
#[derive(Clone)]
pub struct CartServer {
    /// Shown in replies.
    pub name: Arc<str>,
}

impl From<scone_rpc::StateError> for CartError {
    fn from(error: scone_rpc::StateError) -> Self {
        // The error crosses the wire as text: keep its whole chain.
        let mut text = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            text = format!("{text}: {cause}");
            source = cause.source();
        }
        CartError::State(text)
    }
}

impl CartServer {
    fn render(&self, state: &CartState) -> CartView {
        CartView {
            items: state.items.clone(),
            served_by: self.name.to_string(),
        }
    }
}

impl Cart for CartServer {
    async fn add(
        self,
        _: tarpc::context::Context,
        item: String,
        quantity: u32,
    ) -> Result<CartView, CartError> {
        if quantity == 0 || quantity > MAX_QUANTITY {
            return Err(CartError::BadQuantity(quantity));
        }
        let mut cart = CartState::load()?;
        let count = cart.items_mut().entry(item).or_default();
        *count = count.saturating_add(quantity).min(MAX_QUANTITY);
        *cart.changes_mut() += 1;
        let view = self.render(&cart);
        cart.save()?;
        Ok(view)
    }

    async fn remove(self, _: tarpc::context::Context, item: String) -> Result<CartView, CartError> {
        let mut cart = CartState::load()?;
        if cart.items_mut().remove(&item).is_none() {
            return Err(CartError::NotInCart(item));
        }
        *cart.changes_mut() += 1;
        let view = self.render(&cart);
        cart.save()?;
        Ok(view)
    }

    async fn view(self, _: tarpc::context::Context) -> Result<CartView, CartError> {
        // Reading only: nothing is marked, so nothing is re-signed.
        let cart = CartState::load()?;
        Ok(self.render(&cart))
    }

    async fn checkout(self, _: tarpc::context::Context) -> Result<CartView, CartError> {
        let cart = CartState::load()?;
        let view = self.render(&cart);
        cart.end_session()?;
        Ok(view)
    }
}

/// The service ID, from the state type's `#[scone(service = "cart")]`.
pub fn service_id() -> Result<ServiceId, scone_rpc::StateError> {
    CartState::service_id()
}

/// Serves the cart on `listener` as `name` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    key: SigningKey,
    name: &str,
    shutdown: impl Future,
) -> std::io::Result<()> {
    let layer = SconeLayer::for_state::<CartState>(key)?;
    serve_with(listener, &layer, name, shutdown).await
}

/// Serves the cart with `layer`, whatever its placement ([`Placement`]): the same
/// handler, its sessions held wherever the layer says.
pub async fn serve_with<P: Placement>(
    listener: TcpListener,
    layer: &SconeLayer<P>,
    name: &str,
    shutdown: impl Future,
) -> std::io::Result<()> {
    let serve = layer.wrap(CartServer { name: name.into() }.serve());
    scone_rpc::server::run(listener, serve, ServerConfig::default(), shutdown).await
}

/// A cart client over `addr` that keeps its SCONE in `store`.
pub async fn connect(
    addr: std::net::SocketAddr,
    store: SconeStore,
) -> anyhow::Result<CartClient<SconeClient<CartRequest, CartResponse>>> {
    let channel = scone_rpc::client::connect(addr).await?;
    Ok(CartClient::from(SconeClient::caching_for::<CartState>(
        channel, store,
    )?))
}
