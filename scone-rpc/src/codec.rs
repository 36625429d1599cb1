//! Postcard framing for tarpc over any byte stream, with frame-size limits on both sides.
//!
//! Frames are length-delimited; a frame over the limit is refused by the codec (the
//! connection is closed, since the stream cannot be resynchronised), and a frame that does
//! not decode fails that connection only.
//!
//! [`Transport`] reads each frame into one buffer and decodes it *in place*: the byte
//! strings of an envelope (its SCONEs and body) are slices of that frame, not copies (see
//! [`shared_bytes`]). Whatever keeps such a slice for long should copy it out, as
//! [`SconeCache`](scone::SconeCache) does, or it keeps the whole frame alive. It runs over
//! any `AsyncRead + AsyncWrite` stream: TCP, TLS (see [`tls`](crate::tls)), or an
//! in-memory `tokio::io::duplex`.
//!
//! [`Postcard`] is the same format for tarpc's own `serde_transport`, whose decoder only
//! lends out each frame, so byte strings are copied.
//!
//! # Layout
//! - `frame`: the length-delimited frame codec (reads whole frames, writes messages
//!   straight into the write buffer).
//! - [`Transport`]: a tarpc transport of postcard messages in those frames, over any stream.
//! - [`shared_bytes`]: byte strings decoded as slices of their frame.
//! - [`Postcard`]: the format as a tokio-serde codec, for tarpc's `serde_transport`.
//! - [`to_exact_bytes`]: postcard into a buffer of exactly the message's size.

mod encode;
mod frame;
mod postcard_format;
pub mod shared_bytes;
mod transport;

use std::io;

pub use encode::to_exact_bytes;
pub use postcard_format::Postcard;
pub use transport::{
    client_transport, server_transport, ClientTransport, ServerTransport, Transport,
};

/// Default largest frame: room for a bundle of SCONEs and a body.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 1024 * 1024;

fn invalid_data(error: postcard::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error)
}

fn invalid_input(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, error)
}
