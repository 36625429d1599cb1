//! Sessions and the routing token that names where one lives.

use std::net::SocketAddr;

use scone::{EndpointId, ObjectId, Scone, ServiceId};
use serde::{Deserialize, Serialize};

use crate::lineage::{descends_from, Ballot, Lineage, VersionId};

/// One session's identity: what every version of its SCONE keeps unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SessionId {
    /// The service the state belongs to.
    pub service: ServiceId,
    /// The client session.
    pub endpoint: EndpointId,
    /// The server object within the session.
    pub object: ObjectId,
}

impl SessionId {
    /// The session `scone` is a version of.
    pub fn of(scone: &Scone) -> Self {
        Self {
            service: scone.service().clone(),
            endpoint: scone.endpoint(),
            object: scone.object(),
        }
    }
}

/// `cart/<endpoint>/<object>`, as logs name a session.
impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.service, self.endpoint, self.object)
    }
}

/// What a reply tells the client instead of handing it the state (the envelope's
/// `token`): which session, which version, and which nodes hold it (seed 003's token:
/// the primary that served it and the secondaries that acknowledged a copy).
///
/// The client sends it back with its next request, to the primary; if the primary does
/// not answer, to a secondary, which then serves as the new primary. It carries no
/// state and no secret: a node serves only the SCONE its cluster holds for the session,
/// verified, and at least as new as the token's version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingToken {
    /// The session.
    pub session: SessionId,
    /// The version the reply was made from: a node never serves an older one.
    pub version: u64,
    /// The first 16 bytes of the blake3 hash of that version's SCONE: a node that holds
    /// another SCONE of the same version (left by an attempt the client gave up on)
    /// does not take it for this one.
    pub digest: [u8; 16],
    /// The node that served the request (its client address).
    pub primary: SocketAddr,
    /// The nodes that acknowledged a copy before the reply (their client addresses).
    pub secondaries: Vec<SocketAddr>,
    /// Copies the cluster asks for; fewer `secondaries` means the reply went out with
    /// degraded durability (only when the cluster is set to reply anyway).
    pub required: u16,
    /// Set by the client, not the node: how many requests it sent with this token
    /// before this one (0 in a reply). A [`ClusterChannel`](crate::ClusterChannel)
    /// numbers every attempt, failovers and calls after a failure alike, so that of two
    /// changes made from this version the later request's wins (see [`Ballot`]).
    pub attempt: u32,
}

/// The first byte of an encoded token: its format.
const TOKEN_FORMAT: u8 = 2;
/// The format before [`RoutingToken::attempt`]: still read, as attempt 0.
const TOKEN_FORMAT_1: u8 = 1;

/// A token of [`TOKEN_FORMAT_1`]: the fields of format 2 but the attempt.
type TokenV1 = (SessionId, u64, [u8; 16], SocketAddr, Vec<SocketAddr>, u16);

/// The digest a token keeps of the SCONE it names.
pub fn digest(scone: &Scone) -> [u8; 16] {
    let hash = blake3::hash(scone.encoded());
    let mut digest = [0; 16];
    digest.copy_from_slice(&hash.as_bytes()[..16]);
    digest
}

/// Why bytes are not a routing token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Empty, or a format this build does not read.
    #[error("not a routing token of format {TOKEN_FORMAT}")]
    Format,
    /// The body does not decode.
    #[error("the routing token does not decode")]
    Decode(#[source] postcard::Error),
}

impl RoutingToken {
    /// The token's bytes: a format byte, then postcard.
    pub fn encode(&self) -> Box<[u8]> {
        let mut bytes = vec![TOKEN_FORMAT];
        // Encoding plain data into a Vec cannot fail.
        bytes = postcard::to_extend(self, bytes).unwrap_or_else(|_| vec![TOKEN_FORMAT]);
        bytes.into_boxed_slice()
    }

    /// The token `bytes` encode.
    pub fn decode(bytes: &[u8]) -> Result<Self, TokenError> {
        match bytes.split_first() {
            Some((&TOKEN_FORMAT, body)) => postcard::from_bytes(body).map_err(TokenError::Decode),
            Some((&TOKEN_FORMAT_1, body)) => {
                let (session, version, digest, primary, secondaries, required): TokenV1 =
                    postcard::from_bytes(body).map_err(TokenError::Decode)?;
                Ok(Self {
                    session,
                    version,
                    digest,
                    primary,
                    secondaries,
                    required,
                    attempt: 0,
                })
            }
            _ => Err(TokenError::Format),
        }
    }

    /// The ballot of a request that carries this token.
    pub fn ballot(&self) -> Ballot {
        Ballot {
            acknowledged: self.version_id(),
            attempt: self.attempt,
        }
    }

    /// The version the token names.
    pub fn version_id(&self) -> VersionId {
        VersionId {
            version: self.version,
            digest: self.digest,
        }
    }

    /// Whether `version` of this session (whose ancestors are `lineage`) is the version
    /// this token names or a later one of its line: not just any higher number, which
    /// could be another line that lacks what the client was acknowledged.
    pub fn is_served_by(&self, version: VersionId, lineage: &Lineage) -> bool {
        descends_from(version, lineage, self.version_id())
    }

    /// Whether fewer nodes than required acknowledged a copy.
    pub fn is_degraded(&self) -> bool {
        self.secondaries.len() < usize::from(self.required)
    }

    /// The nodes that hold the session, primary first.
    pub fn owners(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        std::iter::once(self.primary).chain(self.secondaries.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_round_trips_and_garbage_is_a_typed_error() {
        let token = RoutingToken {
            session: SessionId {
                service: ServiceId::new("cart").unwrap(),
                endpoint: EndpointId::from_bytes([3; 16]),
                object: ObjectId(0),
            },
            version: 7,
            digest: [9; 16],
            primary: "127.0.0.1:7001".parse().unwrap(),
            secondaries: vec!["127.0.0.1:7002".parse().unwrap()],
            required: 1,
            attempt: 3,
        };
        assert_eq!(RoutingToken::decode(&token.encode()).unwrap(), token);
        // A token of the format before the attempt reads as attempt 0.
        let v1 = (
            token.session.clone(),
            token.version,
            token.digest,
            token.primary,
            token.secondaries.clone(),
            token.required,
        );
        let mut old = vec![TOKEN_FORMAT_1];
        old = postcard::to_extend(&v1, old).unwrap();
        let read = RoutingToken::decode(&old).unwrap();
        assert_eq!(
            read,
            RoutingToken {
                attempt: 0,
                ..token.clone()
            }
        );
        assert!(!token.is_degraded());
        assert!(matches!(RoutingToken::decode(&[]), Err(TokenError::Format)));
        assert!(matches!(
            RoutingToken::decode(&[9, 1]),
            Err(TokenError::Format)
        ));
        assert!(matches!(
            RoutingToken::decode(&[TOKEN_FORMAT, 0xff]),
            Err(TokenError::Decode(_))
        ));
    }
}
