//! A connection to one peer: connect, prove the secret, then call with a deadline.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use scone::{ClientId, Scone, ServiceId};
use scone_rpc::codec::{Transport, DEFAULT_MAX_FRAME_BYTES};
use tarpc::client::RpcError;
use tokio::net::TcpStream;

use super::wire::{Copy, MeshClient, MeshError};
use super::{MeshSecret, HANDSHAKE_LABEL};

/// Why a call to a peer failed. Retry policy: [`Unreachable`](Self::Unreachable) and
/// [`Call`](Self::Call) are the link's fault (try another peer; the link is dropped and
/// opened again on next use); [`Refused`](Self::Refused) is the peer's answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// No connection, or the peer did not prove it holds the mesh secret.
    #[error("could not open an authenticated link to the peer")]
    Unreachable(#[source] io::Error),
    /// The call failed on the way (connection lost, deadline passed).
    #[error("the call to the peer failed")]
    Call(#[from] RpcError),
    /// The peer answered with a refusal.
    #[error("the peer refused")]
    Refused(#[from] MeshError),
}

/// An authenticated connection to one peer relay; cloning shares it.
#[derive(Clone, Debug)]
pub struct MeshLink {
    /// The tarpc client; its dispatch task runs where the link was opened.
    client: MeshClient,
    /// Every call's deadline.
    timeout: Duration,
}

impl MeshLink {
    /// Connects to the peer at `addr` and proves, both ways, that each end holds
    /// `secret`; connecting, the handshake and every later call get `timeout` each.
    pub async fn connect(
        addr: SocketAddr,
        secret: &MeshSecret,
        timeout: Duration,
    ) -> Result<Self, LinkError> {
        let mut stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))
            .and_then(|connected| connected)
            .map_err(LinkError::Unreachable)?;
        let _ = stream.set_nodelay(true);
        scone_rpc::peer_link::connect(&mut stream, secret, HANDSHAKE_LABEL, timeout)
            .await
            .map_err(LinkError::Unreachable)?;
        let transport = Transport::new(stream, DEFAULT_MAX_FRAME_BYTES);
        let client = MeshClient::new(tarpc::client::Config::default(), transport).spawn();
        Ok(Self { client, timeout })
    }

    fn context(&self) -> tarpc::context::Context {
        let mut ctx = tarpc::context::current();
        ctx.deadline = std::time::Instant::now() + self.timeout;
        ctx
    }

    /// Asks the peer to keep a copy of `scone` for `client`.
    pub async fn store(&self, client: ClientId, scone: &Scone) -> Result<(), LinkError> {
        let copy = Copy {
            client: *client.as_bytes(),
            scone: scone.encoded().to_vec(),
        };
        Ok(self.client.store(self.context(), copy).await??)
    }

    /// The SCONE the peer holds for (`client`, `service`), encoded and unverified.
    pub async fn query(
        &self,
        client: ClientId,
        service: &ServiceId,
    ) -> Result<Option<Vec<u8>>, LinkError> {
        let ctx = self.context();
        Ok(self
            .client
            .query(ctx, *client.as_bytes(), service.clone())
            .await?)
    }

    /// Asks the peer to drop `refused` if it holds that very version for `client`.
    pub async fn forget(&self, client: ClientId, refused: &Scone) -> Result<bool, LinkError> {
        let copy = Copy {
            client: *client.as_bytes(),
            scone: refused.encoded().to_vec(),
        };
        Ok(self.client.forget(self.context(), copy).await?)
    }
}
