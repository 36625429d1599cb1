//! The mesh secret: `scone_rpc`'s peer-link secret under the mesh's name, and its errors
//! as the relay's config errors.

use scone_rpc::peer_link::{LinkSecret, LinkSecretError};

use crate::error::ConfigError;

/// The key that proves a peer belongs to the mesh (`--mesh-secret-file`): 32 random
/// bytes, written as 64 hex digits or in base64 (standard or URL-safe, padded or not).
/// Make one with `head -c 32 /dev/urandom | base64`. Never printed: its `Debug` hides it;
/// wiped from memory on drop.
///
/// It is [`scone_rpc::peer_link::LinkSecret`], the secret of every SCONE peer link; the
/// mesh's links prove it under their own label (`scone-mesh v1`). Reading one fails with
/// a [`LinkSecretError`], which converts into the [`ConfigError`] the relay's settings
/// report (`Read` and [`MeshSecret`](ConfigError::MeshSecret)).
pub type MeshSecret = LinkSecret;

impl From<LinkSecretError> for ConfigError {
    fn from(error: LinkSecretError) -> Self {
        match error {
            LinkSecretError::Read { path, source } => ConfigError::Read { path, source },
            _ => ConfigError::MeshSecret,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_errors_become_the_config_errors_they_were() {
        let missing = std::path::Path::new("/nonexistent/scone-mesh.secret");
        let error = ConfigError::from(MeshSecret::load(missing).unwrap_err());
        assert!(matches!(error, ConfigError::Read { path, .. } if path == missing));
        let error = ConfigError::from("short".parse::<MeshSecret>().unwrap_err());
        assert!(matches!(error, ConfigError::MeshSecret));
    }
}
