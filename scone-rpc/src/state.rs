//! Typed service state with per-field change tracking, for `#[derive(SconeState)]`.
//!
//! A handler loads its state from the request context, borrows the fields it changes
//! mutably (`cart.items_mut()`), and saves. The first mutable borrow of a field takes a
//! snapshot of its encoding (the *benchmark* version, seed 004); saving compares each
//! borrowed field with its snapshot, and only when some field really changed is the state
//! written back, so an untouched or unchanged state is never re-signed. The changed
//! fields alone form a [`Delta`], which the cluster replicates to replicas in step.

use scone::context::{self, Written};
use scone::{ContextError, InvalidId, ServiceId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

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
        ServiceId::new(Self::SERVICE).map_err(StateError::Service)
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

/// The snapshot of one field, taken at its first mutable borrow.
#[derive(Clone, Debug)]
enum Snapshot {
    /// Not borrowed mutably: unchanged by definition.
    Untouched,
    /// Its encoding before the borrow.
    Before(Vec<u8>),
    /// It could not be encoded before the borrow; counted as changed.
    Unknown,
}

/// What [`Tracker::save`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Saved {
    /// No field changed: nothing will be minted.
    Unchanged,
    /// These fields (by name) changed; a new SCONE will be minted.
    Changed(Vec<&'static str>),
}

/// A state value with per-field change tracking; the derive wraps it in a named handle.
#[derive(Debug)]
pub struct Tracker<T> {
    /// The state as the handler sees it.
    value: T,
    /// One per field.
    snapshots: Vec<Snapshot>,
    /// Whether the value came from a SCONE (false: a new session).
    loaded: bool,
}

impl<T: SconeState> Tracker<T> {
    /// Tracks `value`; `loaded` says whether it came from a SCONE.
    pub fn new(value: T, loaded: bool) -> Self {
        Self {
            value,
            snapshots: vec![Snapshot::Untouched; T::FIELDS.len()],
            loaded,
        }
    }

    /// Loads the state from the request context (the default for a new session).
    pub fn load() -> Result<Self, StateError> {
        let service = T::service_id()?;
        match context::incoming(&service)? {
            Some(scone) => {
                let value = postcard::from_bytes(scone.state())
                    .map_err(|source| StateError::Decode { service, source })?;
                Ok(Self::new(value, true))
            }
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
        if let Some(snapshot @ Snapshot::Untouched) = self.snapshots.get_mut(index) {
            *snapshot = match self.value.encode_field(index, Vec::new()) {
                Ok(bytes) => Snapshot::Before(bytes),
                Err(_) => Snapshot::Unknown,
            };
        }
    }

    /// The value, mutably, without tracking: pair every change with [`touch`](Self::touch).
    pub fn value_mut(&mut self) -> &mut T {
        &mut self.value
    }

    /// The fields that differ from their snapshots, by index.
    pub fn changed_fields(&self) -> Result<Vec<usize>, StateError> {
        let mut changed = Vec::new();
        for (index, snapshot) in self.snapshots.iter().enumerate() {
            let differs = match snapshot {
                Snapshot::Untouched => false,
                Snapshot::Unknown => true,
                Snapshot::Before(before) => &self.value.encode_field(index, Vec::new())? != before,
            };
            if differs {
                changed.push(index);
            }
        }
        Ok(changed)
    }

    /// The changed fields with their new values.
    pub fn delta(&self) -> Result<Delta, StateError> {
        let fields = self
            .changed_fields()?
            .into_iter()
            .map(|index| {
                let value = self.value.encode_field(index, Vec::new())?;
                let index = u16::try_from(index).map_err(|_| StateError::UnknownField(index))?;
                Ok(FieldDelta { index, value })
            })
            .collect::<Result<_, StateError>>()?;
        Ok(Delta { fields })
    }

    /// Writes the state back to the request context if a field changed.
    pub fn save(self) -> Result<Saved, StateError> {
        let changed = self.changed_fields()?;
        if changed.is_empty() {
            return Ok(Saved::Unchanged);
        }
        let service = T::service_id()?;
        let state = postcard::to_stdvec(&self.value).map_err(StateError::Encode)?;
        match context::write_state(&service, state)? {
            Written::Unchanged => Ok(Saved::Unchanged),
            Written::Changed => Ok(Saved::Changed(
                changed.into_iter().map(|index| T::FIELDS[index]).collect(),
            )),
        }
    }

    /// The value, ending tracking.
    pub fn into_inner(self) -> T {
        self.value
    }
}
