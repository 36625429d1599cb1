//! The request side: which SCONE of the called service goes upstream, and the replay
//! guard.
//!
//! A request that carries no SCONE of the called service gets the newest one the relay
//! holds for (its client, that service). One that carries an *older* version of the
//! session the relay holds gets the newest in its place: the relay attaches the newest
//! rather than refusing with `stale`, because the client did nothing wrong by holding an
//! old copy (a thin client behind a relay usually holds none, and one that caches may
//! have missed a reply), and attaching keeps its session moving forward. Anything else it
//! carries (a newer version, another session, a SCONE that does not decode) goes on
//! untouched: the server verifies it and refuses it with a typed error if it must.

use scone::{Scone, ServiceId};
use scone_rpc::envelope::WireScones;

/// What [`attach`] did to a request's SCONEs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Attached {
    /// Nothing carried, nothing held: the request goes on without a SCONE of the service.
    Miss,
    /// Nothing carried: the held SCONE was attached.
    Hit(Scone),
    /// The request carried its own SCONE of the service, not older than the held one.
    Carried,
    /// The request carried an older version of the held session: replaced by the held.
    Replaced {
        /// The version the request carried.
        carried: u64,
        /// The held SCONE, now attached.
        held: Scone,
    },
}

impl Attached {
    /// The relay's own SCONE, if it went with the request.
    pub(crate) fn sent(&self) -> Option<&Scone> {
        match self {
            Attached::Hit(held) | Attached::Replaced { held, .. } => Some(held),
            Attached::Miss | Attached::Carried => None,
        }
    }
}

/// The SCONEs a request to `service` carries upstream, given those it `carried` and the
/// SCONE the relay `held` for its client, and what was done. Carried SCONEs are decoded
/// (parsed, not verified: the server verifies) only to find the called service's.
pub(crate) fn attach(
    carried: WireScones,
    service: &ServiceId,
    held: Option<Scone>,
    max_scone_bytes: usize,
) -> (WireScones, Attached) {
    let own = carried.iter().enumerate().find_map(|(at, bytes)| {
        let scone = Scone::decode_with_limit(bytes.clone(), max_scone_bytes).ok()?;
        (scone.service() == service).then_some((at, scone))
    });
    match (own, held) {
        (None, None) => (carried, Attached::Miss),
        (None, Some(held)) => {
            let mut scones = carried;
            scones.push(held.encoded().clone());
            (scones, Attached::Hit(held))
        }
        (Some((at, own)), Some(held))
            if same_session(&own, &held) && own.version() < held.version() =>
        {
            let scones = carried
                .into_encoded()
                .enumerate()
                .map(|(i, bytes)| {
                    if i == at {
                        held.encoded().clone()
                    } else {
                        bytes
                    }
                })
                .collect();
            let carried = own.version();
            (scones, Attached::Replaced { carried, held })
        }
        (Some(_), _) => (carried, Attached::Carried),
    }
}

fn same_session(a: &Scone, b: &Scone) -> bool {
    a.service() == b.service() && a.endpoint() == b.endpoint() && a.object() == b.object()
}

#[cfg(test)]
mod tests {
    use scone::{Draft, EndpointId, Minter, SigningKey, DEFAULT_MAX_SCONE_BYTES};

    use super::*;

    fn mint(service: &str, session: u8, version: u64) -> Scone {
        let draft = Draft::new(
            ServiceId::new(service).unwrap(),
            EndpointId::from_bytes([session; 16]),
        )
        .with_version(version);
        Minter::new(SigningKey::from_seed(&[1; 32]))
            .mint(draft)
            .unwrap()
    }

    fn run(carried: &[&Scone], held: Option<&Scone>) -> (Vec<(String, u64)>, Attached) {
        let carried = carried.iter().map(|s| s.encoded().clone()).collect();
        let cart = ServiceId::new("cart").unwrap();
        let (scones, attached) = attach(carried, &cart, held.cloned(), DEFAULT_MAX_SCONE_BYTES);
        let sent = scones
            .into_encoded()
            .map(|bytes| {
                let scone = Scone::decode(bytes).unwrap();
                (scone.service().to_string(), scone.version())
            })
            .collect();
        (sent, attached)
    }

    #[test]
    fn the_held_scone_is_attached_when_none_is_carried() {
        let held = mint("cart", 1, 4);
        let ledger = mint("ledger", 1, 9);
        let (sent, attached) = run(&[&ledger], Some(&held));
        assert_eq!(sent, [("ledger".into(), 9), ("cart".into(), 4)]);
        assert_eq!(attached, Attached::Hit(held));
        assert_eq!(run(&[], None), (vec![], Attached::Miss));
    }

    #[test]
    fn an_older_version_is_replaced_by_the_newest_held() {
        let held = mint("cart", 1, 4);
        let (sent, attached) = run(&[&mint("cart", 1, 2)], Some(&held));
        assert_eq!(sent, [("cart".into(), 4)]);
        assert_eq!(attached, Attached::Replaced { carried: 2, held });
    }

    #[test]
    fn a_newer_version_or_another_session_goes_on_untouched() {
        let held = mint("cart", 1, 4);
        for carried in [mint("cart", 1, 4), mint("cart", 1, 7), mint("cart", 2, 1)] {
            let (sent, attached) = run(&[&carried], Some(&held));
            assert_eq!(sent, [("cart".into(), carried.version())]);
            assert_eq!(attached, Attached::Carried);
        }
    }
}
