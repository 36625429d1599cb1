//! Postcard framing for tarpc over TCP, with frame-size limits on both sides.
//!
//! Frames are length-delimited; a frame over the limit is refused by the codec (the
//! connection is closed, since the stream cannot be resynchronised), and a frame that does
//! not decode fails that connection only.
//!
//! [`Transport`] reads each frame into one buffer and decodes it *in place*: the byte
//! strings of an envelope (its SCONEs and body) are slices of that frame, not copies (see
//! [`shared_bytes`]). Whatever keeps such a slice for long should copy it out, as
//! [`SconeCache`](scone::SconeCache) does, or it keeps the whole frame alive.
//!
//! [`Postcard`] is the same format for tarpc's own `serde_transport`, whose decoder only
//! lends out each frame, so byte strings are copied.

use std::cell::RefCell;
use std::io;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use futures::{Sink, Stream};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tarpc::{ClientMessage, Response};
use tokio::net::TcpStream;
use tokio_util::codec::{Decoder, Encoder, Framed, LengthDelimitedCodec};

use crate::envelope::{RequestEnvelope, ResponseEnvelope};

/// Default largest frame: room for a bundle of SCONEs and a body.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 1024 * 1024;

/// Room for an outgoing message given to tokio-serde: most (a request or reply with a
/// SCONE or two) fit at once, with no regrowth.
const MESSAGE_CAPACITY: usize = 1024;

fn invalid_data(error: postcard::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

fn invalid_input(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, error)
}

/// `value` encoded with postcard into a buffer of exactly its size: a `Bytes` made from it
/// needs no second allocation (as one made from a partly filled buffer does).
pub fn to_exact_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, postcard::Error> {
    let size = postcard::serialize_with_flavor(value, postcard::ser_flavors::Size::default())?;
    let encoded = postcard::to_extend(value, Vec::with_capacity(size))?;
    Ok(Bytes::from(encoded))
}

/// A postcard output that appends to a connection's write buffer.
struct AppendTo<'a>(&'a mut BytesMut);

impl postcard::ser_flavors::Flavor for AppendTo<'_> {
    type Output = ();

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.put_u8(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Length-delimited postcard frames: reads whole frames (4-byte big-endian length, then
/// the frame), and writes each message straight into the write buffer, length first.
struct FrameCodec {
    /// Reads frames and enforces the size limit on them.
    frames: LengthDelimitedCodec,
    /// Largest frame written.
    max_frame_bytes: usize,
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<BytesMut>> {
        self.frames.decode(src)
    }
}

impl<T: Serialize> Encoder<T> for FrameCodec {
    type Error = io::Error;

    fn encode(&mut self, item: T, dst: &mut BytesMut) -> io::Result<()> {
        let start = dst.len();
        dst.put_u32(0);
        let written = postcard::serialize_with_flavor(&item, AppendTo(dst));
        let len = dst.len() - start - 4;
        let checked = match written {
            Err(error) => Err(invalid_input(error)),
            Ok(()) if len > self.max_frame_bytes => Err(invalid_input(format!(
                "message of {len} bytes is over the {} byte frame limit",
                self.max_frame_bytes
            ))),
            Ok(()) => u32::try_from(len).map_err(invalid_input),
        };
        match checked {
            Ok(len) => {
                dst[start..start + 4].copy_from_slice(&len.to_be_bytes());
                Ok(())
            }
            Err(error) => {
                // Nothing of a message that failed may reach the wire.
                dst.truncate(start);
                Err(error)
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// A tarpc transport: postcard messages in length-delimited frames over TCP. Reads
    /// `Item`s, decoded without copying their byte strings, and writes `SinkItem`s.
    pub struct Transport<Item, SinkItem> {
        #[pin]
        frames: Framed<TcpStream, FrameCodec>,
        _types: PhantomData<fn(SinkItem) -> Item>,
    }
}

impl<Item, SinkItem> Transport<Item, SinkItem> {
    fn new(stream: TcpStream, max_frame_bytes: usize) -> Self {
        // Small request/reply messages: send them now rather than wait to coalesce.
        let _ = stream.set_nodelay(true);
        let codec = FrameCodec {
            frames: LengthDelimitedCodec::builder()
                .max_frame_length(max_frame_bytes)
                .new_codec(),
            max_frame_bytes,
        };
        Self {
            frames: Framed::new(stream, codec),
            _types: PhantomData,
        }
    }
}

impl<Item: DeserializeOwned, SinkItem> Stream for Transport<Item, SinkItem> {
    type Item = io::Result<Item>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(match ready!(self.project().frames.poll_next(cx)) {
            Some(Ok(frame)) => Some(shared_bytes::decode(frame.freeze()).map_err(invalid_data)),
            Some(Err(error)) => Some(Err(error)),
            None => None,
        })
    }
}

impl<Item, SinkItem: Serialize> Sink<SinkItem> for Transport<Item, SinkItem> {
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

/// The server's end of a connection.
pub type ServerTransport = Transport<ClientMessage<RequestEnvelope>, Response<ResponseEnvelope>>;

/// The client's end of a connection.
pub type ClientTransport = Transport<Response<ResponseEnvelope>, ClientMessage<RequestEnvelope>>;

/// Wraps an accepted connection for a server.
pub fn server_transport(stream: TcpStream, max_frame_bytes: usize) -> ServerTransport {
    Transport::new(stream, max_frame_bytes)
}

/// Wraps a connected stream for a client.
pub fn client_transport(stream: TcpStream, max_frame_bytes: usize) -> ClientTransport {
    Transport::new(stream, max_frame_bytes)
}

/// A tokio-serde format that reads `Item`s and writes `SinkItem`s with postcard, for
/// tarpc's `serde_transport` (which copies byte strings out of each frame).
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
        postcard::from_bytes(src).map_err(invalid_data)
    }
}

impl<Item, SinkItem: Serialize> tokio_serde::Serializer<SinkItem> for Postcard<Item, SinkItem> {
    type Error = io::Error;

    fn serialize(self: Pin<&mut Self>, item: &SinkItem) -> Result<Bytes, io::Error> {
        postcard::to_extend(item, Vec::with_capacity(MESSAGE_CAPACITY))
            .map(Bytes::from)
            .map_err(invalid_input)
    }
}

/// Byte strings that point into the frame they were decoded from.
///
/// serde gives a `Deserialize` impl no context, so the frame being decoded is kept in a
/// thread-local for the length of one [`decode`](shared_bytes::decode) call. A byte string
/// borrowed from inside that frame becomes a slice of it (a reference count, no copy);
/// any other (another format, or a decoder that does not lend its input) is copied, so
/// these types decode correctly anywhere.
pub mod shared_bytes {
    use super::*;

    thread_local! {
        /// The frame [`decode`] is decoding on this thread, if any.
        static FRAME: RefCell<Option<Bytes>> = const { RefCell::new(None) };
    }

    /// Decodes a postcard message from `frame`, its byte strings slices of `frame`.
    pub fn decode<T: DeserializeOwned>(frame: Bytes) -> Result<T, postcard::Error> {
        // Restores the previous frame however decoding ends (a decoder may panic).
        struct Restore(Option<Bytes>);
        impl Drop for Restore {
            fn drop(&mut self) {
                let previous = self.0.take();
                FRAME.with(|frame| *frame.borrow_mut() = previous);
            }
        }
        let previous = FRAME.with(|current| current.borrow_mut().replace(frame.clone()));
        let _restore = Restore(previous);
        postcard::from_bytes(&frame)
    }

    /// How long the frame being decoded on this thread is, if one is.
    #[cfg(test)]
    pub(crate) fn current_frame_len() -> Option<usize> {
        FRAME.with(|frame| frame.borrow().as_ref().map(Bytes::len))
    }

    /// `bytes` as a slice of the frame being decoded, or a copy if it is not inside it.
    fn share(bytes: &[u8]) -> Bytes {
        let within = |frame: &Bytes| {
            let (outer, inner) = (frame.as_ptr_range(), bytes.as_ptr_range());
            !bytes.is_empty() && outer.start <= inner.start && inner.end <= outer.end
        };
        FRAME.with(|frame| match &*frame.borrow() {
            Some(frame) if within(frame) => frame.slice_ref(bytes),
            _ => Bytes::copy_from_slice(bytes),
        })
    }

    struct SharedVisitor;

    impl<'de> serde::de::Visitor<'de> for SharedVisitor {
        type Value = Bytes;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_borrowed_bytes<E: serde::de::Error>(self, bytes: &'de [u8]) -> Result<Bytes, E> {
            Ok(share(bytes))
        }

        fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Bytes, E> {
            Ok(Bytes::copy_from_slice(bytes))
        }

        fn visit_byte_buf<E: serde::de::Error>(self, bytes: Vec<u8>) -> Result<Bytes, E> {
            Ok(Bytes::from(bytes))
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
            // Formats that write byte strings as sequences; never trust the length hint.
            let mut bytes = Vec::new();
            while let Some(byte) = seq.next_element::<u8>()? {
                bytes.push(byte);
            }
            Ok(Bytes::from(bytes))
        }
    }

    /// Decodes a byte string as a slice of the frame (for `#[serde(deserialize_with)]`).
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Bytes, D::Error> {
        deserializer.deserialize_bytes(SharedVisitor)
    }

    /// Encodes a byte string (for `#[serde(serialize_with)]`).
    pub fn serialize<S: serde::Serializer>(
        bytes: &Bytes,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(bytes)
    }

    /// A byte string that decodes as a slice of its frame.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct Shared(pub Bytes);

    impl Serialize for Shared {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_bytes(&self.0)
        }
    }

    impl<'de> serde::Deserialize<'de> for Shared {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserialize(deserializer).map(Shared)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::shared_bytes::{self, Shared};
    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Message {
        number: u32,
        #[serde(with = "shared_bytes")]
        body: Bytes,
        list: Vec<Shared>,
    }

    #[test]
    fn byte_strings_are_slices_of_the_frame() {
        let message = Message {
            number: 7,
            body: Bytes::from_static(b"the body"),
            list: vec![Shared(Bytes::from_static(b"one")), Shared(Bytes::new())],
        };
        let frame = Bytes::from(postcard::to_stdvec(&message).unwrap());
        let decoded: Message = shared_bytes::decode(frame.clone()).unwrap();
        assert_eq!(decoded.number, 7);
        assert_eq!(decoded.body, "the body");
        assert_eq!(decoded.list, message.list);
        let inside = |bytes: &Bytes| frame.as_ptr_range().contains(&bytes.as_ptr());
        assert!(inside(&decoded.body) && inside(&decoded.list[0].0));
        // Outside a frame decode, the same types copy.
        let copied: Message = postcard::from_bytes(&frame).unwrap();
        assert_eq!(copied.body, "the body");
        assert!(!inside(&copied.body));
    }

    fn frame_codec(max_frame_bytes: usize) -> FrameCodec {
        FrameCodec {
            frames: LengthDelimitedCodec::builder()
                .max_frame_length(max_frame_bytes)
                .new_codec(),
            max_frame_bytes,
        }
    }

    #[test]
    fn frames_are_written_length_first_and_read_back() {
        let mut codec = frame_codec(1024);
        let mut wire = BytesMut::new();
        codec.encode((7u32, "seven"), &mut wire).unwrap();
        codec.encode((8u32, "eight"), &mut wire).unwrap();
        let first = postcard::to_stdvec(&(7u32, "seven")).unwrap();
        assert_eq!(wire[..4], (first.len() as u32).to_be_bytes());
        let frame = codec.decode(&mut wire).unwrap().unwrap();
        assert_eq!(
            postcard::from_bytes::<(u32, &str)>(&frame).unwrap(),
            (7, "seven")
        );
        let frame = codec.decode(&mut wire).unwrap().unwrap();
        assert_eq!(
            postcard::from_bytes::<(u32, &str)>(&frame).unwrap(),
            (8, "eight")
        );
        assert!(codec.decode(&mut wire).unwrap().is_none());
    }

    #[test]
    fn a_message_over_the_limit_is_an_error_and_writes_nothing() {
        let mut codec = frame_codec(16);
        let mut wire = BytesMut::new();
        codec.encode(1u8, &mut wire).unwrap();
        let before = wire.clone();
        let error = codec.encode(vec![0u8; 64], &mut wire).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            wire, before,
            "the frame before it is intact, nothing after it"
        );
    }

    #[test]
    fn a_garbled_frame_is_an_error_and_leaves_no_frame_behind() {
        assert!(shared_bytes::decode::<Message>(Bytes::from_static(&[0xff; 3])).is_err());
        assert_eq!(shared_bytes::current_frame_len(), None);
        let frame = Bytes::from(postcard::to_stdvec(&7u32).unwrap());
        assert_eq!(shared_bytes::decode::<u32>(frame).unwrap(), 7);
        assert_eq!(shared_bytes::current_frame_len(), None);
    }
}
