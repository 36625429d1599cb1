//! The example services of the SCONE toolkit, shared by the example binaries and tests.
//!
//! # Layout
//! - [`cart`]: a shopping cart whose servers keep no per-client state.
//! - [`tiers`]: a wallet front-end over a ledger back-end; the client holds both states.

pub mod cart;
pub mod tiers;
