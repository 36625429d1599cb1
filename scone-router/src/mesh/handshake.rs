//! Mutual challenge-response at connect: each end proves it holds the mesh secret with a
//! keyed blake3 MAC over both ends' fresh nonces, before any request is read.
//!
//! Acceptor sends `n_a`; connector answers `n_c ‖ MAC(secret, "client", n_a, n_c)`;
//! acceptor checks it and answers `MAC(secret, "server", n_c, n_a)`, which the connector
//! checks. Fresh nonces on both sides make a recorded exchange useless on a new
//! connection; the MACs are compared in constant time (`blake3::Hash`'s `==`).

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::MeshSecret;

const CLIENT: &[u8] = b"scone-mesh v1 client";
const SERVER: &[u8] = b"scone-mesh v1 server";

fn mac(secret: &MeshSecret, role: &[u8], first: &[u8; 32], second: &[u8; 32]) -> blake3::Hash {
    let mut hasher = blake3::Hasher::new_keyed(secret.bytes());
    hasher.update(role).update(first).update(second);
    hasher.finalize()
}

fn nonce() -> io::Result<[u8; 32]> {
    let mut bytes = [0; 32];
    getrandom::fill(&mut bytes).map_err(io::Error::other)?;
    Ok(bytes)
}

fn refused() -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        "the peer did not prove it holds the mesh secret",
    )
}

async fn bounded<T>(
    limit: Duration,
    step: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    tokio::time::timeout(limit, step)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "mesh handshake timed out"))?
}

/// The accepting end: fails unless the peer proves it holds `secret` within `limit`.
pub(crate) async fn accept<Io>(io: &mut Io, secret: &MeshSecret, limit: Duration) -> io::Result<()>
where
    Io: AsyncRead + AsyncWrite + Unpin,
{
    bounded(limit, async {
        let ours = nonce()?;
        io.write_all(&ours).await?;
        let mut answer = [0u8; 64];
        io.read_exact(&mut answer).await?;
        let (theirs, tag) = answer.split_at(32);
        let theirs: [u8; 32] = theirs.try_into().map_err(io::Error::other)?;
        let tag: [u8; 32] = tag.try_into().map_err(io::Error::other)?;
        if mac(secret, CLIENT, &ours, &theirs) != blake3::Hash::from(tag) {
            return Err(refused());
        }
        io.write_all(mac(secret, SERVER, &theirs, &ours).as_bytes())
            .await?;
        io.flush().await
    })
    .await
}

/// The connecting end: fails unless the peer proves it holds `secret` within `limit`.
pub(crate) async fn connect<Io>(io: &mut Io, secret: &MeshSecret, limit: Duration) -> io::Result<()>
where
    Io: AsyncRead + AsyncWrite + Unpin,
{
    bounded(limit, async {
        let mut theirs = [0u8; 32];
        io.read_exact(&mut theirs).await?;
        let ours = nonce()?;
        let mut answer = [0u8; 64];
        answer[..32].copy_from_slice(&ours);
        answer[32..].copy_from_slice(mac(secret, CLIENT, &theirs, &ours).as_bytes());
        io.write_all(&answer).await?;
        io.flush().await?;
        let mut tag = [0u8; 32];
        io.read_exact(&mut tag).await?;
        if mac(secret, SERVER, &ours, &theirs) != blake3::Hash::from(tag) {
            return Err(refused());
        }
        Ok(())
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(server: MeshSecret, client: MeshSecret) -> (io::Result<()>, io::Result<()>) {
        let (mut a, mut b) = tokio::io::duplex(256);
        let limit = Duration::from_secs(5);
        tokio::join!(
            async move { accept(&mut a, &server, limit).await },
            async move { connect(&mut b, &client, limit).await },
        )
    }

    #[tokio::test]
    async fn only_holders_of_the_same_secret_complete_it() {
        let secret = MeshSecret::from_bytes([7; 32]);
        let (server, client) = run(secret.clone(), secret.clone()).await;
        assert!(server.is_ok() && client.is_ok());
        let (server, client) = run(secret, MeshSecret::from_bytes([8; 32])).await;
        assert_eq!(server.unwrap_err().kind(), io::ErrorKind::PermissionDenied);
        assert!(client.is_err());
    }
}
