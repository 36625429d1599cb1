//! Postcard framing for tarpc over TCP, with frame-size limits on both sides.
//!
//! tokio-serde ships no postcard format, so this is one: a few lines over its
//! `Serializer` / `Deserializer` traits. Frames are length-delimited; a frame over the
//! limit is refused by the codec (the connection is closed, since the stream cannot be
//! resynchronised), and a frame that does not decode fails that connection only.

use std::io;
use std::marker::PhantomData;
use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tarpc::serde_transport::Transport;
use tarpc::{ClientMessage, Response};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::envelope::{RequestEnvelope, ResponseEnvelope};

/// Default largest frame: room for a bundle of SCONEs and a body.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 1024 * 1024;

/// A tokio-serde format that reads `Item`s and writes `SinkItem`s with postcard.
pub struct Postcard<Item, SinkItem>(PhantomData<fn(SinkItem) -> Item>);

impl<Item, SinkItem> Default for Postcard<Item, SinkItem> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<Item: DeserializeOwned, SinkItem> tokio_serde::Deserializer<Item>
    for Postcard<Item, SinkItem>
{
    type Error = io::Error;

    fn deserialize(self: Pin<&mut Self>, src: &BytesMut) -> Result<Item, io::Error> {
        postcard::from_bytes(src).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

impl<Item, SinkItem: Serialize> tokio_serde::Serializer<SinkItem> for Postcard<Item, SinkItem> {
    type Error = io::Error;

    fn serialize(self: Pin<&mut Self>, item: &SinkItem) -> Result<Bytes, io::Error> {
        // Most messages (a request or reply with a SCONE or two) fit at once: no regrowth.
        postcard::to_extend(item, Vec::with_capacity(1024))
            .map(Bytes::from)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
    }
}

/// The server's end of a connection.
pub type ServerTransport = Transport<
    TcpStream,
    ClientMessage<RequestEnvelope>,
    Response<ResponseEnvelope>,
    Postcard<ClientMessage<RequestEnvelope>, Response<ResponseEnvelope>>,
>;

/// The client's end of a connection.
pub type ClientTransport = Transport<
    TcpStream,
    Response<ResponseEnvelope>,
    ClientMessage<RequestEnvelope>,
    Postcard<Response<ResponseEnvelope>, ClientMessage<RequestEnvelope>>,
>;

fn framed(stream: TcpStream, max_frame_bytes: usize) -> Framed<TcpStream, LengthDelimitedCodec> {
    // Small request/reply messages: send them now rather than wait to coalesce.
    let _ = stream.set_nodelay(true);
    let codec = LengthDelimitedCodec::builder()
        .max_frame_length(max_frame_bytes)
        .new_codec();
    Framed::new(stream, codec)
}

/// Wraps an accepted connection for a server.
pub fn server_transport(stream: TcpStream, max_frame_bytes: usize) -> ServerTransport {
    tarpc::serde_transport::new(framed(stream, max_frame_bytes), Postcard::default())
}

/// Wraps a connected stream for a client.
pub fn client_transport(stream: TcpStream, max_frame_bytes: usize) -> ClientTransport {
    tarpc::serde_transport::new(framed(stream, max_frame_bytes), Postcard::default())
}
