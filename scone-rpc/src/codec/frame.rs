//! Length-delimited frames: a 4-byte big-endian length, then the frame, limited in size.

use std::io;

use bytes::{BufMut, BytesMut};
use serde::Serialize;
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

use super::encode::AppendTo;
use super::invalid_input;

/// Length-delimited postcard frames: reads whole frames, and writes each message straight
/// into the write buffer, length first.
pub(super) struct FrameCodec {
    /// Reads frames and enforces the size limit on them.
    frames: LengthDelimitedCodec,
    /// Largest frame written.
    max_frame_bytes: usize,
    /// Whether part of a frame has been read and the rest has not: the peer owes us bytes.
    /// What a server times slow senders by.
    in_progress: bool,
    /// Length of the last whole frame read: what a server charges the request it carried.
    last_len: usize,
}

impl FrameCodec {
    pub(super) fn new(max_frame_bytes: usize) -> Self {
        Self {
            frames: LengthDelimitedCodec::builder()
                .max_frame_length(max_frame_bytes)
                .new_codec(),
            max_frame_bytes,
            in_progress: false,
            last_len: 0,
        }
    }

    /// Whether a frame has started arriving and not finished.
    pub(super) fn in_progress(&self) -> bool {
        self.in_progress
    }

    /// Length of the last whole frame read (0 before the first).
    pub(super) fn last_len(&self) -> usize {
        self.last_len
    }
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> io::Result<Option<BytesMut>> {
        // The inner codec consumes a frame's length as soon as it has it, so "bytes are
        // buffered" alone would miss a frame whose length has come but no data yet: a
        // frame is in progress from any call that finds bytes but no whole frame.
        let found_bytes = !src.is_empty();
        let frame = self.frames.decode(src)?;
        match &frame {
            Some(frame) => {
                self.in_progress = false;
                self.last_len = frame.len();
            }
            None if found_bytes => self.in_progress = true,
            None => {}
        }
        Ok(frame)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_written_length_first_and_read_back() {
        let mut codec = FrameCodec::new(1024);
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
        let mut codec = FrameCodec::new(16);
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
    fn a_frame_is_in_progress_from_its_first_byte_to_its_last() {
        let mut codec = FrameCodec::new(1024);
        let mut whole = BytesMut::new();
        codec.encode(vec![9u8; 10], &mut whole).unwrap();
        let mut wire = BytesMut::new();
        assert!(codec.decode(&mut wire).unwrap().is_none());
        assert!(!codec.in_progress(), "nothing read, nothing owed");
        for (index, byte) in whole.iter().enumerate() {
            wire.put_u8(*byte);
            let frame = codec.decode(&mut wire).unwrap();
            if index + 1 < whole.len() {
                assert!(frame.is_none() && codec.in_progress(), "byte {index}");
                // The length is consumed once whole: still in progress with nothing buffered.
                assert!(codec.decode(&mut wire).unwrap().is_none() && codec.in_progress());
            } else {
                assert_eq!(frame.unwrap().len(), whole.len() - 4);
                assert!(!codec.in_progress());
                assert_eq!(codec.last_len(), whole.len() - 4);
            }
        }
        assert!(codec.decode(&mut wire).unwrap().is_none() && !codec.in_progress());
    }
}
