//! Minting: turning a [`Draft`] into a signed [`Scone`], alone or as a batch under one signature.

use std::borrow::Borrow;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ed25519_dalek::Signer;

use crate::clock::{self, Clock};
use crate::error::MintError;
use crate::ids::{EndpointId, ObjectId, ServiceId};
use crate::keys::{PublicKey, SigningKey};
use crate::presign::NoncePool;
use crate::scone::{
    expiry, Scone, StateFormat, Status, WireClaims, DEFAULT_MAX_SCONE_BYTES, FORMAT_VERSION,
};
use crate::seal::{self, Digest, MerklePath, MerkleTree, WireSeal, MAX_BATCH_DEPTH};
use crate::KeyId;

/// The fields of a SCONE to be minted; the minter adds the times, key ID and seal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Draft {
    /// The service the state belongs to.
    pub service: ServiceId,
    /// The endpoint (session) the state belongs to.
    pub endpoint: EndpointId,
    /// The server object the state belongs to.
    pub object: ObjectId,
    /// The status of the current operation.
    pub status: Status,
    /// The state version; a new session starts at 1 and each change adds one.
    pub version: u64,
    /// How long the SCONE stays valid; `None` takes the minter's default.
    pub ttl: Option<Duration>,
    /// How the state is encoded (of the plaintext, when sealed), so readers never decode
    /// it in the wrong format; [`Opaque`](StateFormat::Opaque) unless set.
    pub state_format: StateFormat,
    /// Whether the state is sealed; [`StateSealer::seal_draft`] sets it. False unless set.
    ///
    /// [`StateSealer::seal_draft`]: crate::sealed::StateSealer::seal_draft
    pub sealed: bool,
    /// The state, encoded as `state_format` says.
    pub state: Vec<u8>,
}

impl Draft {
    /// A first-version draft with empty state, object 0, status idle, the minter's
    /// default TTL, state format [`Opaque`](StateFormat::Opaque) and not sealed.
    pub fn new(service: ServiceId, endpoint: EndpointId) -> Self {
        Self {
            service,
            endpoint,
            object: ObjectId::default(),
            status: Status::default(),
            version: 1,
            ttl: None,
            state_format: StateFormat::default(),
            sealed: false,
            state: Vec::new(),
        }
    }

    /// Sets the state.
    pub fn with_state(mut self, state: impl Into<Vec<u8>>) -> Self {
        self.state = state.into();
        self
    }

    /// Sets the version.
    pub fn with_version(mut self, version: u64) -> Self {
        self.version = version;
        self
    }

    /// Sets the status.
    pub fn with_status(mut self, status: Status) -> Self {
        self.status = status;
        self
    }

    /// Sets the object ID.
    pub fn with_object(mut self, object: ObjectId) -> Self {
        self.object = object;
        self
    }

    /// Sets the time to live.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Sets how the state is encoded (for a sealed state, the plaintext).
    pub fn with_state_format(mut self, state_format: StateFormat) -> Self {
        self.state_format = state_format;
        self
    }

    /// Sets whether the state is sealed. [`StateSealer::seal_draft`] sets it; set it
    /// yourself only for a state sealed by other means.
    ///
    /// [`StateSealer::seal_draft`]: crate::sealed::StateSealer::seal_draft
    pub fn with_sealed(mut self, sealed: bool) -> Self {
        self.sealed = sealed;
        self
    }
}

/// Settings of a [`Minter`].
#[derive(Clone, Debug)]
pub struct MinterConfig {
    /// Time to live of a SCONE whose draft names none.
    pub default_ttl: Duration,
    /// Largest encoded SCONE the minter will produce; keep it within your verifiers' limit.
    pub max_scone_bytes: usize,
    /// Add the issuer-only keyed tag, so servers holding the key can skip signature checks
    /// (see [`Verifier::trusting_own_tags`](crate::Verifier::trusting_own_tags)).
    pub issuer_tag: bool,
}

impl Default for MinterConfig {
    fn default() -> Self {
        Self {
            default_ttl: Duration::from_secs(30 * 60),
            max_scone_bytes: DEFAULT_MAX_SCONE_BYTES,
            issuer_tag: true,
        }
    }
}

/// Signs new SCONEs with a service's key.
#[derive(Clone)]
pub struct Minter {
    /// The service's signing key (and the tag key derived from it).
    key: SigningKey,
    /// Stamps `issued_at` and `expires_at`.
    clock: Arc<dyn Clock>,
    /// Limits and defaults.
    config: MinterConfig,
    /// When set, signatures spend precomputed nonces (see [`presign`](crate::presign)).
    presigned: Option<Arc<Presigned>>,
}

/// A draft encoded up to its claims, waiting for its seal.
struct Encoded {
    /// The claim bytes, in a buffer with room reserved for exactly the seal.
    buf: Vec<u8>,
    claims_len: usize,
    /// The one digest of the claim bytes; the leaf and the issuer tag are derived from it.
    claims_digest: Digest,
}

impl Encoded {
    /// The leaf digest at `index` in its batch: what the signature (or root) stands on.
    fn leaf(&self, index: u32) -> Digest {
        seal::leaf_digest(&self.claims_digest, index)
    }
}

/// Precomputed-nonce signing: the key in the form the online half needs, and the pool.
struct Presigned {
    expanded: ed25519_dalek::hazmat::ExpandedSecretKey,
    public: [u8; 32],
    pool: NoncePool,
}

impl std::fmt::Debug for Minter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minter")
            .field("key_id", &self.key.key_id())
            .field("config", &self.config)
            .field("nonce_pool", &self.presigned.as_ref().map(|p| &p.pool))
            .finish_non_exhaustive()
    }
}

impl Minter {
    /// A minter with the default settings and the system clock.
    pub fn new(key: SigningKey) -> Self {
        Self {
            key,
            clock: clock::system(),
            config: MinterConfig::default(),
            presigned: None,
        }
    }

    /// Signs with precomputed nonces, keeping `capacity` ready on a background thread: the
    /// online cost of a signature drops from about 15 µs to about 1 µs, while the same
    /// work is done off the request path. See [`presign`](crate::presign).
    ///
    /// Safe across `fork` (a child never spends the parent's nonces), but **not** where the
    /// process or its VM may be restored from a snapshot or checkpoint: each restored copy
    /// would spend the same pooled nonces (up to `capacity` of them) on different messages,
    /// which reveals the key. There, don't call this (in `scone-rpc`, set
    /// `LayerConfig::presigned_nonces` to 0): without a pool the minter signs with RFC
    /// 8032's deterministic nonces, which no replay can misuse.
    pub fn with_nonce_pool(mut self, capacity: usize) -> std::io::Result<Self> {
        // From the key's own bytes, not a copy: an unwiped temporary would outlive us.
        let expanded =
            ed25519_dalek::hazmat::ExpandedSecretKey::from(self.key.ed25519().as_bytes());
        let pool = NoncePool::start(&expanded, capacity)?;
        self.presigned = Some(Arc::new(Presigned {
            public: self.key.public_key().as_bytes().to_owned(),
            expanded,
            pool,
        }));
        Ok(self)
    }

    fn sign(&self, digest: &Digest) -> [u8; 64] {
        self.presigned
            .as_ref()
            .and_then(|p| p.pool.sign(&p.expanded, &p.public, digest))
            .unwrap_or_else(|| self.key.ed25519().sign(digest).to_bytes())
    }

    /// Replaces the settings.
    pub fn with_config(mut self, config: MinterConfig) -> Self {
        self.config = config;
        self
    }

    /// Replaces the clock (tests use a [`ManualClock`](crate::ManualClock)).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The ID of the key it signs with.
    pub fn key_id(&self) -> KeyId {
        self.key.key_id()
    }

    /// The public key verifiers need.
    pub fn public_key(&self) -> PublicKey {
        self.key.public_key()
    }

    /// The signing key.
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// Mints one SCONE with a signature of its own (from a draft, or a borrowed one).
    pub fn mint(&self, draft: impl Borrow<Draft>) -> Result<Scone, MintError> {
        let draft = draft.borrow();
        let now_ms = self.clock.now_ms();
        let encoded = self.encode_claims(draft, now_ms, 0, 0)?;
        let signature = self.sign(&encoded.leaf(0));
        self.seal(draft, encoded, now_ms, 0, &MerklePath::EMPTY, signature)
    }

    /// Mints several SCONEs under one signature over the Merkle root of their digests.
    ///
    /// Costs one ed25519 signature for the whole batch; each SCONE verifies on its own,
    /// carrying `ceil(log2(n))` sibling digests (32 bytes each). At most 2^16 drafts.
    pub fn mint_batch(&self, drafts: &[Draft]) -> Result<Vec<Scone>, MintError> {
        let limit = 1 << MAX_BATCH_DEPTH;
        if drafts.len() > limit {
            return Err(MintError::BatchTooLarge {
                size: drafts.len(),
                limit,
            });
        }
        if drafts.is_empty() {
            return Ok(Vec::new());
        }
        let now_ms = self.clock.now_ms();
        let depth = seal::batch_depth(drafts.len());
        // Filled by pushing: collecting `Result`s cannot size a vector up front.
        let mut encoded = Vec::with_capacity(drafts.len());
        for (index, draft) in drafts.iter().enumerate() {
            // Lossless: the batch size was checked against 2^16 above.
            encoded.push(self.encode_claims(draft, now_ms, index as u32, depth)?);
        }
        let leaves = encoded.iter().enumerate().map(|(i, e)| e.leaf(i as u32));
        let tree = MerkleTree::new(leaves);
        let signature = self.sign(&tree.root());
        let mut scones = Vec::with_capacity(drafts.len());
        for (index, (draft, encoded)) in drafts.iter().zip(encoded).enumerate() {
            let path = tree.path(index);
            scones.push(self.seal(draft, encoded, now_ms, index as u32, &path, signature)?);
        }
        Ok(scones)
    }

    fn claims<'a>(&self, draft: &'a Draft, now_ms: u64) -> WireClaims<'a> {
        let ttl = draft.ttl.unwrap_or(self.config.default_ttl);
        WireClaims {
            format: FORMAT_VERSION,
            key_id: self.key.key_id(),
            service: draft.service.as_str(),
            endpoint: draft.endpoint,
            object: draft.object,
            status: draft.status,
            version: draft.version,
            issued_at_ms: now_ms,
            expires_at_ms: expiry(now_ms, ttl),
            state_format: draft.state_format.code(),
            sealed: draft.sealed,
            state: &draft.state,
        }
    }

    /// Encodes the claims of the SCONE that will sit at `index` in a batch of depth
    /// `depth`, into a buffer of exactly the SCONE's final size: its bytes are then
    /// allocated once, and become a `Bytes` without another allocation.
    fn encode_claims(
        &self,
        draft: &Draft,
        now_ms: u64,
        index: u32,
        depth: usize,
    ) -> Result<Encoded, MintError> {
        // Refuse a hopeless state before measuring it; the exact check follows.
        if draft.state.len() > self.config.max_scone_bytes {
            return Err(MintError::TooLarge {
                size: draft.state.len(),
                limit: self.config.max_scone_bytes,
            });
        }
        let claims = self.claims(draft, now_ms);
        let claims_len =
            postcard::serialize_with_flavor(&claims, postcard::ser_flavors::Size::default())?;
        let size = claims_len + seal::seal_len(self.config.issuer_tag, index, depth);
        if size > self.config.max_scone_bytes {
            return Err(MintError::TooLarge {
                size,
                limit: self.config.max_scone_bytes,
            });
        }
        let buf = postcard::to_extend(&claims, Vec::with_capacity(size))?;
        debug_assert_eq!(buf.len(), claims_len);
        let claims_digest = seal::claims_digest(&buf);
        Ok(Encoded {
            claims_digest,
            buf,
            claims_len,
        })
    }

    fn seal(
        &self,
        draft: &Draft,
        encoded: Encoded,
        now_ms: u64,
        index: u32,
        path: &MerklePath,
        signature: [u8; 64],
    ) -> Result<Scone, MintError> {
        // The tag comes last, over the path and signature too, so that the issuer, which
        // trusts it instead of the signature, accepts exactly what public verifiers accept
        // (see `seal`). Its space was reserved with the rest of the seal.
        let tag = self.config.issuer_tag.then(|| {
            seal::tag(
                self.key.tag_key(),
                &encoded.claims_digest,
                index,
                path.as_bytes(),
                &signature,
            )
        });
        let seal = WireSeal {
            tag: tag.as_ref().map(|tag| &tag.as_bytes()[..]),
            index,
            siblings: path.as_bytes(),
            signature: &signature,
        };
        let buf = postcard::to_extend(&seal, encoded.buf)?;
        // The size (checked against the limit) was reserved exactly in `encode_claims`.
        debug_assert_eq!(buf.len(), buf.capacity());
        let claims = self.claims(draft, now_ms);
        Scone::from_parts(
            Bytes::from(buf),
            encoded.claims_len,
            &claims,
            draft.service.clone(),
        )
        .map_err(|_| MintError::Inconsistent)
    }
}
