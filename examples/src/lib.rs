//! The example services of the SCONE toolkit, shared by the example binaries and tests.
//!
//! # Layout
//! - [`cart`]: a shopping cart whose servers keep no per-client state.
//! - [`tiers`]: a wallet front-end over a ledger back-end; the client holds both states.
//! - [`procs`]: what the demos that run real processes share (build, start, kill).

pub mod cart;
pub mod procs;
pub mod tiers;
