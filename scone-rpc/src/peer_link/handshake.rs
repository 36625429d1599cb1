//! Mutual challenge-response at connect: each end proves it holds the link secret with a
//! keyed blake3 MAC over both ends' fresh nonces, before any request is read.
//!
//! # Wire format
//! With `L` the protocol's label (UTF-8, e.g. `scone-mesh v1`) and
//! `MAC(role, x, y) = blake3::keyed_hash(secret, L ‖ role ‖ x ‖ y)`:
//!
//! 1. the acceptor sends its nonce `n_a` (32 bytes);
//! 2. the connector answers `n_c ‖ MAC(" client", n_a, n_c)` (32 + 32 bytes);
//! 3. the acceptor checks it and answers `MAC(" server", n_c, n_a)` (32 bytes), which
//!    the connector checks.
//!
//! Nothing else is sent, so the stream then carries the peers' own protocol. Fresh
//! nonces on both sides make a recorded exchange useless on a new connection; the MACs
//! are compared in constant time (`blake3::Hash`'s `==`). The label and role are
//! followed by exactly 64 bytes of nonces and the two roles have the same length, so no
//! (label, role) pair's MAC input is another's: a peer of one label cannot answer for
//! another, nor a connector for an acceptor.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{LinkKeys, LinkSecret};

const CLIENT: &[u8] = b" client";
const SERVER: &[u8] = b" server";
/// The roles of the keys that seal messages after the handshake (never sent), the same
/// length as the proofs' roles.
const CLIENT_TO_SERVER: &[u8] = b" c-to-s";
const SERVER_TO_CLIENT: &[u8] = b" s-to-c";

/// The two directions' keys for the link whose nonces were `n_a` (the acceptor's) and
/// `n_c`.
fn directions(
    secret: &LinkSecret,
    label: &str,
    n_a: &[u8; 32],
    n_c: &[u8; 32],
) -> ([u8; 32], [u8; 32]) {
    (
        *mac(secret, label, CLIENT_TO_SERVER, n_a, n_c).as_bytes(),
        *mac(secret, label, SERVER_TO_CLIENT, n_a, n_c).as_bytes(),
    )
}

fn mac(
    secret: &LinkSecret,
    label: &str,
    role: &[u8],
    first: &[u8; 32],
    second: &[u8; 32],
) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new_keyed(secret.bytes());
    hasher
        .update(label.as_bytes())
        .update(role)
        .update(first)
        .update(second);
    hasher.finalize()
}

fn nonce() -> io::Result<[u8; 32]> {
    let mut bytes = [0; 32];
    getrandom::fill(&mut bytes).map_err(io::Error::other)?;
    Ok(bytes)
}

fn refused(label: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("the peer did not prove it holds the {label} secret"),
    )
}

async fn bounded<T>(
    label: &str,
    limit: Duration,
    step: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    tokio::time::timeout(limit, step).await.map_err(|_| {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{label} handshake timed out"),
        )
    })?
}

/// The accepting end of the handshake on `io`: returns once the peer has proved it holds
/// `secret` for `label` (and has been given this end's proof), all within `limit`, with
/// this end's keys for sealing the link's messages (which a protocol may use or not).
///
/// # Errors
/// [`PermissionDenied`](io::ErrorKind::PermissionDenied) if the peer's proof is wrong (a
/// different secret or label), [`TimedOut`](io::ErrorKind::TimedOut) past `limit`, or
/// the stream's own error (a peer that hung up: `UnexpectedEof`). Then drop the stream.
pub async fn accept<Io>(
    io: &mut Io,
    secret: &LinkSecret,
    label: &str,
    limit: Duration,
) -> io::Result<LinkKeys>
where
    Io: AsyncRead + AsyncWrite + Unpin,
{
    bounded(label, limit, async {
        let ours = nonce()?;
        io.write_all(&ours).await?;
        let mut answer = [0u8; 64];
        io.read_exact(&mut answer).await?;
        let (theirs, tag) = answer.split_at(32);
        let theirs: [u8; 32] = theirs.try_into().map_err(io::Error::other)?;
        let tag: [u8; 32] = tag.try_into().map_err(io::Error::other)?;
        if mac(secret, label, CLIENT, &ours, &theirs) != blake3::Hash::from(tag) {
            return Err(refused(label));
        }
        io.write_all(mac(secret, label, SERVER, &theirs, &ours).as_bytes())
            .await?;
        io.flush().await?;
        let (client_to_server, server_to_client) = directions(secret, label, &ours, &theirs);
        Ok(LinkKeys::new(server_to_client, client_to_server))
    })
    .await
}

/// The connecting end of the handshake on `io`: returns once the peer has proved it
/// holds `secret` for `label`, within `limit`, with this end's keys for sealing the
/// link's messages.
///
/// # Errors
/// As [`accept`]'s.
pub async fn connect<Io>(
    io: &mut Io,
    secret: &LinkSecret,
    label: &str,
    limit: Duration,
) -> io::Result<LinkKeys>
where
    Io: AsyncRead + AsyncWrite + Unpin,
{
    bounded(label, limit, async {
        let mut theirs = [0u8; 32];
        io.read_exact(&mut theirs).await?;
        let ours = nonce()?;
        let mut answer = [0u8; 64];
        answer[..32].copy_from_slice(&ours);
        answer[32..].copy_from_slice(mac(secret, label, CLIENT, &theirs, &ours).as_bytes());
        io.write_all(&answer).await?;
        io.flush().await?;
        let mut tag = [0u8; 32];
        io.read_exact(&mut tag).await?;
        if mac(secret, label, SERVER, &ours, &theirs) != blake3::Hash::from(tag) {
            return Err(refused(label));
        }
        let (client_to_server, server_to_client) = directions(secret, label, &theirs, &ours);
        Ok(LinkKeys::new(client_to_server, server_to_client))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    const LABEL: &str = "scone-mesh v1";

    async fn run(
        server: (LinkSecret, &str),
        client: (LinkSecret, &str),
    ) -> (io::Result<LinkKeys>, io::Result<LinkKeys>) {
        let (mut a, mut b) = tokio::io::duplex(256);
        let limit = Duration::from_secs(5);
        tokio::join!(
            async move { accept(&mut a, &server.0, server.1, limit).await },
            async move { connect(&mut b, &client.0, client.1, limit).await },
        )
    }

    #[tokio::test]
    async fn only_holders_of_the_same_secret_complete_it() {
        let secret = LinkSecret::from_bytes([7; 32]);
        let (server, client) = run((secret.clone(), LABEL), (secret.clone(), LABEL)).await;
        assert!(server.is_ok() && client.is_ok());
        let (server, client) = run((secret, LABEL), (LinkSecret::from_bytes([8; 32]), LABEL)).await;
        assert_eq!(server.unwrap_err().kind(), io::ErrorKind::PermissionDenied);
        assert!(client.is_err());
    }

    #[tokio::test]
    async fn the_same_secret_under_another_label_is_refused() {
        let secret = LinkSecret::from_bytes([7; 32]);
        let (server, client) = run((secret.clone(), LABEL), (secret, "scone-cluster v1")).await;
        assert_eq!(server.unwrap_err().kind(), io::ErrorKind::PermissionDenied);
        assert!(client.is_err());
    }

    /// The MACs are the relay mesh's v1 handshake's, byte for byte: its roles were the
    /// whole strings `scone-mesh v1 client` / `scone-mesh v1 server`.
    #[test]
    fn the_mesh_label_gives_the_mesh_v1_macs() {
        let secret = LinkSecret::from_bytes([3; 32]);
        let (first, second) = ([1; 32], [2; 32]);
        for (role, whole) in [
            (CLIENT, &b"scone-mesh v1 client"[..]),
            (SERVER, &b"scone-mesh v1 server"[..]),
        ] {
            let mut v1 = blake3::Hasher::new_keyed(&[3; 32]);
            v1.update(whole).update(&first).update(&second);
            assert_eq!(mac(&secret, LABEL, role, &first, &second), v1.finalize());
        }
    }

    #[tokio::test]
    async fn the_wire_is_n_a_then_n_c_and_tag_then_tag() {
        let secret = LinkSecret::from_bytes([5; 32]);
        let (mut ours, mut peer) = tokio::io::duplex(256);
        let limit = Duration::from_secs(5);
        let acceptor = {
            let secret = secret.clone();
            tokio::spawn(async move { accept(&mut ours, &secret, LABEL, limit).await })
        };
        // The connector's side by hand, as the mesh v1 format says.
        let mut n_a = [0u8; 32];
        peer.read_exact(&mut n_a).await.unwrap();
        let n_c = [9u8; 32];
        let mut answer = n_c.to_vec();
        answer.extend_from_slice(mac(&secret, LABEL, CLIENT, &n_a, &n_c).as_bytes());
        peer.write_all(&answer).await.unwrap();
        let mut tag = [0u8; 32];
        peer.read_exact(&mut tag).await.unwrap();
        assert_eq!(
            blake3::Hash::from(tag),
            mac(&secret, LABEL, SERVER, &n_c, &n_a)
        );
        acceptor.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn each_end_opens_what_the_other_sealed_and_not_its_own() {
        let secret = LinkSecret::from_bytes([7; 32]);
        let (server, client) = run((secret.clone(), LABEL), (secret, LABEL)).await;
        let (mut server_seal, mut server_open) = server.unwrap().split();
        let (mut client_seal, mut client_open) = client.unwrap().split();
        let up = client_seal.seal(b"request");
        assert!(server_open.open(b"request", &up).is_ok());
        let down = server_seal.seal(b"answer");
        assert!(client_open.open(b"answer", &down).is_ok());
        // Another link's keys (fresh nonces) open nothing of this one's.
        let secret = LinkSecret::from_bytes([7; 32]);
        let (other, _) = run((secret.clone(), LABEL), (secret, LABEL)).await;
        let (_, mut other_open) = other.unwrap().split();
        let mut client_seal_again = client_seal;
        let next = client_seal_again.seal(b"request");
        assert!(other_open.open(b"request", &next).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_times_out() {
        let (mut a, _b) = tokio::io::duplex(256);
        let secret = LinkSecret::from_bytes([7; 32]);
        let error = accept(&mut a, &secret, LABEL, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }
}
