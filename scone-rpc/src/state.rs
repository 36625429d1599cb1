//! Typed service state with per-field change tracking, for `#[derive(SconeState)]`.
//!
//! A handler loads its state from the request context, borrows the fields it changes
//! mutably (`cart.items_mut()`), and saves. The first mutable borrow of a field takes a
//! snapshot of its encoding (the *benchmark* version it is compared with); saving compares
//! each borrowed field with its snapshot, and only when some field really changed is the
//! state written back, so an untouched or unchanged state is never re-signed. The changed
//! fields alone form a [`Delta`], for whoever wants to ship only what changed.
//!
//! A handle dropped without `save` loses its changes; debug builds log a warning when a
//! changed handle is dropped that way, and `discard` drops changes on purpose.
//!
//! A state is saved as postcard ([`StateFormat::Postcard`], named in the SCONE's claims)
//! and loaded only from a format its claims name: postcard, or JSON (what `scone mint`
//! writes), which the next save turns into postcard. An opaque state, or a sealed one
//! the server did not open, is a typed error, never a value decoded from the wrong bytes.

use std::ops::Range;

use scone::context::{self, Written};
use scone::{ContextError, InvalidId, ServiceId, StateFormat};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::spare;

pub use scone_rpc_derive::SconeState;

/// A struct whose value is a service's per-session state; derive it with
/// `#[derive(SconeState)]` and `#[scone(service = "name")]`.
pub trait SconeState: Serialize + DeserializeOwned + Default + Send + 'static {
    /// The service the state belongs to.
    const SERVICE: &'static str;
    /// The field names, in declaration (and encoding) order.
    const FIELDS: &'static [&'static str];

    /// The change-tracking handle the derive generates (`CartStateTracked`).
    type Tracked: From<Tracker<Self>>;

    /// Appends the postcard encoding of field `index` to `out`.
    fn encode_field(&self, index: usize, out: Vec<u8>) -> Result<Vec<u8>, StateError>;

    /// Sets field `index` from its postcard encoding.
    fn decode_field(&mut self, index: usize, bytes: &[u8]) -> Result<(), StateError>;

    /// The service ID.
    fn service_id() -> Result<ServiceId, StateError> {
        // Interned: called twice a request, and usually the same name as last time.
        ServiceId::interned(Self::SERVICE).map_err(StateError::Service)
    }

    /// Loads the state from the request's SCONE, or the default for a new session.
    fn load() -> Result<Self::Tracked, StateError> {
        Tracker::load().map(Self::Tracked::from)
    }
}

/// A failure to load, save or apply state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// Not inside a request (or the context is busy).
    #[error("no request context")]
    Context(#[from] ContextError),
    /// The SCONE's state is not a value of this type (another schema version?).
    #[error("the state in the scone for {service} does not decode")]
    Decode {
        /// The service whose state failed.
        service: ServiceId,
        /// What postcard said.
        #[source]
        source: postcard::Error,
    },
    /// The SCONE's JSON state is not a value of this type.
    #[error("the json state in the scone for {service} does not decode")]
    DecodeJson {
        /// The service whose state failed.
        service: ServiceId,
        /// What serde_json said.
        #[source]
        source: serde_json::Error,
    },
    /// The SCONE's claims name a state format this type does not read (an opaque state,
    /// say, written with `context::write_state`): decoding it anyway would yield garbage.
    #[error("the state in the scone for {service} is {found}, not {expected}")]
    WrongFormat {
        /// The service whose state it is.
        service: ServiceId,
        /// The format this type writes (it also reads JSON).
        expected: StateFormat,
        /// The format the SCONE's claims name.
        found: StateFormat,
    },
    /// The SCONE's state is sealed, and this server did not open it (it does not seal
    /// its state: `LayerConfig::sealed_state` differs between the servers of a service).
    #[error("the state in the scone for {service} is sealed, and this server does not seal")]
    Sealed {
        /// The service whose state it is.
        service: ServiceId,
    },
    /// One field of a delta does not decode.
    #[error("field {field} does not decode")]
    FieldDecode {
        /// The field's name.
        field: &'static str,
        /// What postcard said.
        #[source]
        source: postcard::Error,
    },
    /// The state does not encode.
    #[error("the state does not encode")]
    Encode(#[source] postcard::Error),
    /// A delta names a field the type does not have.
    #[error("no field number {0} in this state type")]
    UnknownField(usize),
    /// The type's service name is not a valid service ID.
    #[error("invalid service name")]
    Service(#[source] InvalidId),
}

/// The changed fields of a state, each as its postcard encoding.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    /// The changed fields, in field order.
    pub fields: Vec<FieldDelta>,
}

/// One changed field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldDelta {
    /// The field's position in the struct.
    pub index: u16,
    /// Its new value, postcard-encoded.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

impl Delta {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Applies the delta to `state` (an older version of the same session).
    pub fn apply<T: SconeState>(&self, state: &mut T) -> Result<(), StateError> {
        self.fields
            .iter()
            .try_for_each(|field| state.decode_field(usize::from(field.index), &field.value))
    }
}

/// Applies an encoded [`Delta`] to an encoded state, both postcard: what a replica that
/// holds a session's previous version does with the delta of the next one, without the
/// handler. See [`apply_delta`].
pub type DeltaApplier = fn(state: &[u8], delta: &[u8]) -> Result<Vec<u8>, StateError>;

/// Applies the postcard [`Delta`] `delta` to the postcard state `state` of type `T`, and
/// returns the new state's encoding: the bytes the handler's save produced, as long as
/// `T` encodes deterministically (no `HashMap` fields; a replica checks the result
/// against the primary's signature anyway). `apply_delta::<CartState>` is a
/// [`DeltaApplier`].
///
/// ```
/// # use scone_rpc::state::{apply_delta, Delta, FieldDelta, SconeState};
/// # #[derive(SconeState, serde::Serialize, serde::Deserialize, Default)]
/// # #[scone(service = "notes")]
/// # struct Notes { page: Vec<u8>, visits: u64 }
/// let before = postcard::to_allocvec(&Notes { page: vec![7; 4096], visits: 1 }).unwrap();
/// let delta = Delta { fields: vec![FieldDelta { index: 1, value: postcard::to_allocvec(&2u64).unwrap() }] };
/// let after = apply_delta::<Notes>(&before, &postcard::to_allocvec(&delta).unwrap()).unwrap();
/// assert_eq!(after, postcard::to_allocvec(&Notes { page: vec![7; 4096], visits: 2 }).unwrap());
/// ```
pub fn apply_delta<T: SconeState>(state: &[u8], delta: &[u8]) -> Result<Vec<u8>, StateError> {
    let service = T::service_id()?;
    let mut value: T = postcard::from_bytes(state).map_err(|source| StateError::Decode {
        service: service.clone(),
        source,
    })?;
    let delta: Delta =
        postcard::from_bytes(delta).map_err(|source| StateError::Decode { service, source })?;
    for field in &delta.fields {
        let index = usize::from(field.index);
        if index >= T::FIELDS.len() {
            return Err(StateError::UnknownField(index));
        }
        value.decode_field(index, &field.value)?;
    }
    postcard::to_allocvec(&value).map_err(StateError::Encode)
}

/// The snapshot of one borrowed field, taken at its first mutable borrow.
#[derive(Clone, Debug)]
struct Snapshot {
    /// The field's position in the struct.
    index: usize,
    /// Where its encoding before the borrow sits in the tracker's arena; `None` if it
    /// could not be encoded, in which case it counts as changed.
    before: Option<Range<usize>>,
}

/// What [`Tracker::save`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Saved {
    /// No field changed: nothing will be minted.
    Unchanged,
    /// These fields changed; a new SCONE will be minted.
    Changed(ChangedFields),
}

/// The fields a save found changed, in field order.
#[derive(Clone, PartialEq, Eq)]
pub struct ChangedFields {
    /// The state type's field names.
    names: &'static [&'static str],
    /// Positions of the changed ones: a handler changes few fields, so inline.
    indices: SmallVec<[usize; 4]>,
}

impl ChangedFields {
    /// The changed fields' names.
    pub fn names(&self) -> impl ExactSizeIterator<Item = &'static str> + '_ {
        let names = self.names;
        self.indices.iter().map(move |&index| names[index])
    }

    /// The changed fields' positions in the struct.
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }

    /// Whether the field called `name` changed.
    pub fn contains(&self, name: &str) -> bool {
        self.names().any(|changed| changed == name)
    }

    /// How many fields changed.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// Whether none did.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

impl std::fmt::Debug for ChangedFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

/// The snapshots' encodings, end to end: one buffer however many fields are borrowed,
/// taken from the thread's spares at the first snapshot and given back when dropped.
#[derive(Debug, Default)]
struct Arena(Vec<u8>);

impl Arena {
    /// The buffer: a spare at first use, with room for `size_hint` bytes.
    fn ready(&mut self, size_hint: usize) -> &mut Vec<u8> {
        if self.0.capacity() == 0 {
            self.0 = spare::take(size_hint);
        }
        &mut self.0
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        spare::give_back(std::mem::take(&mut self.0));
    }
}

/// A state value with per-field change tracking; the derive wraps it in a named handle.
#[derive(Debug)]
pub struct Tracker<T: SconeState> {
    /// The state as the handler sees it.
    value: T,
    /// One per field borrowed mutably, in the order first borrowed: few, so inline.
    snapshots: SmallVec<[Snapshot; 4]>,
    /// The snapshots' encodings, end to end.
    arena: Arena,
    /// Whether the value came from a SCONE (false: a new session).
    loaded: bool,
    /// Encoded size of the state as it came in: what buffers reserve, so encoding into
    /// them does not grow them step by step.
    size_hint: usize,
    /// Set by `save`, `discard` and `into_inner`: dropping a tracker that is not finished
    /// and has changes loses them, which debug builds report.
    finished: bool,
}

impl<T: SconeState> Drop for Tracker<T> {
    fn drop(&mut self) {
        if cfg!(debug_assertions) && !self.finished && self.has_unsaved_changes() {
            let fields: Vec<&str> = self
                .changed_fields()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|index| T::FIELDS.get(index).copied())
                .collect();
            tracing::warn!(
                service = T::SERVICE,
                ?fields,
                "state changed but dropped without save(): the change is lost \
                 (call save(), or discard() to drop it on purpose)"
            );
        }
    }
}

impl<T: SconeState> Tracker<T> {
    /// Tracks `value`; `loaded` says whether it came from a SCONE.
    pub fn new(value: T, loaded: bool) -> Self {
        Self {
            value,
            snapshots: SmallVec::new(),
            arena: Arena::default(),
            loaded,
            size_hint: 0,
            finished: false,
        }
    }

    /// Loads the state from the request context (the default for a new session). For a
    /// service that seals its state, this is the state the server opened.
    ///
    /// Decodes the state in the format the SCONE's claims name: postcard, or JSON (as
    /// `scone mint` writes it). Any other format ([`StateError::WrongFormat`]), or a
    /// sealed state this server did not open ([`StateError::Sealed`]), is refused.
    pub fn load() -> Result<Self, StateError> {
        let service = T::service_id()?;
        let loaded = context::with(|ctx| {
            let scone = ctx.incoming().get(&service)?;
            if scone.is_sealed() && !ctx.is_opened(&service) {
                return Some(Err(StateError::Sealed {
                    service: service.clone(),
                }));
            }
            let state = ctx.incoming_state(&service)?;
            let value = match scone.state_format() {
                StateFormat::Postcard => {
                    postcard::from_bytes::<T>(state).map_err(|source| StateError::Decode {
                        service: service.clone(),
                        source,
                    })
                }
                StateFormat::Json => {
                    serde_json::from_slice::<T>(state).map_err(|source| StateError::DecodeJson {
                        service: service.clone(),
                        source,
                    })
                }
                found => Err(StateError::WrongFormat {
                    service: service.clone(),
                    expected: StateFormat::Postcard,
                    found,
                }),
            };
            Some(value.map(|value| (value, state.len())))
        })?;
        match loaded {
            Some(Ok((value, size))) => {
                let mut tracker = Self::new(value, true);
                tracker.size_hint = size;
                Ok(tracker)
            }
            Some(Err(error)) => Err(error),
            None => Ok(Self::new(T::default(), false)),
        }
    }

    /// The value.
    pub fn value(&self) -> &T {
        &self.value
    }

    /// Whether the value came from a SCONE rather than starting a new session.
    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    /// Snapshots field `index` before its first mutable borrow. The derive's `_mut`
    /// accessors call it; call it yourself before changing the field through [`value_mut`].
    ///
    /// [`value_mut`]: Tracker::value_mut
    pub fn touch(&mut self, index: usize) {
        if index >= T::FIELDS.len() || self.snapshots.iter().any(|s| s.index == index) {
            return;
        }
        let arena = self.arena.ready(self.size_hint);
        let start = arena.len();
        let before = match self.value.encode_field(index, std::mem::take(arena)) {
            Ok(arena) => {
                self.arena.0 = arena;
                Some(start..self.arena.0.len())
            }
            // The encoder took the arena with it; the snapshots already in it are lost too,
            // so count them all as changed (which only ever costs a needless re-mint).
            Err(_) => {
                for snapshot in &mut self.snapshots {
                    snapshot.before = None;
                }
                None
            }
        };
        self.snapshots.push(Snapshot { index, before });
    }

    /// The value, mutably, without tracking: pair every change with [`touch`](Self::touch).
    pub fn value_mut(&mut self) -> &mut T {
        &mut self.value
    }

    /// The fields that differ from their snapshots, by index, in field order.
    pub fn changed_fields(&self) -> Result<Vec<usize>, StateError> {
        self.changed_with(&mut Vec::new())
            .map(|changed| changed.indices.into_vec())
    }

    /// The changed fields, encoding into `scratch` (left empty).
    fn changed_with(&self, scratch: &mut Vec<u8>) -> Result<ChangedFields, StateError> {
        let mut indices = SmallVec::new();
        for snapshot in &self.snapshots {
            let differs = match &snapshot.before {
                None => true,
                Some(before) => {
                    scratch.clear();
                    *scratch = self
                        .value
                        .encode_field(snapshot.index, std::mem::take(scratch))?;
                    scratch[..] != self.arena.0[before.clone()]
                }
            };
            if differs {
                indices.push(snapshot.index);
            }
        }
        scratch.clear();
        indices.sort_unstable();
        Ok(ChangedFields {
            names: T::FIELDS,
            indices,
        })
    }

    /// The changed fields with their new values.
    pub fn delta(&self) -> Result<Delta, StateError> {
        self.delta_of(&self.changed_fields()?)
    }

    /// The fields at `indices` with their values now.
    fn delta_of(&self, indices: &[usize]) -> Result<Delta, StateError> {
        let fields = indices
            .iter()
            .copied()
            .map(|index| {
                let value = self.value.encode_field(index, Vec::new())?;
                let index = u16::try_from(index).map_err(|_| StateError::UnknownField(index))?;
                Ok(FieldDelta { index, value })
            })
            .collect::<Result<_, StateError>>()?;
        Ok(Delta { fields })
    }

    /// Writes the state back to the request context, as postcard, if a field changed.
    pub fn save(mut self) -> Result<Saved, StateError> {
        self.finished = true;
        // One buffer serves the field comparisons and then holds the new state; the
        // signer gives it back once the state is minted.
        let mut buffer = spare::take(self.size_hint + self.size_hint / 8);
        let changed = self.changed_with(&mut buffer)?;
        if changed.is_empty() {
            spare::give_back(buffer);
            return Ok(Saved::Unchanged);
        }
        let service = T::service_id()?;
        // Only when the server's placement ships deltas: the client-held path skips the
        // per-field encoding.
        let delta = if context::deltas_wanted() {
            Some(self.delta_of(&changed.indices)?)
        } else {
            None
        };
        let state = postcard::to_extend(&self.value, buffer).map_err(StateError::Encode)?;
        match context::write_state_as(&service, state, StateFormat::Postcard)? {
            Written::Unchanged => Ok(Saved::Unchanged),
            Written::Changed => {
                if let Some(delta) = delta {
                    let delta = postcard::to_allocvec(&delta).map_err(StateError::Encode)?;
                    context::attach_delta(&service, delta)?;
                }
                Ok(Saved::Changed(changed))
            }
        }
    }

    /// Ends the session instead of saving it (see `scone::context::end_session`): no
    /// new state is minted, and a placement that keeps sessions drops it, so the next
    /// call starts anew.
    pub fn end_session(mut self) -> Result<(), StateError> {
        self.finished = true;
        context::end_session(&T::service_id()?)?;
        Ok(())
    }

    /// The value, ending tracking (any change is not saved).
    pub fn into_inner(mut self) -> T {
        self.finished = true;
        std::mem::take(&mut self.value)
    }

    /// Drops the changes on purpose (no warning; nothing is saved).
    pub fn discard(mut self) {
        self.finished = true;
    }

    /// Whether a field borrowed mutably now differs from how it was loaded.
    pub fn has_unsaved_changes(&self) -> bool {
        !self.snapshots.is_empty() && self.changed_fields().map_or(true, |c| !c.is_empty())
    }
}
