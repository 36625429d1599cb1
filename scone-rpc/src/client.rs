//! The client side: a tarpc `Stub` that attaches SCONEs to requests and keeps the ones
//! that come back.
//!
//! Generated tarpc clients take any stub, so a SCONE client is
//! `CartClient::from(SconeClient::caching(channel, service))`. Three ways to hold state:
//!
//! - [`caching`](SconeClient::caching): the client keeps SCONEs in a [`SconeStore`] (a
//!   [`SconeCache`] by service ID) and attaches them to its calls (seed 002, fig. 4-6).
//! - [`thin`](SconeClient::thin): the client keeps nothing and sends only its client ID,
//!   for use behind a relay that holds its SCONEs; without one, every call is a new session.
//! - [`entrusting`](SconeClient::entrusting): for a front-end calling a back-end from
//!   inside a handler: the back-end's SCONE comes from the front-end's own caller and
//!   goes back to it in the reply, so the front-end keeps nothing either.

use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use scone::context;
use scone::{
    BundleLimits, CacheLimits, PutOutcome, Scone, SconeCache, ServiceId, DEFAULT_MAX_SCONE_BYTES,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tarpc::client::stub::Stub;
use tarpc::client::{Channel, RpcError};
use tarpc::{RequestName, ServerError};
use tokio::net::TcpStream;

use crate::codec::{self, DEFAULT_MAX_FRAME_BYTES};
use crate::envelope::{
    ClientId, Outcome, Refusal, RefusalKind, RequestEnvelope, ResponseEnvelope, WireScones,
    ENVELOPE_VERSION,
};
use crate::error::{ClientError, REFUSAL_PREFIX};

/// A connection to a SCONE server: what [`SconeClient`] wraps.
pub type SconeChannel = Channel<RequestEnvelope, ResponseEnvelope>;

/// Connects to a SCONE server over TCP and starts the connection's dispatch task.
pub async fn connect(addr: SocketAddr) -> std::io::Result<SconeChannel> {
    connect_with(
        addr,
        tarpc::client::Config::default(),
        DEFAULT_MAX_FRAME_BYTES,
    )
    .await
}

/// Connects with tarpc settings and a frame-size limit of your choosing.
pub async fn connect_with(
    addr: SocketAddr,
    config: tarpc::client::Config,
    max_frame_bytes: usize,
) -> std::io::Result<SconeChannel> {
    let stream = TcpStream::connect(addr).await?;
    let transport = codec::client_transport(stream, max_frame_bytes);
    Ok(tarpc::client::new(config, transport).spawn())
}

/// Where an application keeps the SCONEs entrusted to it; share one among all clients.
///
/// SCONEs are kept by the service called *and* the service they belong to. A SCONE that
/// came back from calling `cart` for `cart` itself is the cart's own; one for `ledger`
/// that came back through `wallet` (a back-end's, entrusted to us through the front-end)
/// is kept under (`wallet`, `ledger`) and is only ever sent back to `wallet`. So a service
/// can neither overwrite the SCONEs we hold for other services nor collect them, and a
/// multi-tier session survives new connections and restarts of every server.
#[derive(Clone, Debug)]
pub struct SconeStore {
    /// The SCONEs, by (service called, service they belong to).
    cache: SconeCache<StoreKey>,
    /// Which back-ends' SCONEs go with a call to each service.
    companions: Companions,
}

/// Service called -> the back-ends whose SCONEs its replies carried; shared by clones.
#[derive(Clone, Debug, Default)]
struct Companions(Arc<Mutex<HashMap<ServiceId, Vec<ServiceId>>>>);

impl Companions {
    fn lock(&self) -> MutexGuard<'_, HashMap<ServiceId, Vec<ServiceId>>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn of(&self, called: &ServiceId) -> Vec<ServiceId> {
        self.lock().get(called).cloned().unwrap_or_default()
    }

    fn learn(&self, called: &ServiceId, companion: &ServiceId) {
        let mut companions = self.lock();
        let known = companions.entry(called.clone()).or_default();
        if !known.contains(companion) {
            known.push(companion.clone());
        }
    }
}

/// (service called, service the SCONE belongs to).
type StoreKey = (ServiceId, ServiceId);

impl Default for SconeStore {
    fn default() -> Self {
        Self::with_limits(CacheLimits::default())
    }
}

impl SconeStore {
    /// An empty store bounded by `limits`.
    pub fn with_limits(limits: CacheLimits) -> Self {
        Self {
            cache: SconeCache::new(limits),
            companions: Companions::default(),
        }
    }

    /// The SCONE of `service`, as it came back from calling `service` itself.
    pub fn get(&self, service: &ServiceId) -> Option<Scone> {
        self.cache.get(&(service.clone(), service.clone()))
    }

    /// The SCONE of back-end `service` that came back through `via`.
    pub fn get_via(&self, via: &ServiceId, service: &ServiceId) -> Option<Scone> {
        self.cache.get(&(via.clone(), service.clone()))
    }

    /// Keeps `scone` as its own service's (for example, one restored from a file).
    pub fn put(&self, scone: Scone) -> PutOutcome {
        let service = scone.service().clone();
        self.cache.put((service.clone(), service), scone)
    }

    /// How many SCONEs it holds.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// The back-ends whose SCONEs go with a call to `service`.
    pub fn companions_of(&self, service: &ServiceId) -> Vec<ServiceId> {
        self.companions.of(service)
    }

    /// Keeps a SCONE that came back from calling `called`.
    fn keep(&self, called: &ServiceId, scone: Scone) {
        self.cache
            .put((called.clone(), scone.service().clone()), scone);
    }
}

/// Where a client's SCONEs live between calls.
#[derive(Clone, Debug)]
enum Holding {
    /// In the application's store.
    Store(SconeStore),
    /// Nowhere (a relay may hold them).
    Thin,
    /// In the caller's request context: this client runs inside a front-end's handler.
    Entrusted,
}

/// A tarpc stub that carries SCONEs; `Req` and `Resp` are the service's generated
/// request and response enums (`CartRequest`, `CartResponse`).
pub struct SconeClient<Req, Resp, S = SconeChannel> {
    /// The connection.
    inner: S,
    /// The service called.
    service: ServiceId,
    /// Who calls, for relays.
    client_id: ClientId,
    /// Where SCONEs live between calls.
    holding: Holding,
    /// Back-ends of the callee seen in its replies: the store's for caching clients (so
    /// they outlive the client), the client's own otherwise.
    companions: Companions,
    _types: PhantomData<fn(Req) -> Resp>,
}

impl<Req, Resp, S> std::fmt::Debug for SconeClient<Req, Resp, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SconeClient")
            .field("service", &self.service)
            .field("client_id", &self.client_id)
            .field("holding", &self.holding)
            .finish_non_exhaustive()
    }
}

impl<Req, Resp, S: Clone> Clone for SconeClient<Req, Resp, S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            service: self.service.clone(),
            client_id: self.client_id,
            holding: self.holding.clone(),
            companions: self.companions.clone(),
            _types: PhantomData,
        }
    }
}

impl<Req, Resp, S> SconeClient<Req, Resp, S> {
    fn new(inner: S, service: ServiceId, holding: Holding) -> Result<Self, ClientError> {
        let companions = match &holding {
            Holding::Store(store) => store.companions.clone(),
            Holding::Thin | Holding::Entrusted => Companions::default(),
        };
        Ok(Self {
            inner,
            service,
            client_id: ClientId::random().map_err(ClientError::Random)?,
            holding,
            companions,
            _types: PhantomData,
        })
    }

    /// A client that keeps its SCONEs in `store` (share one store between the clients of
    /// one application: it is keyed by service).
    pub fn caching(inner: S, service: ServiceId, store: SconeStore) -> Result<Self, ClientError> {
        Self::new(inner, service, Holding::Store(store))
    }

    /// A client that keeps no SCONEs.
    pub fn thin(inner: S, service: ServiceId) -> Result<Self, ClientError> {
        Self::new(inner, service, Holding::Thin)
    }

    /// A client for use inside a handler, passing the callee's SCONEs to and from the
    /// handler's own caller.
    pub fn entrusting(inner: S, service: ServiceId) -> Result<Self, ClientError> {
        Self::new(inner, service, Holding::Entrusted)
    }

    /// Uses `client_id` instead of a random one.
    pub fn with_client_id(mut self, client_id: ClientId) -> Self {
        self.client_id = client_id;
        self
    }

    /// The client ID it sends.
    pub fn client_id(&self) -> ClientId {
        self.client_id
    }

    /// The service it calls.
    pub fn service(&self) -> &ServiceId {
        &self.service
    }

    /// The SCONEs to attach: the callee's and its back-ends', in their wire form.
    fn attachments(&self) -> Result<WireScones, ClientError> {
        let lookup = |service: &ServiceId| -> Result<Option<Scone>, ClientError> {
            match &self.holding {
                Holding::Store(store) => Ok(store.get_via(&self.service, service)),
                Holding::Thin => Ok(None),
                Holding::Entrusted => Ok(context::carried(service)?),
            }
        };
        let mut scones = WireScones::new();
        if matches!(self.holding, Holding::Thin) {
            return Ok(scones);
        }
        // Distinct services: companions are only ever other services than the callee.
        if let Some(own) = lookup(&self.service)? {
            scones.push(own.into_encoded());
        }
        for companion in self.companions.of(&self.service) {
            if let Some(scone) = lookup(&companion)? {
                scones.push(scone.into_encoded());
            }
        }
        scones.check_limits(BundleLimits::default())?;
        Ok(scones)
    }

    /// Keeps the SCONEs that came back.
    fn keep(&self, scones: WireScones) -> Result<(), ClientError> {
        let scones = scones
            .decode(BundleLimits::default(), DEFAULT_MAX_SCONE_BYTES)
            .map_err(ClientError::Reply)?;
        for scone in scones {
            if scone.service() != &self.service {
                self.companions.learn(&self.service, scone.service());
            }
            match &self.holding {
                Holding::Store(store) => store.keep(&self.service, scone),
                Holding::Thin => {}
                Holding::Entrusted => context::forward(scone)?,
            }
        }
        Ok(())
    }
}

fn send_error(error: ClientError) -> RpcError {
    RpcError::Send(Box::new(error))
}

/// A refusal as the error tarpc's generated clients return; see [`crate::refusal`].
fn refused(refusal: Refusal) -> RpcError {
    let kind = match refusal.kind {
        RefusalKind::Scone(_) | RefusalKind::WrongService => std::io::ErrorKind::PermissionDenied,
        _ => std::io::ErrorKind::InvalidData,
    };
    let detail = match postcard::to_stdvec(&refusal.kind) {
        Ok(code) => format!("{REFUSAL_PREFIX}{}] {refusal}", crate::error::hex(&code)),
        Err(_) => refusal.to_string(),
    };
    RpcError::Server(ServerError::new(kind, detail))
}

impl<Req, Resp, S> Stub for SconeClient<Req, Resp, S>
where
    Req: Serialize + RequestName,
    Resp: DeserializeOwned,
    S: Stub<Req = RequestEnvelope, Resp = ResponseEnvelope>,
{
    type Req = Req;
    type Resp = Resp;

    // The envelope is built before any future exists, and the waiting part is boxed:
    // callers move this future around (into generated clients, into their own tasks),
    // and a pointer moves cheaper than a state machine holding an envelope.
    #[allow(refining_impl_trait)]
    fn call(
        &self,
        ctx: tarpc::context::Context,
        request: Req,
    ) -> Pin<Box<impl Future<Output = Result<Resp, RpcError>> + '_>> {
        let envelope = self.envelope(&request);
        Box::pin(async move {
            let reply = self.inner.call(ctx, envelope?).await?;
            if reply.version != ENVELOPE_VERSION {
                return Err(send_error(ClientError::UnsupportedEnvelope(reply.version)));
            }
            self.keep(reply.scones).map_err(send_error)?;
            match reply.outcome {
                Outcome::Reply(body) => postcard::from_bytes(&body).map_err(|e| {
                    RpcError::Server(ServerError::new(
                        std::io::ErrorKind::InvalidData,
                        format!("reply body does not decode: {e}"),
                    ))
                }),
                Outcome::Refused(refusal) => Err(refused(*refusal)),
            }
        })
    }
}

impl<Req, Resp, S> SconeClient<Req, Resp, S>
where
    Req: Serialize,
{
    /// The envelope for `request`, with the SCONEs to attach.
    fn envelope(&self, request: &Req) -> Result<RequestEnvelope, RpcError> {
        let body =
            codec::to_exact_bytes(request).map_err(|e| send_error(ClientError::Encode(e)))?;
        Ok(RequestEnvelope {
            version: ENVELOPE_VERSION,
            client: self.client_id,
            service: self.service.clone(),
            scones: self.attachments().map_err(send_error)?,
            token: None,
            body,
        })
    }
}
