//! The `Serve` wrapper: verify the request's SCONEs, run the handler with its state in
//! the task-local context, and mint SCONEs for the state it changed.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use scone::clock::Clock;
use scone::context::{self, SconeContext};
use scone::sealed::StateSealer;
use scone::{
    BundleError, BundleLimits, Draft, EndpointId, KeyRing, Minter, MinterConfig, PublicKey,
    RejectReason, Scone, SconeBundle, ServiceId, SigningKey, Verifier, VerifierConfig,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tarpc::server::Serve;
use tarpc::ServerError;

use crate::envelope::{
    Outcome, Refusal, RefusalKind, RequestEnvelope, ResponseEnvelope, WireScones, WireSconesError,
    ENVELOPE_VERSION,
};
use crate::server::placement::{ClientHeld, Commit, Placement, PlacementError};
use crate::server::replay::{SessionKey, Watermark, Watermarks};
use crate::server::signer::{GroupSigner, SigningStats};
use crate::state::SconeState;

/// Settings of a [`SconeLayer`].
#[derive(Clone, Debug)]
pub struct LayerConfig {
    /// How long a minted SCONE stays valid; each change re-mints, so this bounds idleness.
    pub ttl: Duration,
    /// How far clients' SCONEs may be past expiry, or early, to allow for clock skew.
    pub clock_skew: Duration,
    /// Largest SCONE accepted or minted.
    pub max_scone_bytes: usize,
    /// Bounds on the SCONEs one request may carry.
    pub bundle_limits: BundleLimits,
    /// Most SCONEs signed under one signature (group commit); 1 signs each alone.
    pub max_signing_group: usize,
    /// Precomputed signing nonces kept ready by a background thread; 0 signs the
    /// RFC 8032 way, computing each nonce on the request path (see `scone::presign`).
    /// The pool is safe across `fork()`, but set 0 where the process or its VM may be
    /// restored from a snapshot or checkpoint: a restored copy would spend the same
    /// nonces again, and two signatures with one nonce reveal the key.
    pub presigned_nonces: usize,
    /// Renews a SCONE that a request reads without changing once it is past half its
    /// lifetime (a new version with the same state and a fresh expiry), so a client that
    /// only reads keeps its session; each session is re-signed at most once per half TTL.
    pub renew: bool,
    /// The opt-in replay guard for client-held state (see [`replay`](super::replay)):
    /// refuses older versions of a session than one already issued. `None` keeps nothing.
    pub replay_guard: Option<Arc<dyn Watermarks>>,
    /// Where time comes from: stamps, expiry checks, renewal. Tests pass a manual clock.
    pub clock: Arc<dyn Clock>,
    /// Seals the state (see `scone::sealed`): holders and relays see the claims, not the
    /// state; only servers holding the signing key open it. Each SCONE says (under its
    /// signature) whether its state is sealed, and every server of a service must set this
    /// alike: a sealing server refuses an unsealed state, one that does not seal refuses a
    /// sealed one (both `Scone(Malformed)`, before the handler runs), and switching a live
    /// service over ends its open sessions.
    pub sealed_state: bool,
}

impl Default for LayerConfig {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(30 * 60),
            clock_skew: VerifierConfig::default().clock_skew,
            max_scone_bytes: scone::DEFAULT_MAX_SCONE_BYTES,
            bundle_limits: BundleLimits::default(),
            max_signing_group: 64,
            presigned_nonces: 256,
            renew: true,
            replay_guard: None,
            clock: Arc::new(scone::SystemClock),
            sealed_state: false,
        }
    }
}

/// What every request of one service shares.
struct Shared<P> {
    /// The service this server is.
    service: ServiceId,
    /// Checks incoming SCONEs: the issuer tag for ours, signatures for older keys.
    verifier: Verifier,
    /// Signs new SCONEs in groups.
    signer: Arc<GroupSigner>,
    /// Seals outgoing states and opens incoming ones, when the service seals its state.
    sealer: Option<StateSealer>,
    /// Settings.
    config: LayerConfig,
    /// Where sessions live between requests.
    placement: P,
}

/// Makes tarpc services stateless: wraps them so their state travels in SCONEs.
///
/// Servers built from the same signing key are interchangeable: any of them can serve
/// any request, since the state comes with it.
///
/// `P` is where sessions live between requests ([`Placement`]): by default the client
/// holds them ([`ClientHeld`]); [`with_placement`](Self::with_placement) plugs in
/// another, with the same handler.
pub struct SconeLayer<P = ClientHeld> {
    shared: Arc<Shared<P>>,
}

impl<P> Clone for SconeLayer<P> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl SconeLayer {
    /// A layer for `service`, signing with `key`, with default settings.
    ///
    /// Fails only if the nonce pool's background thread cannot be started.
    pub fn new(service: ServiceId, key: SigningKey) -> std::io::Result<Self> {
        Self::with_config(service, key, KeyRing::new(), LayerConfig::default())
    }

    /// A layer for the service that state type `S` belongs to (its
    /// `#[scone(service = "...")]`), with default settings: the name is written once.
    ///
    /// ```
    /// # use scone_rpc::{SconeLayer, SconeState, SigningKey};
    /// # #[derive(SconeState, serde::Serialize, serde::Deserialize, Default)]
    /// # #[scone(service = "cart")]
    /// # struct CartState { items: Vec<String> }
    /// let layer = SconeLayer::for_state::<CartState>(SigningKey::generate()?)?;
    /// assert_eq!(layer.service().as_str(), "cart");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn for_state<S: SconeState>(key: SigningKey) -> std::io::Result<Self> {
        let service = S::service_id().map_err(std::io::Error::other)?;
        Self::new(service, key)
    }

    /// A layer that also accepts SCONEs signed by `older_keys` (during a key rotation),
    /// which must be trusted for `service` ([`KeyRing::for_service`]).
    ///
    /// Fails if the nonce pool's thread cannot start, or if `older_keys` holds a different
    /// key with the signing key's key ID.
    pub fn with_config(
        service: ServiceId,
        key: SigningKey,
        older_keys: KeyRing,
        config: LayerConfig,
    ) -> std::io::Result<Self> {
        let verifier = Verifier::new(older_keys)
            .for_service(service.clone())
            .with_config(VerifierConfig {
                clock_skew: config.clock_skew,
                max_scone_bytes: config.max_scone_bytes,
                ..VerifierConfig::default()
            })
            .with_clock(Arc::clone(&config.clock))
            .trusting_own_tags(service.clone(), &key)
            .map_err(std::io::Error::other)?;
        let sealer = config.sealed_state.then(|| StateSealer::new(&key));
        let mut minter = Minter::new(key)
            .with_config(MinterConfig {
                default_ttl: config.ttl,
                max_scone_bytes: config.max_scone_bytes,
                issuer_tag: true,
            })
            .with_clock(Arc::clone(&config.clock));
        if config.presigned_nonces > 0 {
            minter = minter.with_nonce_pool(config.presigned_nonces)?;
        }
        Ok(Self {
            shared: Arc::new(Shared {
                service,
                verifier,
                signer: GroupSigner::new(minter, config.max_signing_group),
                sealer,
                config,
                placement: ClientHeld,
            }),
        })
    }
}

impl<P: Placement> SconeLayer<P> {
    /// This layer with sessions kept by `placement` (for example a cluster's) rather
    /// than by its current placement; settings and keys stay.
    pub fn with_placement<Q: Placement>(self, placement: Q) -> SconeLayer<Q> {
        let shared = &self.shared;
        SconeLayer {
            shared: Arc::new(Shared {
                service: shared.service.clone(),
                verifier: shared.verifier.clone(),
                signer: Arc::clone(&shared.signer),
                sealer: shared.sealer.clone(),
                config: shared.config.clone(),
                placement,
            }),
        }
    }

    /// Where sessions live between requests.
    pub fn placement(&self) -> &P {
        &self.shared.placement
    }

    /// The service's public key, for clients and relays that want to verify.
    pub fn public_key(&self) -> PublicKey {
        self.shared.signer_public_key()
    }

    /// How many SCONEs this layer (and its clones) minted, under how many signatures.
    pub fn signing_stats(&self) -> SigningStats {
        self.shared.signer.stats()
    }

    /// The service this layer serves.
    pub fn service(&self) -> &ServiceId {
        &self.shared.service
    }

    /// Wraps a tarpc service (for example `CartServer.serve()`).
    pub fn wrap<S>(&self, inner: S) -> SconeServe<S, P> {
        SconeServe {
            inner: Arc::new(inner),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<P: Placement> Shared<P> {
    fn signer_public_key(&self) -> PublicKey {
        self.signer.public_key()
    }

    fn refuse(&self, kind: RefusalKind, detail: impl Into<String>) -> ResponseEnvelope {
        ResponseEnvelope {
            version: ENVELOPE_VERSION,
            scones: WireScones::default(),
            token: None,
            outcome: Outcome::Refused(Box::new(Refusal {
                kind,
                service: Some(self.service.clone()),
                detail: detail.into(),
            })),
        }
    }

    /// Checks a request's envelope and SCONEs and decodes its body: the handler's context
    /// and request, or the refusal to send instead.
    fn admit_request<Req: DeserializeOwned>(
        &self,
        request: RequestEnvelope,
    ) -> Result<(SconeContext, Req), ResponseEnvelope> {
        if request.version != ENVELOPE_VERSION {
            let detail = format!(
                "envelope version {} (this server reads {ENVELOPE_VERSION})",
                request.version
            );
            return Err(self.refuse(RefusalKind::UnsupportedEnvelope, detail));
        }
        if request.service != self.service {
            let detail = format!("this server is {}, not {}", self.service, request.service);
            return Err(self.refuse(RefusalKind::WrongService, detail));
        }
        let (ours, carried) = self.admit(request.scones)?;
        let inner_request = postcard::from_bytes(&request.body)
            .map_err(|error| self.refuse(RefusalKind::BadRequest, error.to_string()))?;
        let mut scope = SconeContext::new(ours)
            .with_carried(carried)
            .with_deltas_wanted(self.placement.wants_deltas());
        self.open_ours(&mut scope)?;
        Ok((scope, inner_request))
    }

    /// Opens the incoming state of this service in `scope` if the service seals (after
    /// verification: only a SCONE we signed is worth opening), or refuses a sealed one if
    /// it does not.
    fn open_ours(&self, scope: &mut SconeContext) -> Result<(), ResponseEnvelope> {
        match &self.sealer {
            Some(sealer) => {
                scope
                    .open_incoming(&self.service, sealer)
                    .map_err(|error| {
                        tracing::debug!(service = %self.service, %error, "refused a sealed state");
                        self.refuse(RefusalKind::Scone(error.reason()), error.to_string())
                    })?;
            }
            None => {
                let incoming = scope.incoming().get(&self.service);
                if let Some(sealed) = incoming.filter(|scone| scone.is_sealed()) {
                    let detail = format!(
                        "the state of version {} is sealed, and this server does not seal",
                        sealed.version()
                    );
                    return Err(self.refuse(RefusalKind::Scone(RejectReason::Malformed), detail));
                }
            }
        }
        Ok(())
    }

    /// Splits the request's SCONEs into ours (verified) and other services' (carried).
    ///
    /// Decodes straight into the two bundles (no bundle of everything first): the limits
    /// hold for the request as a whole and are checked before anything is decoded.
    fn admit(&self, scones: WireScones) -> Result<(SconeBundle, SconeBundle), ResponseEnvelope> {
        let limits = self.config.bundle_limits;
        let bad_bundle =
            |error: BundleError| self.refuse(RefusalKind::BadRequest, error.to_string());
        scones.check_limits(limits).map_err(bad_bundle)?;
        let mut ours = SconeBundle::with_limits(limits);
        let mut carried = SconeBundle::with_limits(limits);
        for bytes in scones.into_encoded() {
            let scone =
                Scone::decode_with_limit(bytes, self.config.max_scone_bytes).map_err(|error| {
                    let error = WireSconesError::from(error);
                    self.refuse(error.refusal_kind(), error.to_string())
                })?;
            let bundle = if scone.service() == &self.service {
                self.admit_ours(&scone)?;
                &mut ours
            } else {
                &mut carried
            };
            bundle.insert_new(scone).map_err(bad_bundle)?;
        }
        Ok((ours, carried))
    }

    /// Verifies a SCONE of this service, and checks it with the replay guard.
    fn admit_ours(&self, scone: &Scone) -> Result<(), ResponseEnvelope> {
        if let Err(error) = self.verifier.verify(scone) {
            tracing::debug!(service = %self.service, %error, "refused a scone");
            return Err(self.refuse(RefusalKind::Scone(error.reason()), error.to_string()));
        }
        if let Some(guard) = &self.config.replay_guard {
            if let Err(stale) = guard.admit(&SessionKey::of(scone), scone.version()) {
                tracing::debug!(service = %self.service, %stale, "refused a replay");
                return Err(self.refuse(RefusalKind::Scone(RejectReason::Stale), stale.to_string()));
            }
        }
        Ok(())
    }

    /// For a request that carried routing token `token`: if it carried no SCONE of this
    /// service, the one the placement holds (if any), admitted like a carried one.
    async fn load(
        &self,
        scope: &mut SconeContext,
        token: &[u8],
        deadline: std::time::Instant,
    ) -> Result<Option<P::Lease>, ResponseEnvelope> {
        if scope.incoming().get(&self.service).is_some() {
            return Ok(None);
        }
        let (loaded, lease) = self
            .placement
            .load(&self.service, token, deadline)
            .await
            .map_err(|error| self.refuse_placement(&error))?;
        let lease = Some(lease);
        let Some(scone) = loaded else {
            return Ok(lease);
        };
        if scone.service() != &self.service {
            let detail = format!("the placement loaded a scone of {}", scone.service());
            return Err(self.refuse(RefusalKind::Scone(RejectReason::WrongService), detail));
        }
        self.admit_ours(&scone)?;
        scope
            .add_incoming(scone)
            .map_err(|error| self.refuse(RefusalKind::BadRequest, error.to_string()))?;
        self.open_ours(scope)?;
        Ok(lease)
    }

    /// Hands `commit` to the placement; sets `reply_token` to the token it gives, and
    /// answers whether the reply carries the SCONE.
    async fn commit(
        &self,
        commit: Commit<'_>,
        reply_token: &mut Option<Box<[u8]>>,
    ) -> Result<bool, ResponseEnvelope> {
        match self.placement.commit(commit).await {
            Ok(committed) => {
                if committed.token.is_some() {
                    *reply_token = committed.token;
                }
                Ok(committed.reply_carries_scone)
            }
            Err(error) => {
                tracing::warn!(service = %self.service, %error, "the placement refused a new state");
                Err(self.refuse_placement(&error))
            }
        }
    }

    fn refuse_placement(&self, error: &PlacementError) -> ResponseEnvelope {
        self.refuse(error.refusal_kind(), error.to_string())
    }

    fn draft(
        &self,
        incoming: Option<&Scone>,
        write: scone::context::StateWrite,
    ) -> Result<Draft, ResponseEnvelope> {
        let draft = match incoming {
            Some(previous) => previous.successor(write.state),
            None => {
                let endpoint = EndpointId::random()
                    .map_err(|e| self.refuse(RefusalKind::MintFailed, e.to_string()))?;
                Draft::new(write.service, endpoint).with_state(write.state)
            }
        };
        // A write is plaintext in the format it names; `mint` seals it if the service seals.
        Ok(draft
            .with_status(write.status)
            .with_state_format(write.format)
            .with_sealed(false))
    }

    /// A renewal of `incoming` if a request that changed nothing should get one: past
    /// half its lifetime, same state, next version, fresh expiry.
    fn renewal(&self, incoming: &Scone) -> Option<Draft> {
        let (issued, expires) = (incoming.issued_at_ms(), incoming.expires_at_ms());
        let half_life = issued.saturating_add(expires.saturating_sub(issued) / 2);
        if !(self.config.renew && self.config.clock.now_ms() >= half_life) {
            return None;
        }
        // A sealed state is bound to its version: renew from the plaintext (opened in
        // admission already, so this cannot fail but for a bug; then no renewal).
        let state = match &self.sealer {
            Some(sealer) => sealer.open_scone(incoming).ok()?,
            None => incoming.state().to_vec(),
        };
        Some(incoming.successor(state))
    }

    /// Seals `draft`'s state if the service seals, signs it, then claims its version from
    /// the replay guard, if there is one: a SCONE whose version another request claimed
    /// first never leaves.
    async fn mint(&self, mut draft: Draft) -> Result<Scone, ResponseEnvelope> {
        if let Some(sealer) = &self.sealer {
            // Last, once service, endpoint, object and version are final: they are bound.
            sealer
                .seal_draft(&mut draft)
                .map_err(|error| self.refuse(RefusalKind::MintFailed, error.to_string()))?;
        }
        let minted = match self.signer.mint(draft).await {
            Ok(Ok(minted)) => minted,
            Ok(Err(error)) => return Err(self.refuse(RefusalKind::MintFailed, error.to_string())),
            Err(gone) => return Err(self.refuse(RefusalKind::MintFailed, gone.to_string())),
        };
        if let Some(guard) = &self.config.replay_guard {
            let skew_ms = u64::try_from(self.config.clock_skew.as_millis()).unwrap_or(u64::MAX);
            let mark = Watermark {
                version: minted.version(),
                keep_until_ms: minted.expires_at_ms().saturating_add(skew_ms),
            };
            if let Err(stale) = guard.claim(&SessionKey::of(&minted), mark) {
                // Another request on this session, from the same version, won the race.
                return Err(self.refuse(RefusalKind::Scone(RejectReason::Stale), stale.to_string()));
            }
        }
        Ok(minted)
    }
}

/// A tarpc service whose state travels in SCONEs; made by [`SconeLayer::wrap`].
pub struct SconeServe<S, P = ClientHeld> {
    /// Shared, so that this stays two pointers whatever the service holds: tarpc keeps a
    /// copy in every request's future.
    inner: Arc<S>,
    shared: Arc<Shared<P>>,
}

impl<S, P> Clone for SconeServe<S, P> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S, P> Serve for SconeServe<S, P>
where
    P: Placement,
    S: Serve + Clone + Send,
    S::Req: DeserializeOwned,
    S::Resp: Serialize,
{
    type Req = RequestEnvelope;
    type Resp = ResponseEnvelope;

    // The checks that need no waiting run here, before any future exists. What waits (the
    // handler, the signature) is the future returned, inlined into tarpc's request future
    // (which the worker boxes once): boxing it apart, as we once did, cost an allocation
    // past the allocator's fast path per request and measured slower.
    fn serve(
        self,
        ctx: tarpc::context::Context,
        mut request: RequestEnvelope,
    ) -> impl Future<Output = Result<ResponseEnvelope, ServerError>> {
        let token = request.token.take();
        let admitted = self.shared.admit_request(request);
        async move {
            match admitted {
                Ok((mut scope, inner_request)) => {
                    let loads =
                        token.is_some() && scope.incoming().get(&self.shared.service).is_none();
                    // Held until the reply is made (or the request is dropped).
                    let _lease = match &token {
                        Some(token) => {
                            match self.shared.load(&mut scope, token, ctx.deadline).await {
                                Ok(lease) => lease,
                                Err(refusal) => return Ok(refusal),
                            }
                        }
                        None => None,
                    };
                    self.run(ctx, scope, inner_request, token, loads).await
                }
                Err(refusal) => Ok(refusal),
            }
        }
    }
}

impl<S, P> SconeServe<S, P>
where
    P: Placement,
    S: Serve + Clone + Send,
    S::Req: DeserializeOwned,
    S::Resp: Serialize,
{
    /// Runs the handler in `scope`, mints what it changed, and commits that to the
    /// placement (or, when it changed nothing of a state the placement `loaded`, has the
    /// placement confirm what it read).
    async fn run(
        self,
        ctx: tarpc::context::Context,
        scope: SconeContext,
        inner_request: S::Req,
        token: Option<Box<[u8]>>,
        loaded: bool,
    ) -> Result<ResponseEnvelope, ServerError> {
        let shared = &self.shared;
        let (response, scope) =
            context::scope(scope, S::clone(&self.inner).serve(ctx, inner_request)).await;
        let response = response?;
        let ended = scope.ended().contains(&shared.service);
        let (incoming, writes, forwarded) = scope.into_parts();

        // Built straight in its wire form: a reply usually carries the one SCONE minted.
        let mut scones = WireScones::new();
        let mut minted_ours = false;
        let mut reply_token = None;
        let previous = incoming.get(&shared.service);
        for mut write in writes {
            if write.service != shared.service {
                // A state type whose service name differs from the server's: minting it
                // under our key would be wrong, dropping it would lose data.
                let detail = format!(
                    "the handler wrote state for {}, but this server is {}",
                    write.service, shared.service
                );
                tracing::error!(%detail, "misconfigured state type");
                return Ok(shared.refuse(RefusalKind::MintFailed, detail));
            }
            let delta = write.delta.take();
            let draft = match shared.draft(previous, write) {
                Ok(draft) => draft,
                Err(refusal) => return Ok(refusal),
            };
            let minted = match shared.mint(draft).await {
                Ok(minted) => minted,
                Err(refusal) => return Ok(refusal),
            };
            let commit = Commit {
                minted: &minted,
                previous,
                delta: delta.as_deref(),
                token: token.as_deref(),
                deadline: ctx.deadline,
            };
            match shared.commit(commit, &mut reply_token).await {
                Ok(true) => scones.push(minted.into_encoded()),
                Ok(false) => {}
                Err(refusal) => return Ok(refusal),
            }
            minted_ours = true;
        }
        if ended {
            // Nothing of ours was written (ending drops the writes); no renewal either.
            if let Some(previous) = previous {
                if let Err(error) = shared.placement.end(previous, token.as_deref()).await {
                    return Ok(shared.refuse_placement(&error));
                }
            }
        } else if !minted_ours {
            if let Some(draft) = previous.and_then(|s| shared.renewal(s)) {
                let renewed = match shared.mint(draft).await {
                    Ok(renewed) => renewed,
                    Err(refusal) => return Ok(refusal),
                };
                let commit = Commit {
                    minted: &renewed,
                    previous,
                    delta: None,
                    token: token.as_deref(),
                    deadline: ctx.deadline,
                };
                match shared.commit(commit, &mut reply_token).await {
                    Ok(true) => scones.push(renewed.into_encoded()),
                    Ok(false) => {}
                    Err(refusal) => return Ok(refusal),
                }
                minted_ours = true;
            } else if let (true, Some(read), Some(token)) = (loaded, previous, token.as_deref()) {
                match shared
                    .placement
                    .confirm_read(read, token, ctx.deadline)
                    .await
                {
                    Ok(confirmed) => reply_token = confirmed.or(reply_token),
                    Err(error) => {
                        tracing::warn!(service = %shared.service, %error, "the placement refused a read");
                        return Ok(shared.refuse_placement(&error));
                    }
                }
            }
        }
        // Back-ends' SCONEs pass through; a fresh one of ours supersedes any forwarded.
        for scone in forwarded {
            if !(minted_ours && scone.service() == &shared.service) {
                scones.push(scone.into_encoded());
            }
        }
        if let Err(error) = scones.check_limits(shared.config.bundle_limits) {
            return Ok(shared.refuse(RefusalKind::MintFailed, error.to_string()));
        }
        let body = crate::codec::to_exact_bytes(&response)
            .map_err(|e| ServerError::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
        Ok(ResponseEnvelope {
            version: ENVELOPE_VERSION,
            scones,
            token: reply_token,
            outcome: Outcome::Reply(body),
        })
    }
}
