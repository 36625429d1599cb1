//! Decode + verify of a SCONE with 256 B of state, against a bare ed25519 verify of the
//! same bytes, measured side by side in one run.
//!
//! `cargo bench -p scone --bench verify` prints criterion's figures for both, then
//! measures them interleaved (alternating rounds, median per call, so drift on the
//! machine hits both alike) and ends with one line: `ratio verify=X`, ours over bare.
//! Both sides use `verify_strict`, the check our verifier makes.

use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;
use criterion::Criterion;
use ed25519_dalek::{Signature, Signer};
use scone::{Draft, EndpointId, KeyRing, Minter, ServiceId, SigningKey, Verifier};

const STATE_LEN: usize = 256;
const ROUNDS: usize = 31;
const CALLS_PER_ROUND: usize = 1_000;

struct Subjects {
    verifier: Verifier,
    encoded: Bytes,
    bare_key: ed25519_dalek::VerifyingKey,
    bare_signature: Signature,
}

impl Subjects {
    fn new() -> Self {
        let seed = [42; 32];
        let key = SigningKey::from_seed(&seed);
        let service = ServiceId::new("bench").unwrap();
        let scone = Minter::new(key.clone())
            .mint(
                Draft::new(service.clone(), EndpointId::from_bytes([7; 16]))
                    .with_state(vec![0xA5; STATE_LEN]),
            )
            .unwrap();
        let bare = ed25519_dalek::SigningKey::from_bytes(&seed);
        let encoded = scone.encoded().clone();
        let ring = KeyRing::for_service(service.clone(), [key.public_key()]).unwrap();
        Self {
            verifier: Verifier::new(ring).for_service(service),
            bare_signature: bare.sign(&encoded),
            bare_key: bare.verifying_key(),
            encoded,
        }
    }

    fn ours(&self) {
        black_box(
            self.verifier
                .decode(black_box(self.encoded.clone()))
                .unwrap(),
        );
    }

    fn bare(&self) {
        self.bare_key
            .verify_strict(black_box(&self.encoded), black_box(&self.bare_signature))
            .unwrap();
    }
}

fn median_ns_per_call(subjects: &Subjects, f: fn(&Subjects)) -> f64 {
    let start = Instant::now();
    for _ in 0..CALLS_PER_ROUND {
        f(subjects);
    }
    start.elapsed().as_nanos() as f64 / CALLS_PER_ROUND as f64
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let subjects = Subjects::new();
    let mut criterion = Criterion::default().configure_from_args();
    let mut group = criterion.benchmark_group("verify_256B");
    group.bench_function("scone_decode_verify", |b| b.iter(|| subjects.ours()));
    group.bench_function("bare_ed25519_verify", |b| b.iter(|| subjects.bare()));
    group.finish();
    criterion.final_summary();

    // Warm up both, then alternate rounds.
    for _ in 0..200 {
        subjects.ours();
        subjects.bare();
    }
    let (mut ours, mut bare) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        ours.push(median_ns_per_call(&subjects, Subjects::ours));
        bare.push(median_ns_per_call(&subjects, Subjects::bare));
    }
    let (ours, bare) = (median(ours), median(bare));
    println!(
        "scone decode+verify {:.2} us, bare ed25519 verify {:.2} us ({} B encoded, {} B state)",
        ours / 1000.0,
        bare / 1000.0,
        subjects.encoded.len(),
        STATE_LEN
    );
    println!("ratio verify={:.3}", ours / bare);
}
