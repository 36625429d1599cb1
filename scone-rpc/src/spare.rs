//! Spare byte buffers, kept per thread between requests.
//!
//! A request that changes its state fills two buffers: the snapshots of the fields it
//! borrows and the new state's encoding, which travels in the draft until its SCONE is
//! minted. Both come back here when done with, on the worker thread that signed them (a
//! thread signs its own requests' drafts), so a warm worker encodes states without
//! allocating.

use std::cell::RefCell;

/// Most buffers kept per thread: about one per request a thread has in flight.
const MAX_SPARE_BUFFERS: usize = 64;

/// Largest buffer kept; a bigger one (a huge state) is freed rather than held.
const MAX_SPARE_CAPACITY: usize = 64 * 1024;

thread_local! {
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer with room for at least `capacity` bytes.
pub(crate) fn take(capacity: usize) -> Vec<u8> {
    let mut buffer = SPARE
        .try_with(|spare| spare.borrow_mut().pop())
        .ok()
        .flatten()
        .unwrap_or_default();
    buffer.reserve(capacity);
    buffer
}

/// Keeps `buffer` for a later [`take`] on this thread, unless enough are kept already.
pub(crate) fn give_back(mut buffer: Vec<u8>) {
    if buffer.capacity() == 0 || buffer.capacity() > MAX_SPARE_CAPACITY {
        return;
    }
    buffer.clear();
    // `try_with`: a buffer dropped while its thread exits finds the slot gone.
    let _ = SPARE.try_with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < MAX_SPARE_BUFFERS {
            spare.push(buffer);
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
    fn at_most_a_bounded_number_are_kept() {
        for _ in 0..MAX_SPARE_BUFFERS * 2 {
            give_back(Vec::with_capacity(16));
        }
        let kept = SPARE.with(|spare| spare.borrow().len());
        assert_eq!(kept, MAX_SPARE_BUFFERS);
    }
}
