//! This relay's peers: their links, opened on first use and again after one is lost, and
//! their order for a key (rendezvous hashing).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use scone::ClientId;
use tokio::runtime::Handle;

use super::link::{LinkError, MeshLink};
use super::MeshSecret;
use crate::store::HoldKey;

/// One peer relay.
#[derive(Debug)]
pub(crate) struct Peer {
    /// Its mesh address: also its name in the rendezvous hash.
    pub(crate) addr: SocketAddr,
    /// Its open link; held while connecting, so one connect at a time.
    link: tokio::sync::Mutex<Option<MeshLink>>,
    /// Whether its last connect or call failed: logged when it changes, not per call.
    down: AtomicBool,
}

impl Peer {
    /// Notes how a connect or call went, logging when the peer goes down or comes back.
    fn note(&self, failure: Option<&LinkError>) {
        match failure {
            Some(error) if !self.down.swap(true, Ordering::Relaxed) => {
                tracing::warn!(peer = %self.addr, %error, "peer relay unreachable: copies and queries go to the others until it answers again");
            }
            None if self.down.swap(false, Ordering::Relaxed) => {
                tracing::info!(peer = %self.addr, "peer relay answers again");
            }
            _ => {}
        }
    }
}

/// Every peer, and how to reach them.
#[derive(Debug)]
pub(crate) struct Peers {
    /// The peers, in the order configured.
    peers: Vec<Peer>,
    /// Proves this relay is of the mesh.
    secret: MeshSecret,
    /// Bound of each connect, handshake and call.
    pub(crate) timeout: Duration,
    /// Where links' dispatch tasks run: the relay's runtime, not a listener worker's.
    runtime: Handle,
}

impl Peers {
    pub(crate) fn new(
        addrs: &[SocketAddr],
        secret: MeshSecret,
        timeout: Duration,
        runtime: Handle,
    ) -> Self {
        let peers = addrs
            .iter()
            .map(|&addr| Peer {
                addr,
                link: tokio::sync::Mutex::new(None),
                down: AtomicBool::new(false),
            })
            .collect();
        Self {
            peers,
            secret,
            timeout,
            runtime,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// The peers in `key`'s rendezvous order: highest score of hash(peer, client,
    /// service) first. The first r are its owners.
    pub(crate) fn ranked(&self, key: &HoldKey) -> Vec<&Peer> {
        let mut ranked: Vec<(u64, &Peer)> = self
            .peers
            .iter()
            .map(|peer| (score(peer.addr, &key.0, key.1.as_str()), peer))
            .collect();
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.addr.cmp(&b.1.addr)));
        ranked.into_iter().map(|(_, peer)| peer).collect()
    }

    /// Runs `call` on `peer`'s link, opening it first if needed; a link that fails on
    /// the way is dropped, to be opened again next time.
    pub(crate) async fn call<T, F, Fut>(&self, peer: &Peer, call: F) -> Result<T, LinkError>
    where
        F: FnOnce(MeshLink) -> Fut,
        Fut: std::future::Future<Output = Result<T, LinkError>>,
    {
        let link = {
            let mut held = peer.link.lock().await;
            match &*held {
                Some(link) => link.clone(),
                None => {
                    let (addr, secret, timeout) = (peer.addr, self.secret.clone(), self.timeout);
                    let opened = self
                        .runtime
                        .spawn(async move { MeshLink::connect(addr, &secret, timeout).await })
                        .await
                        .map_err(|error| LinkError::Unreachable(std::io::Error::other(error)))
                        .and_then(|opened| opened);
                    let opened = match opened {
                        Ok(opened) => opened,
                        Err(error) => {
                            peer.note(Some(&error));
                            return Err(error);
                        }
                    };
                    *held = Some(opened.clone());
                    opened
                }
            }
        };
        let result = call(link).await;
        match &result {
            Err(error @ LinkError::Call(_)) => {
                peer.note(Some(error));
                *peer.link.lock().await = None;
            }
            // A refusal is an answer: the peer is up.
            _ => peer.note(None),
        }
        result
    }
}

fn score(addr: SocketAddr, client: &ClientId, service: &str) -> u64 {
    let mut hasher = blake3::Hasher::new();
    hasher
        .update(addr.to_string().as_bytes())
        .update(&[0])
        .update(client.as_bytes())
        .update(service.as_bytes());
    let hash = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash.as_bytes()[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use scone::ServiceId;

    use super::*;

    #[tokio::test]
    async fn the_order_is_stable_and_spreads_keys() {
        let addrs: Vec<SocketAddr> = (1..=3)
            .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
            .collect();
        let peers = Peers::new(
            &addrs,
            MeshSecret::from_bytes([1; 32]),
            Duration::from_secs(1),
            Handle::current(),
        );
        let key = |byte| {
            (
                ClientId::from_bytes([byte; 16]),
                ServiceId::new("cart").unwrap(),
            )
        };
        let first = |byte| peers.ranked(&key(byte))[0].addr;
        assert_eq!(first(1), first(1));
        assert_eq!(peers.ranked(&key(1)).len(), 3);
        let owners: std::collections::HashSet<_> = (0..32).map(first).collect();
        assert!(owners.len() > 1, "every key landed on one peer");
    }
}
