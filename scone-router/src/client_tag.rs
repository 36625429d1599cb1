//! Client IDs in logs: a short prefix, never the whole ID, which is a bearer secret.

use std::fmt;

use scone::ClientId;

/// Bytes of a client ID shown in logs: 4 of its 16, so 32 bits.
///
/// Enough to follow one client through the logs, and useless for impersonating it: the
/// other 96 bits stay secret.
const SHOWN_BYTES: usize = 4;

/// A client ID as the relay logs it: its first 4 bytes (8 hex digits), then `…`.
///
/// Whoever presents a client ID gets that client's state attached, so the whole ID must
/// never reach a log line; log `ClientTag(id)`, never `id`.
#[derive(Clone, Copy)]
pub struct ClientTag(pub ClientId);

impl fmt::Display for ClientTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in &self.0.as_bytes()[..SHOWN_BYTES] {
            write!(f, "{byte:02x}")?;
        }
        f.write_str("…")
    }
}

impl fmt::Debug for ClientTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientTag({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_prefix_is_shown() {
        let id = ClientId::from_bytes([0xab; 16]);
        assert_eq!(ClientTag(id).to_string(), "abababab…");
        assert_eq!(format!("{:?}", ClientTag(id)), "ClientTag(abababab…)");
        assert!(!ClientTag(id).to_string().contains(&id.to_string()));
    }
}
