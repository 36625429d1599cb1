//! The set of SCONEs one message carries: at most one per service, bounded in count and bytes.

use std::fmt;

use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::error::BundleError;
use crate::ids::ServiceId;
use crate::scone::Scone;

/// Bounds on a bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BundleLimits {
    /// Most SCONEs in one bundle: one per service tier a call passes through.
    pub max_scones: usize,
    /// Most encoded bytes of all its SCONEs together.
    pub max_bytes: usize,
}

impl Default for BundleLimits {
    fn default() -> Self {
        Self {
            max_scones: 16,
            max_bytes: 256 * 1024,
        }
    }
}

/// The SCONEs a request or reply carries, at most one per service.
///
/// A multi-tier call carries several: the front-end's own and those of the back-ends it
/// called, all entrusted to the client. Decoding from the wire applies
/// [`BundleLimits::default`] and refuses two SCONEs for one service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SconeBundle {
    /// Few entries (one per tier), so a vector beats a map.
    scones: Vec<Scone>,
    /// Bounds checked on every insert.
    limits: BundleLimits,
}

impl SconeBundle {
    /// An empty bundle with default limits.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty bundle with `limits`.
    pub fn with_limits(limits: BundleLimits) -> Self {
        Self {
            scones: Vec::new(),
            limits,
        }
    }

    /// Adds `scone`, replacing (and returning) the one for the same service.
    ///
    /// Fails, leaving the bundle as it was, if the result would break the limits.
    pub fn insert(&mut self, scone: Scone) -> Result<Option<Scone>, BundleError> {
        let existing = self.position(scone.service());
        let replaced_bytes = existing.map_or(0, |i| self.scones[i].encoded_len());
        let size = self.encoded_len() - replaced_bytes + scone.encoded_len();
        if size > self.limits.max_bytes {
            return Err(BundleError::TooLarge {
                size,
                limit: self.limits.max_bytes,
            });
        }
        match existing {
            Some(i) => Ok(Some(std::mem::replace(&mut self.scones[i], scone))),
            None if self.scones.len() >= self.limits.max_scones => {
                Err(BundleError::TooManyScones {
                    limit: self.limits.max_scones,
                })
            }
            None => {
                // Bundles hold one SCONE per tier, usually one or two: grow by one, not
                // to four (a SCONE is a few hundred bytes).
                self.scones.reserve_exact(1);
                self.scones.push(scone);
                Ok(None)
            }
        }
    }

    /// Adds `scone`, which must be the first for its service: a message that carries two
    /// SCONEs for one service is malformed (which one would count?).
    pub fn insert_new(&mut self, scone: Scone) -> Result<(), BundleError> {
        if self.position(scone.service()).is_some() {
            return Err(BundleError::DuplicateService(scone.service().clone()));
        }
        self.insert(scone).map(|_| ())
    }

    /// The SCONE for `service`.
    pub fn get(&self, service: &ServiceId) -> Option<&Scone> {
        self.position(service).map(|i| &self.scones[i])
    }

    /// Takes out the SCONE for `service`.
    pub fn remove(&mut self, service: &ServiceId) -> Option<Scone> {
        self.position(service).map(|i| self.scones.swap_remove(i))
    }

    /// The SCONEs, in no particular order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &Scone> {
        self.scones.iter()
    }

    /// How many SCONEs it holds.
    pub fn len(&self) -> usize {
        self.scones.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.scones.is_empty()
    }

    /// Encoded bytes of all its SCONEs.
    pub fn encoded_len(&self) -> usize {
        self.scones.iter().map(Scone::encoded_len).sum()
    }

    /// The limits it enforces.
    pub fn limits(&self) -> BundleLimits {
        self.limits
    }

    fn position(&self, service: &ServiceId) -> Option<usize> {
        self.scones.iter().position(|s| s.service() == service)
    }
}

impl IntoIterator for SconeBundle {
    type Item = Scone;
    type IntoIter = std::vec::IntoIter<Scone>;
    fn into_iter(self) -> Self::IntoIter {
        self.scones.into_iter()
    }
}

impl Serialize for SconeBundle {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(&self.scones)
    }
}

impl<'de> Deserialize<'de> for SconeBundle {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BundleVisitor;

        impl<'de> Visitor<'de> for BundleVisitor {
            type Value = SconeBundle;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence of scones")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SconeBundle, A::Error> {
                let mut bundle = SconeBundle::new();
                // Element by element, so a hostile length prefix cannot make us allocate.
                while let Some(scone) = seq.next_element::<Scone>()? {
                    bundle.insert_new(scone).map_err(serde::de::Error::custom)?;
                }
                Ok(bundle)
            }
        }

        deserializer.deserialize_seq(BundleVisitor)
    }
}
