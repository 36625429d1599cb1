//! What peers send each other: numbered calls and their answers, as postcard messages
//! in `scone-rpc`'s length-delimited frames, after a preamble that names the protocol.
//! With a cluster secret each message is sealed (`scone_rpc::peer_link::LinkKeys`), so
//! what arrives on the link is what the peer sent, in the order it sent it.

use std::io;
use std::time::Duration;

use scone_rpc::peer_link::{OpeningKey, SealingKey, Tag};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::replica::{CopyItem, ReplicaRefusal, SessionCopy};
use crate::session::SessionId;

/// What a connecting node writes first, so a node of another protocol version (or a
/// stray client) is told apart at once rather than by a frame that fails to decode.
pub(super) const PREAMBLE: &[u8; 16] = b"scone-cluster/4\n";

/// A call to a peer; its answer carries the same `id`.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Call {
    pub id: u64,
    pub ask: Ask,
}

/// What a call asks.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Ask {
    /// Keep each of these copies (see `Replica::accept_item`); an answer for each, in order.
    Copies(Vec<CopyItem>),
    /// What the peer holds of the session, from its own store.
    Fetch(SessionId),
    /// Drop the session (it was ended); whether it was held.
    Delete(SessionId),
}

/// The answer to call `id`.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Answer {
    pub id: u64,
    pub reply: Reply,
}

/// What a peer answers, one variant per [`Ask`].
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Reply {
    Copies(Vec<Result<(), ReplicaRefusal>>),
    Fetch(Option<SessionCopy>),
    Delete(bool),
}

/// One frame: a message (postcard), with its tag on a sealed link.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Frame {
    tag: Option<Tag>,
    #[serde(with = "serde_bytes")]
    message: Vec<u8>,
}

impl Frame {
    /// `message` in a frame, sealed with `key` if the link is sealed.
    pub fn seal(message: &impl Serialize, key: Option<&mut SealingKey>) -> io::Result<Self> {
        let message = postcard::to_allocvec(message).map_err(io::Error::other)?;
        Ok(Self {
            tag: key.map(|key| key.seal(&message)),
            message,
        })
    }

    /// The message in the frame, if its tag is the one `key` expects (and it has none on
    /// a link that is not sealed).
    pub fn open<T: DeserializeOwned>(self, key: Option<&mut OpeningKey>) -> io::Result<T> {
        match (key, &self.tag) {
            (Some(key), Some(tag)) => key
                .open(&self.message, tag)
                .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?,
            (None, None) => {}
            (Some(_), None) => return Err(invalid("a frame without a tag on a sealed link")),
            (None, Some(_)) => return Err(invalid("a sealed frame on a link that is not")),
        }
        postcard::from_bytes(&self.message).map_err(|error| invalid(error.to_string()))
    }
}

fn invalid(reason: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, reason.into())
}

/// Writes the preamble.
pub(super) async fn write_preamble(
    stream: &mut (impl AsyncWrite + Unpin),
    timeout: Duration,
) -> io::Result<()> {
    tokio::time::timeout(timeout, stream.write_all(PREAMBLE))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "writing the preamble timed out"))?
}

/// Reads the preamble; an error if it is not ours.
pub(super) async fn read_preamble(
    stream: &mut (impl AsyncRead + Unpin),
    timeout: Duration,
) -> io::Result<()> {
    let mut preamble = [0; PREAMBLE.len()];
    tokio::time::timeout(timeout, stream.read_exact(&mut preamble))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no preamble in time"))??;
    if &preamble != PREAMBLE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "expected the preamble {:?}, read {:?}: another version of the peer protocol, or not a cluster node",
                String::from_utf8_lossy(PREAMBLE),
                String::from_utf8_lossy(&preamble),
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::{SinkExt, StreamExt};
    use scone::{Draft, EndpointId, KeyRing, Minter, ServiceId, SigningKey};
    use scone_rpc::codec::{Transport, DEFAULT_MAX_FRAME_BYTES};
    use scone_rpc::peer_link::{self, LinkSecret, OpeningKey, SealingKey};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::replica::{CopyItem, Replica};
    use crate::store::SessionStore;
    use crate::transport::tcp::{serve_peers_with_secret, HANDSHAKE_LABEL};

    const LIMIT: Duration = Duration::from_secs(10);

    type Link = (Transport<TcpStream, Frame, Frame>, SealingKey, OpeningKey);

    /// A sealed link to `peer`, opened by hand.
    async fn sealed_link(peer: std::net::SocketAddr, secret: &LinkSecret) -> Link {
        let mut stream = TcpStream::connect(peer).await.unwrap();
        write_preamble(&mut stream, LIMIT).await.unwrap();
        let keys = peer_link::connect(&mut stream, secret, HANDSHAKE_LABEL, LIMIT)
            .await
            .unwrap();
        let (sealing, opening) = keys.split();
        let frames = Transport::new(stream, DEFAULT_MAX_FRAME_BYTES);
        (frames, sealing, opening)
    }

    /// The peer's next answer on `link`, or `None` once it has closed the link.
    async fn next_answer(link: &mut Link) -> Option<Answer> {
        let (frames, _, opening) = link;
        match tokio::time::timeout(LIMIT, frames.next()).await.unwrap() {
            Some(Ok(frame)) => Some(frame.open(Some(opening)).unwrap()),
            Some(Err(_)) | None => None,
        }
    }

    /// What the MACs are for: a message altered on the way (here, for another
    /// well-formed call, whose copy is signed and would be kept), or an honest one
    /// replayed, is never answered nor kept, and the link is closed (after answering
    /// the calls before it, which were carried out).
    #[tokio::test]
    async fn an_altered_or_replayed_frame_on_a_sealed_link_is_not_taken() {
        let service = ServiceId::new("cart").unwrap();
        let key = SigningKey::generate().unwrap();
        let keys = KeyRing::for_service(service.clone(), [key.public_key()]).unwrap();
        let replica = Replica::new(SessionStore::new(10), keys);
        let secret = LinkSecret::from_bytes([1; 32]);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(serve_peers_with_secret(
            listener,
            replica.clone(),
            secret.clone(),
            LIMIT,
            stopped,
        ));
        let copy_of = |endpoint: u8| {
            let scone = Minter::new(key.clone())
                .mint(Draft::new(
                    service.clone(),
                    EndpointId::from_bytes([endpoint; 16]),
                ))
                .unwrap();
            Call {
                id: u64::from(endpoint),
                ask: Ask::Copies(vec![CopyItem::Whole(SessionCopy::without_lineage(&scone))]),
            }
        };

        // Sealed honestly: answered and kept.
        let mut link = sealed_link(peer, &secret).await;
        let honest = Frame::seal(&copy_of(1), Some(&mut link.1)).unwrap();
        let replay = Frame {
            tag: honest.tag,
            message: honest.message.clone(),
        };
        // The same frame again right behind it, in one write: a replay. The first call's
        // answer still comes (it was carried out), then the link is closed.
        link.0.feed(honest).await.unwrap();
        link.0.feed(replay).await.unwrap();
        link.0.flush().await.unwrap();
        let answer = next_answer(&mut link)
            .await
            .expect("the honest call's answer");
        assert!(matches!(answer.reply, Reply::Copies(ref kept) if kept == &[Ok(())]));
        assert_eq!(replica.store().len(), 1);
        assert!(
            next_answer(&mut link).await.is_none(),
            "a replay is not answered"
        );

        // Altered: another call's message under the tag sealed for the first.
        let mut link = sealed_link(peer, &secret).await;
        let mut altered = Frame::seal(&copy_of(2), Some(&mut link.1)).unwrap();
        altered.message = postcard::to_allocvec(&copy_of(3)).unwrap();
        link.0.send(altered).await.unwrap();
        assert!(
            next_answer(&mut link).await.is_none(),
            "an altered call is not answered"
        );
        assert_eq!(replica.store().len(), 1, "nor is what it carries kept");

        let _ = stop.send(());
        tokio::time::timeout(LIMIT, served)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}
