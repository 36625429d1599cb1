//! Postcard encoding into buffers: an exact-size `Bytes`, or appended to a write buffer.

use bytes::{BufMut, Bytes, BytesMut};
use serde::Serialize;

/// `value` encoded with postcard into a buffer of exactly its size: a `Bytes` made from it
/// needs no second allocation (as one made from a partly filled buffer does).
pub fn to_exact_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Bytes, postcard::Error> {
    let size = postcard::serialize_with_flavor(value, postcard::ser_flavors::Size::default())?;
    let encoded = postcard::to_extend(value, Vec::with_capacity(size))?;
    Ok(Bytes::from(encoded))
}

/// A postcard output that appends to a connection's write buffer.
pub(super) struct AppendTo<'a>(pub(super) &'a mut BytesMut);

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
