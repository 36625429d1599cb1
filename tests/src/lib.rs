//! Integration tests of the SCONE toolkit live in `tests/`; this crate has no code of its own.
