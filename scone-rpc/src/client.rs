//! The client side: a tarpc `Stub` that attaches SCONEs to requests and keeps the ones
//! that come back.
//!
//! Generated tarpc clients take any stub, so a SCONE client is
//! `CartClient::from(SconeClient::caching_for::<CartState>(channel, store)?)` (or
//! `SconeClient::caching(channel, service, store)` with the service ID spelled out).
//! Three ways to hold state:
//!
//! - [`caching`](SconeClient::caching): the client keeps SCONEs in a [`SconeStore`] (a
//!   [`SconeCache`] by service ID) and attaches them to its calls.
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
    BundleLimits, CacheLimits, PutOutcome, Scone, SconeCache, ServiceId, Verifier,
    DEFAULT_MAX_SCONE_BYTES,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tarpc::client::stub::Stub;
use tarpc::client::{Channel, RpcError};
use tarpc::{RequestName, ServerError};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use crate::codec::{self, DEFAULT_MAX_FRAME_BYTES};
use crate::envelope::{
    ClientId, Outcome, Refusal, RefusalKind, RequestEnvelope, ResponseEnvelope, WireScones,
    ENVELOPE_VERSION,
};
use crate::error::{ClientError, REFUSAL_PREFIX};
use crate::state::SconeState;

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
    let stream = tcp(addr).await?;
    Ok(over(stream, config, max_frame_bytes))
}

/// Connects to a SCONE server over TLS ([`server::run_tls`](crate::server::run_tls)):
/// TCP to `addr`, then a TLS handshake that checks the server's certificate is valid for
/// `server_name` under `connector`'s trusted roots (see [`tls`](crate::tls) for an
/// example). An error if the handshake fails, as against a plain-TCP server. The handshake
/// has no timeout of its own: wrap the call in `tokio::time::timeout` to bound it.
pub async fn connect_tls(
    addr: SocketAddr,
    server_name: ServerName<'static>,
    connector: &TlsConnector,
) -> std::io::Result<SconeChannel> {
    let stream = tcp(addr).await?;
    let stream = connector.connect(server_name, stream).await?;
    Ok(over(
        stream,
        tarpc::client::Config::default(),
        DEFAULT_MAX_FRAME_BYTES,
    ))
}

/// Starts a connection over a stream already open, of any kind: TCP or TLS with settings
/// of your own, a Unix socket, or an in-memory `tokio::io::duplex` in tests. Spawns the
/// connection's dispatch task, so call it within a tokio runtime.
pub fn over<Io>(io: Io, config: tarpc::client::Config, max_frame_bytes: usize) -> SconeChannel
where
    Io: AsyncRead + AsyncWrite + Send + 'static,
{
    let transport = codec::Transport::new(io, max_frame_bytes);
    tarpc::client::new(config, transport).spawn()
}

/// A TCP connection to `addr` for small request/reply messages: sent at once, not held
/// back to coalesce (`TCP_NODELAY`, best effort).
async fn tcp(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Where an application keeps the SCONEs entrusted to it; share one among all clients.
///
/// SCONEs are kept by the service called *and* the service they belong to. A SCONE that
/// came back from calling `cart` for `cart` itself is the cart's own; one for `ledger`
/// that came back through `wallet` (a back-end's, entrusted to us through the front-end)
/// is kept under (`wallet`, `ledger`) and is only ever sent back to `wallet`. So a service
/// can neither overwrite the SCONEs we hold for other services nor collect them, and a
/// multi-tier session survives new connections and restarts of every server.
///
/// # Recovering from bad SCONEs
/// A store cannot be locked out for good by what it is sent:
/// - Given the services' public keys ([`verifying`](Self::verifying)), it keeps only
///   SCONEs that verify: a forged one (say, version `u64::MAX`, which would make every
///   genuine SCONE of the session look stale) is refused with [`ClientError::Untrusted`]
///   and never stored.
/// - Without keys it cannot tell, so it recovers instead: when the called service refuses
///   the SCONE a client sent (forged, signed with a key the server no longer has,
///   expired, stale), the client drops that SCONE, and the next call starts a new session.
/// - An expired SCONE is still sent, so the server answers with the typed `expired`
///   refusal instead of the client silently starting over with empty state.
/// - [`remove`](Self::remove) and [`clear`](Self::clear) drop SCONEs by hand.
#[derive(Clone, Debug)]
pub struct SconeStore {
    /// The SCONEs, by (service called, service they belong to).
    cache: SconeCache<StoreKey>,
    /// Which back-ends' SCONEs go with a call to each service.
    companions: Companions,
    /// When set, only SCONEs that verify are kept.
    verifier: Option<Arc<Verifier>>,
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

    /// Remembers that `called` passes `companion`'s SCONEs; at most
    /// [`MAX_COMPANIONS`] per service, so that no front-end can grow the list past what
    /// a request may carry and lock its callers out. Returns whether it was kept.
    fn learn(&self, called: &ServiceId, companion: &ServiceId) -> bool {
        let mut companions = self.lock();
        let known = companions.entry(called.clone()).or_default();
        if known.contains(companion) {
            return true;
        }
        if known.len() >= MAX_COMPANIONS {
            return false;
        }
        known.push(companion.clone());
        true
    }

    fn forget(&self, called: &ServiceId) {
        self.lock().remove(called);
    }

    fn clear(&self) {
        self.lock().clear();
    }
}

/// Most back-ends whose SCONEs go with a call to one service: what fits in a request's
/// bundle beside the service's own.
pub const MAX_COMPANIONS: usize = 15;

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
            verifier: None,
        }
    }

    /// Keeps only SCONEs that `verifier` accepts; give it the public keys of every
    /// service whose SCONEs this store will hold, back-ends included (a SCONE of a
    /// service it has no key for is refused).
    pub fn verifying(mut self, verifier: Verifier) -> Self {
        self.verifier = Some(Arc::new(verifier));
        self
    }

    /// Drops the SCONE of `service` (and what came back through it for its back-ends).
    pub fn remove(&self, service: &ServiceId) {
        for companion in self.companions.of(service) {
            self.cache.remove(&(service.clone(), companion));
        }
        self.companions.forget(service);
        self.cache.remove(&(service.clone(), service.clone()));
    }

    /// Drops every SCONE.
    pub fn clear(&self) {
        self.cache.clear();
        self.companions.clear();
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

    /// Keeps `scone`, a back-end's, as one to send with calls to `via` (for example, one
    /// restored from a file); `None` if `via` already has [`MAX_COMPANIONS`] back-ends.
    pub fn put_via(&self, via: &ServiceId, scone: Scone) -> Option<PutOutcome> {
        if scone.service() != via && !self.companions.learn(via, scone.service()) {
            return None;
        }
        Some(
            self.cache
                .put((via.clone(), scone.service().clone()), scone),
        )
    }

    /// Checks expiry against `clock` instead of the system clock (tests move time).
    pub fn with_clock(mut self, clock: Arc<dyn scone::Clock>) -> Self {
        self.cache = self.cache.with_clock(clock);
        self
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

    /// Keeps a SCONE that came back from calling `called`, if it verifies (when this
    /// store verifies).
    fn keep(&self, called: &ServiceId, scone: Scone) -> Result<(), ClientError> {
        if let Some(verifier) = &self.verifier {
            verifier
                .verify(&scone)
                .map_err(|source| ClientError::Untrusted {
                    service: scone.service().clone(),
                    source,
                })?;
        }
        self.cache
            .put((called.clone(), scone.service().clone()), scone);
        Ok(())
    }

    /// What to attach for `service` when calling `via`: expired SCONEs included, so the
    /// server says so rather than the session silently starting over.
    fn attachable(&self, via: &ServiceId, service: &ServiceId) -> Option<Scone> {
        self.cache
            .get_including_expired(&(via.clone(), service.clone()))
    }

    /// Drops the SCONE of `called` that was sent (the server refused it), unless a newer
    /// one has come back meanwhile.
    fn evict_refused(&self, called: &ServiceId, sent: &Sent) {
        self.cache
            .remove_if(&(called.clone(), called.clone()), |held| {
                held.endpoint() == sent.endpoint
                    && held.object() == sent.object
                    && held.version() == sent.version
            });
    }
}

/// Which of the called service's own SCONEs a request carried.
#[derive(Clone, Copy, Debug)]
struct Sent {
    endpoint: scone::EndpointId,
    object: scone::ObjectId,
    version: u64,
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

    /// A caching client for the service that state type `T` belongs to (its
    /// `#[scone(service = "...")]`): the name is written once, in the state type.
    pub fn caching_for<T: SconeState>(inner: S, store: SconeStore) -> Result<Self, ClientError> {
        Self::caching(inner, service_of::<T>()?, store)
    }

    /// A thin client for the service that state type `T` belongs to.
    pub fn thin_for<T: SconeState>(inner: S) -> Result<Self, ClientError> {
        Self::thin(inner, service_of::<T>()?)
    }

    /// An entrusting client for the service that state type `T` belongs to.
    pub fn entrusting_for<T: SconeState>(inner: S) -> Result<Self, ClientError> {
        Self::entrusting(inner, service_of::<T>()?)
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

    /// The SCONEs to attach: the callee's and its back-ends', in their wire form, within
    /// the bundle limits; and which of the callee's own SCONEs went.
    fn attachments(&self) -> Result<(WireScones, Option<Sent>), ClientError> {
        let lookup = |service: &ServiceId| -> Result<Option<Scone>, ClientError> {
            match &self.holding {
                Holding::Store(store) => Ok(store.attachable(&self.service, service)),
                Holding::Thin => Ok(None),
                Holding::Entrusted => Ok(context::carried(service)?),
            }
        };
        let mut scones = WireScones::new();
        if matches!(self.holding, Holding::Thin) {
            return Ok((scones, None));
        }
        let limits = BundleLimits::default();
        // Distinct services: companions are only ever other services than the callee.
        let own = lookup(&self.service)?;
        let sent = own.as_ref().map(|own| Sent {
            endpoint: own.endpoint(),
            object: own.object(),
            version: own.version(),
        });
        let mut bytes = 0;
        for scone in own.into_iter().chain(
            self.companions
                .of(&self.service)
                .iter()
                .filter_map(|c| lookup(c).transpose())
                .collect::<Result<Vec<_>, _>>()?,
        ) {
            // What does not fit stays behind (and its tier starts over) rather than
            // failing every call: no reply can lock the client out this way.
            if scones.len() == limits.max_scones || bytes + scone.encoded_len() > limits.max_bytes {
                tracing::warn!(service = %scone.service(), called = %self.service, "a back-end's scone does not fit in the request; not sent");
                continue;
            }
            bytes += scone.encoded_len();
            scones.push(scone.into_encoded());
        }
        Ok((scones, sent))
    }

    /// Keeps the SCONEs that came back.
    fn keep(&self, scones: WireScones) -> Result<(), ClientError> {
        let scones = scones
            .decode(BundleLimits::default(), DEFAULT_MAX_SCONE_BYTES)
            .map_err(ClientError::Reply)?;
        for scone in scones {
            if scone.service() != &self.service
                && !self.companions.learn(&self.service, scone.service())
            {
                tracing::warn!(service = %scone.service(), called = %self.service, "too many back-ends behind one service; scone dropped");
                continue;
            }
            match &self.holding {
                Holding::Store(store) => store.keep(&self.service, scone)?,
                Holding::Thin => {}
                Holding::Entrusted => context::forward(scone)?,
            }
        }
        Ok(())
    }
}

fn service_of<T: SconeState>() -> Result<ServiceId, ClientError> {
    ServiceId::new(T::SERVICE).map_err(ClientError::InvalidService)
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
    let detail = format!("{REFUSAL_PREFIX}{}] {refusal}", refusal.kind.code());
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
            let (envelope, sent) = envelope?;
            let reply = self.inner.call(ctx, envelope).await?;
            if reply.version != ENVELOPE_VERSION {
                return Err(send_error(ClientError::UnsupportedEnvelope(reply.version)));
            }
            self.keep(reply.scones).map_err(send_error)?;
            if let (Outcome::Refused(refusal), Some(sent), Holding::Store(store)) =
                (&reply.outcome, &sent, &self.holding)
            {
                if matches!(refusal.kind, RefusalKind::Scone(_))
                    && refusal.service.as_ref() == Some(&self.service)
                {
                    store.evict_refused(&self.service, sent);
                }
            }
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
    /// The envelope for `request`, with the SCONEs to attach, and which of the
    /// callee's own SCONEs it carries.
    fn envelope(&self, request: &Req) -> Result<(RequestEnvelope, Option<Sent>), RpcError> {
        let body =
            codec::to_exact_bytes(request).map_err(|e| send_error(ClientError::Encode(e)))?;
        let (scones, sent) = self.attachments().map_err(send_error)?;
        let envelope = RequestEnvelope {
            version: ENVELOPE_VERSION,
            client: self.client_id,
            service: self.service.clone(),
            scones,
            token: None,
            body,
        };
        Ok((envelope, sent))
    }
}
