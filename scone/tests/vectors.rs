//! The published test vectors (`tests/vectors.json`), recomputed from `FORMAT.md` alone.
//!
//! The `recipe` module below is a second implementation of the format, written from
//! `FORMAT.md` step by step with blake3, ed25519-dalek and chacha20poly1305 directly and
//! none of the crate's helpers: it encodes, hashes, signs, seals, decodes and verifies.
//! The test checks that it, the vector file and the crate agree on every byte and every
//! verdict, so neither the crate nor the document can drift from the other.
//!
//! `REGENERATE_VECTORS=1 cargo test -p scone --test vectors` rewrites the file (after a
//! deliberate format change; review the diff).

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};

use scone::sealed::StateSealer;
use scone::{
    Draft, EndpointId, KeyRing, ManualClock, Minter, MinterConfig, ObjectId, PublicKey, Scone,
    ServiceId, SigningKey, StateFormat, Status, Verifier, VerifierConfig, VerifyError,
};

mod recipe;

use recipe::Digest;

/// Where the vectors live, in the crate's directory.
const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors.json");

/// The signing key's seed: the bytes 0, 1, ..., 31.
fn seed() -> [u8; 32] {
    std::array::from_fn(|i| i as u8)
}

const LONE_ISSUED_AT_MS: u64 = 1_800_000_000_000;
const LONE_TTL_MS: u64 = 30 * 60 * 1000;
const BATCH_ISSUED_AT_MS: u64 = 1_800_000_060_000;
const BATCH_TTL_MS: u64 = 10 * 60 * 1000;
const CLOCK_SKEW_MS: u64 = 30_000;

/// The sealed state's fixed nonce (a real sealer draws it at random): 0x40, 0x41, ...
fn nonce() -> [u8; 24] {
    std::array::from_fn(|i| 0x40 + i as u8)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// The status numbers of `FORMAT.md`.
fn status_code(status: Status) -> u64 {
    match status {
        Status::Idle => 0,
        Status::InProgress => 1,
        Status::Completed => 2,
        Status::Failed => 3,
        other => panic!("no number for {other:?}"),
    }
}

/// One drafted SCONE: its claims without times or key.
struct Input {
    service: &'static str,
    endpoint: [u8; 16],
    object: u64,
    status: Status,
    version: u64,
    state_format: StateFormat,
    sealed: bool,
    state: Vec<u8>,
}

impl Input {
    fn claims(&self, key_id: [u8; 8], issued_at_ms: u64, ttl_ms: u64) -> recipe::Claims {
        recipe::Claims {
            key_id,
            service: self.service.to_owned(),
            endpoint: self.endpoint,
            object: self.object,
            status: status_code(self.status),
            version: self.version,
            issued_at_ms,
            expires_at_ms: issued_at_ms + ttl_ms,
            state_format: match self.state_format {
                StateFormat::Opaque => 0,
                StateFormat::Postcard => 1,
                StateFormat::Json => 2,
                other => panic!("no vector for {other:?}"),
            },
            sealed: self.sealed,
            state: self.state.clone(),
        }
    }

    fn draft(&self, ttl_ms: u64) -> Draft {
        Draft::new(
            ServiceId::new(self.service).unwrap(),
            EndpointId::from_bytes(self.endpoint),
        )
        .with_object(ObjectId(self.object))
        .with_status(self.status)
        .with_version(self.version)
        .with_ttl(Duration::from_millis(ttl_ms))
        .with_state_format(self.state_format)
        .with_sealed(self.sealed)
        .with_state(self.state.clone())
    }
}

/// The lone SCONE: a cart as `scone mint` writes it, as JSON.
fn lone_input() -> Input {
    Input {
        service: "cart",
        endpoint: [0x11; 16],
        object: 0,
        status: Status::Idle,
        version: 1,
        state_format: StateFormat::Json,
        sealed: false,
        state: br#"{"items":{"apple":2},"changes":1}"#.to_vec(),
    }
}

/// The sealed member's binding, plaintext, associated data and sealed state.
struct SealedInput {
    plaintext: Vec<u8>,
    aad: Vec<u8>,
    sealed: Vec<u8>,
}

/// The batch of three: postcard state, an empty opaque state of another service with a
/// two-byte version, and a sealed state.
fn batch_inputs() -> (Vec<Input>, SealedInput) {
    let sealed_endpoint = [0x23; 16];
    let plaintext = vec![0x01, 0x05, b'a', b'p', b'p', b'l', b'e', 0x02, 0x01];
    let aad = recipe::aad("cart", &sealed_endpoint, 0, 5);
    let sealed = recipe::seal_state(&seed(), &nonce(), &aad, &plaintext);
    let inputs = vec![
        Input {
            service: "cart",
            endpoint: [0x21; 16],
            object: 0,
            status: Status::InProgress,
            version: 2,
            state_format: StateFormat::Postcard,
            sealed: false,
            state: plaintext.clone(),
        },
        Input {
            service: "billing.v2",
            endpoint: [0x22; 16],
            object: 7,
            status: Status::Completed,
            version: 300,
            state_format: StateFormat::Opaque,
            sealed: false,
            state: Vec::new(),
        },
        Input {
            service: "cart",
            endpoint: sealed_endpoint,
            object: 0,
            status: Status::Failed,
            version: 5,
            state_format: StateFormat::Postcard,
            sealed: true,
            state: sealed.clone(),
        },
    ];
    (
        inputs,
        SealedInput {
            plaintext,
            aad,
            sealed,
        },
    )
}

/// A SCONE computed by the recipe, with every intermediate value.
struct Computed {
    claims: recipe::Claims,
    claims_bytes: Vec<u8>,
    claims_digest: Digest,
    leaf_digest: Digest,
    index: u32,
    siblings: Vec<Digest>,
    tag: Option<Digest>,
    seal: Vec<u8>,
    encoded: Vec<u8>,
}

impl Computed {
    fn to_json(&self) -> Value {
        let c = &self.claims;
        json!({
            "claims": {
                "key_id": hex(&c.key_id),
                "service": c.service,
                "endpoint": hex(&c.endpoint),
                "object": c.object,
                "status": c.status,
                "version": c.version,
                "issued_at_ms": c.issued_at_ms,
                "expires_at_ms": c.expires_at_ms,
                "state_format": c.state_format,
                "sealed": c.sealed,
                "state": hex(&c.state),
            },
            "claims_hex": hex(&self.claims_bytes),
            "claims_digest": hex(&self.claims_digest),
            "leaf_digest": hex(&self.leaf_digest),
            "index": self.index,
            "siblings": self.siblings.iter().map(|s| hex(s)).collect::<Vec<_>>(),
            "tag": self.tag.map(|t| hex(&t)),
            "seal_hex": hex(&self.seal),
            "scone_hex": hex(&self.encoded),
            "scone_text": URL_SAFE_NO_PAD.encode(&self.encoded),
        })
    }
}

/// Mints `inputs` as one signed batch (alone when there is one), by the recipe.
fn compute(
    inputs: &[Input],
    issued_at_ms: u64,
    ttl_ms: u64,
    tagged: bool,
) -> (Vec<Computed>, Digest, [u8; 64]) {
    let seed = seed();
    let key_id = recipe::key_id(&recipe::public_key(&seed));
    let claims: Vec<_> = inputs
        .iter()
        .map(|input| input.claims(key_id, issued_at_ms, ttl_ms))
        .collect();
    let claims_bytes: Vec<_> = claims.iter().map(recipe::encode_claims).collect();
    let digests: Vec<_> = claims_bytes
        .iter()
        .map(|c| recipe::claims_digest(c))
        .collect();
    let leaves: Vec<_> = digests
        .iter()
        .enumerate()
        .map(|(i, d)| recipe::leaf_digest(d, i as u32))
        .collect();
    let (root, paths) = recipe::tree(&leaves);
    let signature = recipe::sign(&seed, &root);
    let computed = (0..inputs.len())
        .map(|i| {
            let index = i as u32;
            let tag = tagged.then(|| {
                recipe::tag(
                    &recipe::tag_key(&seed),
                    &digests[i],
                    index,
                    &paths[i],
                    &signature,
                )
            });
            let seal = recipe::encode_seal(tag.as_ref(), index, &paths[i], &signature);
            Computed {
                encoded: [&claims_bytes[i][..], &seal].concat(),
                claims: claims[i].clone(),
                claims_bytes: claims_bytes[i].clone(),
                claims_digest: digests[i],
                leaf_digest: leaves[i],
                index,
                siblings: paths[i].clone(),
                tag,
                seal,
            }
        })
        .collect();
    (computed, root, signature)
}

/// The crate's minter, with the same key, clock and settings.
fn crate_minter(issued_at_ms: u64, tagged: bool) -> Minter {
    Minter::new(SigningKey::from_seed(&seed()))
        .with_clock(ManualClock::new(issued_at_ms))
        .with_config(MinterConfig {
            issuer_tag: tagged,
            ..MinterConfig::default()
        })
}

/// A copy of `bytes` with `range` replaced by `with`.
fn spliced(bytes: &[u8], range: std::ops::Range<usize>, with: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out.splice(range, with.iter().copied());
    out
}

/// The verifier of a verdict vector: whom it trusts, for which service, and when.
struct VerifierSpec {
    trusted_for: Vec<&'static str>,
    service: Option<&'static str>,
    now_ms: u64,
}

impl VerifierSpec {
    fn to_json(&self, public_key: &[u8; 32]) -> Value {
        json!({
            "trusted": [{ "public_key": hex(public_key), "services": self.trusted_for }],
            "service": self.service,
            "now_ms": self.now_ms,
            "clock_skew_ms": CLOCK_SKEW_MS,
            "max_scone_bytes": 64 * 1024,
        })
    }

    /// The crate's verdict for `bytes`.
    fn crate_verdict(&self, bytes: &[u8]) -> &'static str {
        let key = SigningKey::from_seed(&seed()).public_key();
        let mut ring = KeyRing::new();
        for service in &self.trusted_for {
            ring.trust(ServiceId::new(*service).unwrap(), key).unwrap();
        }
        let mut verifier = Verifier::new(ring)
            .with_clock(ManualClock::new(self.now_ms))
            .with_config(VerifierConfig {
                clock_skew: Duration::from_millis(CLOCK_SKEW_MS),
                ..VerifierConfig::default()
            });
        if let Some(service) = self.service {
            verifier = verifier.for_service(ServiceId::new(service).unwrap());
        }
        match verifier.decode(bytes.to_vec()) {
            Ok(_) => "valid",
            Err(error) => error.reason().code(),
        }
    }

    /// The recipe's verdict for `bytes`.
    fn recipe_verdict(&self, bytes: &[u8]) -> &'static str {
        let trusted = [recipe::Trusted {
            public_key: recipe::public_key(&seed()),
            services: self.trusted_for.iter().map(|s| s.to_string()).collect(),
        }];
        recipe::verdict(bytes, &trusted, self.service, self.now_ms, CLOCK_SKEW_MS)
    }
}

/// Everything the vector file holds, computed by the recipe and checked against the crate.
fn vectors() -> Value {
    let seed = seed();
    let public_key = recipe::public_key(&seed);
    let key_id = recipe::key_id(&public_key);

    // The key, as the crate derives it.
    let key = SigningKey::from_seed(&seed);
    assert_eq!(key.public_key().as_bytes(), &public_key);
    assert_eq!(key.key_id().as_bytes(), &key_id);
    assert_eq!(
        key.public_key().to_string(),
        URL_SAFE_NO_PAD.encode(public_key)
    );

    // The lone SCONE, tagged.
    let lone_input = lone_input();
    let (lone, lone_root, lone_signature) = compute(
        std::slice::from_ref(&lone_input),
        LONE_ISSUED_AT_MS,
        LONE_TTL_MS,
        true,
    );
    let lone = &lone[0];
    assert_eq!(
        lone_root, lone.leaf_digest,
        "a lone SCONE's root is its leaf"
    );
    let minted = crate_minter(LONE_ISSUED_AT_MS, true)
        .mint(lone_input.draft(LONE_TTL_MS))
        .unwrap();
    assert_eq!(hex(minted.encoded()), hex(&lone.encoded), "the lone SCONE");
    assert_eq!(minted.to_text(), URL_SAFE_NO_PAD.encode(&lone.encoded));
    assert_eq!(minted.state_format(), StateFormat::Json);

    // The batch of three, untagged.
    let (batch_inputs, sealed) = batch_inputs();
    let (batch, batch_root, batch_signature) =
        compute(&batch_inputs, BATCH_ISSUED_AT_MS, BATCH_TTL_MS, false);
    let drafts: Vec<Draft> = batch_inputs
        .iter()
        .map(|input| input.draft(BATCH_TTL_MS))
        .collect();
    let minted_batch = crate_minter(BATCH_ISSUED_AT_MS, false)
        .mint_batch(&drafts)
        .unwrap();
    for (i, (computed, minted)) in batch.iter().zip(&minted_batch).enumerate() {
        assert_eq!(
            hex(minted.encoded()),
            hex(&computed.encoded),
            "batch member {i}"
        );
        // The recipe's decoder reads back what it encoded.
        let decoded = recipe::decode(&computed.encoded, 64 * 1024).unwrap();
        assert_eq!(decoded.claims, computed.claims);
        assert_eq!(decoded.siblings, computed.siblings);
        assert_eq!(decoded.tag, computed.tag);
    }
    assert_eq!(
        batch[2].siblings[0],
        recipe::empty_node(),
        "3 leaves: one empty"
    );
    // The crate opens the state the recipe sealed.
    let sealed_member = &minted_batch[2];
    assert!(sealed_member.is_sealed());
    assert_eq!(
        StateSealer::new(&key).open_scone(sealed_member).unwrap(),
        sealed.plaintext
    );

    // Verdicts on the lone SCONE and altered copies of it.
    let within = LONE_ISSUED_AT_MS + 60_000;
    let cart_verifier = || VerifierSpec {
        trusted_for: vec!["cart"],
        service: Some("cart"),
        now_ms: within,
    };
    let state_at = lone.claims_bytes.len() - lone.claims.state.len();
    let two_at = state_at + lone.claims.state.iter().position(|&b| b == b'2').unwrap();
    let claims_len = lone.claims_bytes.len();
    let signature_at = lone.encoded.len() - 64;
    let untagged = [
        &lone.claims_bytes[..],
        &recipe::encode_seal(None, 0, &[], &lone_signature),
    ]
    .concat();
    let verdicts: Vec<(&str, Vec<u8>, VerifierSpec, &str)> = vec![
        ("original", lone.encoded.clone(), cart_verifier(), "valid"),
        (
            "tampered state: the apple count 2 made 9",
            spliced(&lone.encoded, two_at..two_at + 1, b"9"),
            cart_verifier(),
            "bad-signature",
        ),
        (
            "tampered signature: its first byte's low bit flipped",
            spliced(
                &lone.encoded,
                signature_at..signature_at + 1,
                &[lone.encoded[signature_at] ^ 1],
            ),
            cart_verifier(),
            "bad-signature",
        ),
        (
            "issuer tag stripped: the tag is not under the signature",
            untagged,
            cart_verifier(),
            "valid",
        ),
        (
            "wrong service: checked by a verifier of service billing",
            lone.encoded.clone(),
            VerifierSpec {
                trusted_for: vec!["billing"],
                service: Some("billing"),
                now_ms: within,
            },
            "wrong-service",
        ),
        (
            "key not trusted for the service: trusted for billing only",
            lone.encoded.clone(),
            VerifierSpec {
                trusted_for: vec!["billing"],
                service: None,
                now_ms: within,
            },
            "unknown-key",
        ),
        (
            "expired: a minute past expiry, beyond the 30 s clock skew",
            lone.encoded.clone(),
            VerifierSpec {
                now_ms: lone.claims.expires_at_ms + 60_000,
                ..cart_verifier()
            },
            "expired",
        ),
        (
            "still valid within the clock skew: 10 s past expiry",
            lone.encoded.clone(),
            VerifierSpec {
                now_ms: lone.claims.expires_at_ms + 10_000,
                ..cart_verifier()
            },
            "valid",
        ),
        (
            "not yet valid: checked a minute before its issue time",
            lone.encoded.clone(),
            VerifierSpec {
                now_ms: LONE_ISSUED_AT_MS - 60_000,
                ..cart_verifier()
            },
            "not-yet-valid",
        ),
        (
            "batch member 2 (sealed), verified alone",
            batch[2].encoded.clone(),
            VerifierSpec {
                now_ms: BATCH_ISSUED_AT_MS,
                ..cart_verifier()
            },
            "valid",
        ),
        (
            "batch member 2 with member 1's index",
            spliced(
                &batch[2].encoded,
                batch[2].claims_bytes.len() + 1..batch[2].claims_bytes.len() + 2,
                &[1],
            ),
            VerifierSpec {
                now_ms: BATCH_ISSUED_AT_MS,
                ..cart_verifier()
            },
            "bad-signature",
        ),
    ];

    // Encodings every decoder refuses, with the verdict they earn.
    let object_at = 1 + 9 + 1 + lone.claims.service.len() + 17;
    assert_eq!(lone.encoded[object_at], 0, "object 0");
    let state_format_at = state_at - 3; // state_format, sealed, the state's length
    assert_eq!(lone.encoded[state_format_at], 2, "json");
    let index_at = claims_len + 1 + 1 + 32; // after the tag
    assert_eq!(lone.encoded[index_at], 0);
    let refused_bytes: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", Vec::new(), "malformed"),
        (
            "format version 2",
            spliced(&lone.encoded, 0..1, &[2]),
            "unsupported-version",
        ),
        (
            "a trailing byte",
            [&lone.encoded[..], &[0]].concat(),
            "malformed",
        ),
        (
            "overlong varint in the claims: object 0 as 80 00",
            spliced(&lone.encoded, object_at..object_at + 1, &[0x80, 0x00]),
            "malformed",
        ),
        (
            "overlong varint in the seal: index 0 as 80 00",
            spliced(&lone.encoded, index_at..index_at + 1, &[0x80, 0x00]),
            "malformed",
        ),
        (
            "unknown state format 3",
            spliced(&lone.encoded, state_format_at..state_format_at + 1, &[3]),
            "malformed",
        ),
        (
            "sealed flag 2",
            spliced(
                &lone.encoded,
                state_format_at + 1..state_format_at + 2,
                &[2],
            ),
            "malformed",
        ),
        (
            "unknown status 4",
            spliced(&lone.encoded, object_at + 1..object_at + 2, &[4]),
            "malformed",
        ),
        (
            "a tag of 31 bytes",
            spliced(
                &lone.encoded,
                claims_len + 1..claims_len + 3,
                &[31, lone.encoded[claims_len + 2]],
            ),
            "malformed",
        ),
        (
            "index 1 with an empty path",
            spliced(&lone.encoded, index_at..index_at + 1, &[1]),
            "malformed",
        ),
    ];
    let text = URL_SAFE_NO_PAD.encode(&lone.encoded);
    assert_ne!(lone.encoded.len() % 3, 0, "the text form has trailing bits");
    let last = text.chars().last().unwrap();
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let nonzero_bits = alphabet
        .chars()
        .nth(alphabet.find(last).unwrap() | 1)
        .unwrap();
    let refused_text: Vec<(&str, String, &str)> = vec![
        ("padded with =", format!("{text}="), "malformed"),
        (
            "standard base64 alphabet (+ and /) is not base64url",
            text.replace('-', "+").replace('_', "/") + "+",
            "malformed",
        ),
        (
            "non-zero trailing bits in the last character",
            format!("{}{nonzero_bits}", &text[..text.len() - 1]),
            "malformed",
        ),
    ];

    let mut verdict_json = Vec::new();
    for (name, bytes, spec, expected) in &verdicts {
        assert_eq!(spec.recipe_verdict(bytes), *expected, "recipe: {name}");
        assert_eq!(spec.crate_verdict(bytes), *expected, "crate: {name}");
        verdict_json.push(json!({
            "name": name,
            "scone_hex": hex(bytes),
            "verifier": spec.to_json(&public_key),
            "verdict": expected,
        }));
    }
    let spec = cart_verifier();
    let mut refused_json = Vec::new();
    for (name, bytes, expected) in &refused_bytes {
        assert_eq!(spec.recipe_verdict(bytes), *expected, "recipe: {name}");
        assert_eq!(spec.crate_verdict(bytes), *expected, "crate: {name}");
        refused_json.push(json!({ "name": name, "scone_hex": hex(bytes), "verdict": expected }));
    }
    for (name, text, expected) in &refused_text {
        assert!(URL_SAFE_NO_PAD.decode(text).is_err(), "recipe: {name}");
        let error = Scone::from_text(text).expect_err(name);
        assert_eq!(
            VerifyError::from(error).reason().code(),
            *expected,
            "crate: {name}"
        );
        refused_json.push(json!({ "name": name, "scone_text": text, "verdict": expected }));
    }
    // Whitespace around the text form is not part of it.
    assert!(Scone::from_text(&format!(" {text}\n")).is_ok());

    json!({
        "about": "Test vectors for the SCONE wire format, version 1: see scone/FORMAT.md. \
                  Bytes are lowercase hex; texts are base64url without padding. \
                  Regenerate with REGENERATE_VECTORS=1 cargo test -p scone --test vectors.",
        "format_version": 1,
        "contexts": {
            "claims_digest": recipe::CLAIMS_DIGEST,
            "leaf": recipe::LEAF,
            "node": recipe::NODE,
            "empty_node": recipe::EMPTY_NODE,
            "key_id": recipe::KEY_ID,
            "issuer_tag_key": recipe::ISSUER_TAG_KEY,
            "sealed_state_key": recipe::SEALED_STATE,
        },
        "hash_keys": {
            "claims_digest": hex(&recipe::hash_key(recipe::CLAIMS_DIGEST)),
            "leaf": hex(&recipe::hash_key(recipe::LEAF)),
            "node": hex(&recipe::hash_key(recipe::NODE)),
            "empty_node": hex(&recipe::empty_node()),
        },
        "key": {
            "seed": hex(&seed),
            "public_key": hex(&public_key),
            "public_key_text": URL_SAFE_NO_PAD.encode(public_key),
            "key_id": hex(&key_id),
            "issuer_tag_key": hex(&recipe::tag_key(&seed)),
            "sealing_key": hex(&recipe::sealing_key(&seed)),
        },
        "lone": {
            "tagged": true,
            "ttl_ms": LONE_TTL_MS,
            "root": hex(&lone_root),
            "signature": hex(&lone_signature),
            "scone": lone.to_json(),
        },
        "batch": {
            "tagged": false,
            "ttl_ms": BATCH_TTL_MS,
            "depth": batch[0].siblings.len(),
            "root": hex(&batch_root),
            "signature": hex(&batch_signature),
            "scones": batch.iter().map(Computed::to_json).collect::<Vec<_>>(),
        },
        "sealed_state": {
            "of": "batch.scones[2]",
            "nonce": hex(&nonce()),
            "plaintext": hex(&sealed.plaintext),
            "aad": hex(&sealed.aad),
            "sealed": hex(&sealed.sealed),
        },
        "verdicts": verdict_json,
        "refused": refused_json,
    })
}

#[test]
fn the_vectors_follow_from_the_format_document_and_match_the_crate() {
    let computed = vectors();
    if std::env::var_os("REGENERATE_VECTORS").is_some_and(|v| v == "1") {
        let text = serde_json::to_string_pretty(&computed).unwrap() + "\n";
        std::fs::write(VECTORS, text).unwrap();
        return;
    }
    let published: Value = serde_json::from_str(
        &std::fs::read_to_string(VECTORS)
            .expect("tests/vectors.json exists (REGENERATE_VECTORS=1 writes it)"),
    )
    .unwrap();
    if published != computed {
        let (published, computed) = (
            serde_json::to_string_pretty(&published).unwrap(),
            serde_json::to_string_pretty(&computed).unwrap(),
        );
        let first = published
            .lines()
            .zip(computed.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        panic!(
            "tests/vectors.json differs from the recipe at line {}:\n  file:   {}\n  recipe: {}\n\
             (after a deliberate format change: REGENERATE_VECTORS=1)",
            first + 1,
            published.lines().nth(first).unwrap_or(""),
            computed.lines().nth(first).unwrap_or(""),
        );
    }
}

#[test]
fn the_published_scones_decode_to_their_published_fields() {
    // Read from the file, not recomputed: what an implementer in another language does.
    let published: Value =
        serde_json::from_str(&std::fs::read_to_string(VECTORS).unwrap()).unwrap();
    let public_key = PublicKey::from_bytes(
        &unhex(published["key"]["public_key"].as_str().unwrap())
            .try_into()
            .unwrap(),
    )
    .unwrap();
    let mut scones = vec![&published["lone"]["scone"]];
    scones.extend(published["batch"]["scones"].as_array().unwrap());
    for vector in scones {
        let bytes = unhex(vector["scone_hex"].as_str().unwrap());
        let scone = Scone::decode(bytes.clone()).unwrap();
        assert_eq!(
            Scone::from_text(vector["scone_text"].as_str().unwrap()).unwrap(),
            scone
        );
        let claims = &vector["claims"];
        assert_eq!(scone.key_id(), public_key.key_id());
        assert_eq!(hex(scone.key_id().as_bytes()), claims["key_id"]);
        assert_eq!(scone.service().as_str(), claims["service"]);
        assert_eq!(hex(scone.endpoint().as_bytes()), claims["endpoint"]);
        assert_eq!(scone.object().0, claims["object"]);
        assert_eq!(status_code(scone.status()), claims["status"]);
        assert_eq!(scone.version(), claims["version"]);
        assert_eq!(scone.issued_at_ms(), claims["issued_at_ms"]);
        assert_eq!(scone.expires_at_ms(), claims["expires_at_ms"]);
        assert_eq!(scone.state_format().code(), claims["state_format"]);
        assert_eq!(scone.is_sealed(), claims["sealed"]);
        assert_eq!(hex(scone.state()), claims["state"]);
        assert_eq!(scone.has_tag(), !vector["tag"].is_null());
        assert_eq!(
            hex(&bytes[..bytes.len() - unhex(vector["seal_hex"].as_str().unwrap()).len()]),
            vector["claims_hex"]
        );
    }
}

/// The lines of `text` from the one starting `claims =` to the one ending the seal.
fn layout_block(text: &str) -> Vec<String> {
    let lines: Vec<String> = text
        .lines()
        .map(|line| line.trim_start_matches("//!").trim().to_owned())
        .collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("claims ="))
        .unwrap();
    let end = start
        + lines[start..]
            .iter()
            .position(|l| l.contains("signature:bytes(64)"))
            .unwrap();
    lines[start..=end].to_vec()
}

#[test]
fn the_format_document_states_what_the_vectors_and_the_code_use() {
    let format =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/FORMAT.md")).unwrap();
    let published: Value =
        serde_json::from_str(&std::fs::read_to_string(VECTORS).unwrap()).unwrap();
    for (name, context) in published["contexts"].as_object().unwrap() {
        let quoted = format!("`{}`", context.as_str().unwrap());
        assert!(
            format.contains(&quoted),
            "FORMAT.md names the {name} context {quoted}"
        );
    }
    let lone = published["lone"]["scone"]["scone_text"].as_str().unwrap();
    assert!(
        format.contains(lone),
        "FORMAT.md's worked example is the lone vector"
    );
    let code =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/scone.rs")).unwrap();
    assert_eq!(
        layout_block(&format),
        layout_block(&code),
        "the layout in FORMAT.md and in scone.rs's docs"
    );
}
