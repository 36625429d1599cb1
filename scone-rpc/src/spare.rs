//! Spare byte buffers, kept per thread between requests.
//!
//! A request that changes its state fills two buffers: the snapshots of the fields it
//! borrows and the new state's encoding, which travels in the draft until its SCONE is
//! minted. Both come back here when done with, on the worker thread that signed them (a
//! thread signs its own requests' drafts), so a warm worker encodes states without
//! allocating.

use std::cell::RefCell;

/// Most bytes of spare buffers kept per thread: a few dozen requests' worth of small
/// states, and never more than this however large the states are.
const MAX_SPARE_BYTES: usize = 256 * 1024;

/// Largest buffer kept; a bigger one (a huge state) is freed rather than held.
const MAX_SPARE_CAPACITY: usize = 64 * 1024;

/// One thread's spare buffers and their total capacity.
struct Spares {
    buffers: Vec<Vec<u8>>,
    bytes: usize,
}

thread_local! {
    static SPARE: RefCell<Spares> = const {
        RefCell::new(Spares {
            buffers: Vec::new(),
            bytes: 0,
        })
    };
}

/// An empty buffer with room for at least `capacity` bytes.
pub(crate) fn take(capacity: usize) -> Vec<u8> {
    let mut buffer = SPARE
        .try_with(|spare| {
            let mut spare = spare.borrow_mut();
            let buffer = spare.buffers.pop()?;
            spare.bytes -= buffer.capacity();
            Some(buffer)
        })
        .ok()
        .flatten()
        .unwrap_or_default();
    buffer.reserve(capacity);
    buffer
}

/// Keeps `buffer` for a later [`take`] on this thread, unless enough are kept already.
pub(crate) fn give_back(mut buffer: Vec<u8>) {
    let capacity = buffer.capacity();
    if capacity == 0 || capacity > MAX_SPARE_CAPACITY {
        return;
    }
    buffer.clear();
    // `try_with`: a buffer dropped while its thread exits finds the slot gone.
    let _ = SPARE.try_with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.bytes + capacity <= MAX_SPARE_BYTES {
            spare.bytes += capacity;
            spare.buffers.push(buffer);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_given_back_is_taken_again_empty() {
        let mut buffer = take(100);
        buffer.extend_from_slice(b"state");
        let address = buffer.as_ptr();
        give_back(buffer);
        let again = take(10);
        assert_eq!(again.as_ptr(), address, "the same allocation");
        assert!(again.is_empty() && again.capacity() >= 100);
    }

    #[test]
    fn huge_buffers_are_not_kept() {
        give_back(Vec::with_capacity(MAX_SPARE_CAPACITY + 1));
        assert!(take(0).capacity() <= MAX_SPARE_CAPACITY);
    }

    #[test]
    fn at_most_a_bounded_number_of_bytes_are_kept() {
        for _ in 0..2 * MAX_SPARE_BYTES / MAX_SPARE_CAPACITY {
            give_back(Vec::with_capacity(MAX_SPARE_CAPACITY));
        }
        let (kept, bytes) = SPARE.with(|spare| {
            let spare = spare.borrow();
            (spare.buffers.len(), spare.bytes)
        });
        assert_eq!(kept, MAX_SPARE_BYTES / MAX_SPARE_CAPACITY);
        assert!(bytes <= MAX_SPARE_BYTES);
        while take(0).capacity() > 0 {}
        assert_eq!(
            SPARE.with(|spare| spare.borrow().bytes),
            0,
            "taking counts down"
        );
    }
}
