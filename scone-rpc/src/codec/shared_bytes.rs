//! Byte strings that point into the frame they were decoded from.
//!
//! serde gives a `Deserialize` impl no context, so the frame being decoded is kept in a
//! thread-local for the length of one [`decode`] call. A byte string borrowed from inside
//! that frame becomes a slice of it (a reference count, no copy); any other (another
//! format, or a decoder that does not lend its input) is copied, so these types decode
//! correctly anywhere.

use std::cell::RefCell;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

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
pub fn deserialize<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
    deserializer.deserialize_bytes(SharedVisitor)
}

/// Encodes a byte string (for `#[serde(serialize_with)]`).
pub fn serialize<S: serde::Serializer>(bytes: &Bytes, serializer: S) -> Result<S::Ok, S::Error> {
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

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::codec::shared_bytes;

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
        let decoded: Message = decode(frame.clone()).unwrap();
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

    #[test]
    fn a_garbled_frame_is_an_error_and_leaves_no_frame_behind() {
        assert!(decode::<Message>(Bytes::from_static(&[0xff; 3])).is_err());
        assert_eq!(current_frame_len(), None);
        let frame = Bytes::from(postcard::to_stdvec(&7u32).unwrap());
        assert_eq!(decode::<u32>(frame).unwrap(), 7);
        assert_eq!(current_frame_len(), None);
    }
}
