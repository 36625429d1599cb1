//! A tarpc transport: postcard messages in length-delimited frames over any byte stream.

use std::io;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures::{Sink, Stream};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tarpc::{ClientMessage, Response};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use super::frame::FrameCodec;
use super::{invalid_data, shared_bytes};
use crate::envelope::{RequestEnvelope, ResponseEnvelope};

pin_project_lite::pin_project! {
    /// A tarpc transport: postcard messages in length-delimited frames over `Io` (any
    /// `AsyncRead + AsyncWrite`: a TCP or TLS stream, or an in-memory duplex). Reads
    /// `Item`s, decoded without copying their byte strings, and writes `SinkItem`s.
    pub struct Transport<Io, Item, SinkItem> {
        #[pin]
        frames: Framed<Io, FrameCodec>,
        _types: PhantomData<fn(SinkItem) -> Item>,
    }
}

impl<Io, Item, SinkItem> Transport<Io, Item, SinkItem> {
    /// Frames `io`, reading and writing frames of at most `max_frame_bytes`.
    ///
    /// Socket options are the caller's: for TCP, set `TCP_NODELAY` (small requests and
    /// replies should go out at once), as [`server_transport`] and the client's `connect`
    /// functions do.
    pub fn new(io: Io, max_frame_bytes: usize) -> Self
    where
        Io: AsyncRead + AsyncWrite,
    {
        Self {
            frames: Framed::new(io, FrameCodec::new(max_frame_bytes)),
            _types: PhantomData,
        }
    }

    /// The stream under the frames.
    pub fn get_ref(&self) -> &Io {
        self.frames.get_ref()
    }

    /// Whether part of a frame has arrived and the rest has not.
    pub(crate) fn frame_in_progress(&self) -> bool {
        self.frames.codec().in_progress()
    }

    /// Length of the last whole frame read.
    pub(crate) fn last_frame_len(&self) -> usize {
        self.frames.codec().last_len()
    }
}

impl<Io: AsyncRead, Item: DeserializeOwned, SinkItem> Stream for Transport<Io, Item, SinkItem> {
    type Item = io::Result<Item>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(match ready!(self.project().frames.poll_next(cx)) {
            Some(Ok(frame)) => Some(shared_bytes::decode(frame.freeze()).map_err(invalid_data)),
            Some(Err(error)) => Some(Err(error)),
            None => None,
        })
    }
}

impl<Io: AsyncWrite, Item, SinkItem: Serialize> Sink<SinkItem> for Transport<Io, Item, SinkItem> {
    type Error = io::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Sink::<SinkItem>::poll_ready(self.project().frames, cx)
    }

    fn start_send(self: Pin<&mut Self>, item: SinkItem) -> io::Result<()> {
        self.project().frames.start_send(item)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Sink::<SinkItem>::poll_flush(self.project().frames, cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Sink::<SinkItem>::poll_close(self.project().frames, cx)
    }
}

/// The server's end of a connection over `Io` (TCP unless said otherwise).
pub type ServerTransport<Io = TcpStream> =
    Transport<Io, ClientMessage<RequestEnvelope>, Response<ResponseEnvelope>>;

/// The client's end of a connection over `Io` (TCP unless said otherwise).
pub type ClientTransport<Io = TcpStream> =
    Transport<Io, Response<ResponseEnvelope>, ClientMessage<RequestEnvelope>>;

/// Wraps an accepted TCP connection for a server, with `TCP_NODELAY` set.
pub fn server_transport(stream: TcpStream, max_frame_bytes: usize) -> ServerTransport {
    // Small request/reply messages: send them now rather than wait to coalesce.
    let _ = stream.set_nodelay(true);
    Transport::new(stream, max_frame_bytes)
}

/// Wraps a connected TCP stream for a client, with `TCP_NODELAY` set.
pub fn client_transport(stream: TcpStream, max_frame_bytes: usize) -> ClientTransport {
    let _ = stream.set_nodelay(true);
    Transport::new(stream, max_frame_bytes)
}
