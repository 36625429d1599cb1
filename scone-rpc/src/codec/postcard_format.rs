//! The wire format as a tokio-serde codec, for tarpc's own `serde_transport`.

use std::io;
use std::marker::PhantomData;
use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{invalid_data, invalid_input};

/// Room for an outgoing message given to tokio-serde: most (a request or reply with a
/// SCONE or two) fit at once, with no regrowth.
const MESSAGE_CAPACITY: usize = 1024;

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
