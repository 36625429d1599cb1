//! A second implementation of the SCONE format, written from `FORMAT.md` section by
//! section with blake3, ed25519-dalek and chacha20poly1305 alone: it encodes, hashes,
//! signs, seals, decodes and verifies, and shares no code with the crate.

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use ed25519_dalek::Signer;

pub type Digest = [u8; 32];

// § 3, contexts.
pub const CLAIMS_DIGEST: &str = "scone 2026-11-21 claims digest v1";
pub const LEAF: &str = "scone 2026-11-22 leaf v2";
pub const NODE: &str = "scone 2026-11-21 node v1";
pub const EMPTY_NODE: &str = "scone 2026-11-21 empty node v1";
pub const KEY_ID: &str = "scone 2026-11-21 key id v1";
pub const ISSUER_TAG_KEY: &str = "scone 2026-11-21 issuer tag key v1";
pub const SEALED_STATE: &str = "scone 2026-11-25 sealed state v1";

/// § 3, hash keys: derived once from a context with empty key material.
pub fn hash_key(context: &str) -> Digest {
    blake3::derive_key(context, b"")
}

pub fn empty_node() -> Digest {
    blake3::derive_key(EMPTY_NODE, b"")
}

// § 4, keys.
pub fn public_key(seed: &[u8; 32]) -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(seed)
        .verifying_key()
        .to_bytes()
}

pub fn key_id(public_key: &[u8; 32]) -> [u8; 8] {
    blake3::derive_key(KEY_ID, public_key)[..8]
        .try_into()
        .unwrap()
}

pub fn tag_key(seed: &[u8; 32]) -> Digest {
    blake3::derive_key(ISSUER_TAG_KEY, seed)
}

pub fn sealing_key(seed: &[u8; 32]) -> Digest {
    blake3::derive_key(SEALED_STATE, seed)
}

// § 1, building blocks: postcard's varints and byte strings.
pub fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

pub fn byte_string(out: &mut Vec<u8>, bytes: &[u8]) {
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// The claims of one SCONE, as numbers and bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    pub key_id: [u8; 8],
    pub service: String,
    pub endpoint: [u8; 16],
    pub object: u64,
    pub status: u64,
    pub version: u64,
    pub issued_at_ms: u64,
    pub expires_at_ms: u64,
    pub state_format: u64,
    pub sealed: bool,
    pub state: Vec<u8>,
}

// § 2, layout: the claims.
pub fn encode_claims(claims: &Claims) -> Vec<u8> {
    let mut out = vec![1];
    byte_string(&mut out, &claims.key_id);
    byte_string(&mut out, claims.service.as_bytes());
    byte_string(&mut out, &claims.endpoint);
    for value in [
        claims.object,
        claims.status,
        claims.version,
        claims.issued_at_ms,
        claims.expires_at_ms,
        claims.state_format,
    ] {
        varint(&mut out, value);
    }
    out.push(u8::from(claims.sealed));
    byte_string(&mut out, &claims.state);
    out
}

// § 5, digests.
pub fn claims_digest(claims: &[u8]) -> Digest {
    *blake3::keyed_hash(&hash_key(CLAIMS_DIGEST), claims).as_bytes()
}

pub fn leaf_digest(claims_digest: &Digest, index: u32) -> Digest {
    let mut input = claims_digest.to_vec();
    input.extend_from_slice(&index.to_le_bytes());
    *blake3::keyed_hash(&hash_key(LEAF), &input).as_bytes()
}

pub fn node_digest(left: &Digest, right: &Digest) -> Digest {
    let mut input = left.to_vec();
    input.extend_from_slice(right);
    *blake3::keyed_hash(&hash_key(NODE), &input).as_bytes()
}

/// § 5, the Merkle tree: the root over `leaves`, and each leaf's siblings, bottom up.
pub fn tree(leaves: &[Digest]) -> (Digest, Vec<Vec<Digest>>) {
    let depth = leaves.len().next_power_of_two().trailing_zeros();
    let mut paths = vec![Vec::new(); leaves.len()];
    let mut level = leaves.to_vec();
    for _ in 0..depth {
        if level.len() % 2 == 1 {
            level.push(empty_node());
        }
        for (leaf, path) in paths.iter_mut().enumerate() {
            let position = leaf >> path.len();
            path.push(level[position ^ 1]);
        }
        level = level
            .chunks_exact(2)
            .map(|pair| node_digest(&pair[0], &pair[1]))
            .collect();
    }
    (level[0], paths)
}

/// § 5, folding a path: from a leaf up its path to the root.
pub fn root_from_path(leaf: Digest, index: u32, siblings: &[Digest]) -> Digest {
    let mut node = leaf;
    for (level, sibling) in siblings.iter().enumerate() {
        node = if index >> level & 1 == 0 {
            node_digest(&node, sibling)
        } else {
            node_digest(sibling, &node)
        };
    }
    node
}

/// § 5, the signature: RFC 8032 Ed25519 over the 32 root bytes.
pub fn sign(seed: &[u8; 32], root: &Digest) -> [u8; 64] {
    ed25519_dalek::SigningKey::from_bytes(seed)
        .sign(root)
        .to_bytes()
}

/// § 6, the issuer tag.
pub fn tag(
    tag_key: &Digest,
    claims_digest: &Digest,
    index: u32,
    siblings: &[Digest],
    signature: &[u8; 64],
) -> Digest {
    let mut input = claims_digest.to_vec();
    input.extend_from_slice(&index.to_le_bytes());
    siblings.iter().for_each(|s| input.extend_from_slice(s));
    input.extend_from_slice(signature);
    *blake3::keyed_hash(tag_key, &input).as_bytes()
}

/// § 2, layout: the seal.
pub fn encode_seal(
    tag: Option<&Digest>,
    index: u32,
    siblings: &[Digest],
    signature: &[u8; 64],
) -> Vec<u8> {
    let mut out = Vec::new();
    match tag {
        None => out.push(0),
        Some(tag) => {
            out.push(1);
            byte_string(&mut out, tag);
        }
    }
    varint(&mut out, u64::from(index));
    byte_string(&mut out, &siblings.concat());
    byte_string(&mut out, signature);
    out
}

/// § 7, sealed state: the associated data.
pub fn aad(service: &str, endpoint: &[u8; 16], object: u64, version: u64) -> Vec<u8> {
    let mut out = vec![service.len() as u8];
    out.extend_from_slice(service.as_bytes());
    out.extend_from_slice(endpoint);
    out.extend_from_slice(&object.to_le_bytes());
    out.extend_from_slice(&version.to_le_bytes());
    out
}

/// § 7, sealed state: nonce | ciphertext | tag.
pub fn seal_state(seed: &[u8; 32], nonce: &[u8; 24], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let cipher = XChaCha20Poly1305::new(Key::from_slice(&sealing_key(seed)));
    let mut ciphertext = plaintext.to_vec();
    let tag = cipher
        .encrypt_in_place_detached(XNonce::from_slice(nonce), aad, &mut ciphertext)
        .unwrap();
    [&nonce[..], &ciphertext, &tag].concat()
}

/// A decoded SCONE.
#[derive(Debug)]
pub struct Decoded {
    pub claims: Claims,
    pub claims_len: usize,
    pub tag: Option<Digest>,
    pub index: u32,
    pub siblings: Vec<Digest>,
    pub signature: [u8; 64],
}

/// Reads the canonical encoding, refusing anything else (§ 8, canonical form).
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

type Read<T> = Result<T, &'static str>;

impl Reader<'_> {
    fn byte(&mut self) -> Read<u8> {
        let byte = *self.bytes.get(self.at).ok_or("malformed")?;
        self.at += 1;
        Ok(byte)
    }

    /// A varint of at most `bits` bits, in its shortest form.
    fn varint(&mut self, bits: u32) -> Read<u64> {
        let mut value = 0u64;
        for shift in (0..).step_by(7) {
            if shift >= bits {
                return Err("malformed");
            }
            let byte = self.byte()?;
            let part = u64::from(byte & 0x7f);
            if shift > 0 && byte == 0 {
                return Err("malformed"); // overlong: a final zero group
            }
            if shift + 7 > bits && part >> (bits - shift) != 0 {
                return Err("malformed"); // beyond `bits`
            }
            value |= part << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        unreachable!()
    }

    fn take(&mut self, len: usize) -> Read<&[u8]> {
        let end = self.at.checked_add(len).ok_or("malformed")?;
        let slice = self.bytes.get(self.at..end).ok_or("malformed")?;
        self.at = end;
        Ok(slice)
    }

    fn byte_string(&mut self) -> Read<&[u8]> {
        let len = self.varint(32)? as usize;
        self.take(len)
    }

    fn fixed<const N: usize>(&mut self) -> Read<[u8; N]> {
        self.byte_string()?.try_into().map_err(|_| "malformed")
    }

    fn boolean(&mut self) -> Read<bool> {
        match self.byte()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err("malformed"),
        }
    }
}

/// § 2 and 8, decoding: every check, in order; the error is the verdict code.
pub fn decode(bytes: &[u8], max_bytes: usize) -> Read<Decoded> {
    match bytes.first() {
        None => return Err("malformed"),
        Some(_) if bytes.len() > max_bytes => return Err("too-large"),
        Some(&version) if version != 1 => return Err("unsupported-version"),
        Some(_) => {}
    }
    let mut r = Reader { bytes, at: 1 };
    let key_id = r.fixed::<8>()?;
    let service = std::str::from_utf8(r.byte_string()?).map_err(|_| "malformed")?;
    let service_ok = (1..=128).contains(&service.len())
        && service
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._-/:".contains(&c));
    if !service_ok {
        return Err("malformed");
    }
    let service = service.to_owned();
    let endpoint = r.fixed::<16>()?;
    let object = r.varint(64)?;
    let status = r.varint(32)?;
    if status > 3 {
        return Err("malformed");
    }
    let version = r.varint(64)?;
    let issued_at_ms = r.varint(64)?;
    let expires_at_ms = r.varint(64)?;
    let state_format = r.varint(64)?;
    if state_format > 2 {
        return Err("malformed");
    }
    let sealed = r.boolean()?;
    let state = r.byte_string()?.to_vec();
    let claims_len = r.at;
    let tag = match r.byte()? {
        0 => None,
        1 => Some(r.fixed::<32>()?),
        _ => return Err("malformed"),
    };
    let index = r.varint(32)? as u32;
    let siblings: Vec<Digest> = {
        let bytes = r.byte_string()?;
        if bytes.len() % 32 != 0 || bytes.len() / 32 > 16 {
            return Err("malformed");
        }
        bytes
            .chunks_exact(32)
            .map(|c| c.try_into().unwrap())
            .collect()
    };
    if u64::from(index) >> siblings.len() != 0 {
        return Err("malformed");
    }
    let signature = r.fixed::<64>()?;
    if r.at != bytes.len() {
        return Err("malformed"); // exactly one SCONE per byte string
    }
    Ok(Decoded {
        claims: Claims {
            key_id,
            service,
            endpoint,
            object,
            status,
            version,
            issued_at_ms,
            expires_at_ms,
            state_format,
            sealed,
            state,
        },
        claims_len,
        tag,
        index,
        siblings,
        signature,
    })
}

/// A trusted public key and the services it signs for.
pub struct Trusted {
    pub public_key: [u8; 32],
    pub services: Vec<String>,
}

/// § 9, decoding and verifying: the verdict code for `bytes`, checked in the documented order.
pub fn verdict(
    bytes: &[u8],
    trusted: &[Trusted],
    service: Option<&str>,
    now_ms: u64,
    clock_skew_ms: u64,
) -> &'static str {
    let decoded = match decode(bytes, 64 * 1024) {
        Ok(decoded) => decoded,
        Err(code) => return code,
    };
    let claims = &decoded.claims;
    if service.is_some_and(|service| service != claims.service) {
        return "wrong-service";
    }
    if claims.issued_at_ms > now_ms.saturating_add(clock_skew_ms) {
        return "not-yet-valid";
    }
    if now_ms.saturating_sub(clock_skew_ms) >= claims.expires_at_ms {
        return "expired";
    }
    let Some(key) = trusted
        .iter()
        .find(|t| key_id(&t.public_key) == claims.key_id)
    else {
        return "unknown-key";
    };
    if !key.services.contains(&claims.service) {
        return "unknown-key";
    }
    let digest = claims_digest(&bytes[..decoded.claims_len]);
    let root = root_from_path(
        leaf_digest(&digest, decoded.index),
        decoded.index,
        &decoded.siblings,
    );
    let Ok(public) = ed25519_dalek::VerifyingKey::from_bytes(&key.public_key) else {
        return "unknown-key";
    };
    let signature = ed25519_dalek::Signature::from_bytes(&decoded.signature);
    match public.verify_strict(&root, &signature) {
        Ok(()) => "valid",
        Err(_) => "bad-signature",
    }
}
