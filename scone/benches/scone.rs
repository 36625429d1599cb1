//! Criterion benchmarks of the core operations: mint, verify, encode, decode, cache.
//!
//! `cargo bench -p scone --bench scone`

use std::hint::black_box;
use std::num::NonZeroUsize;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use scone::{
    CacheLimits, Draft, EndpointId, KeyRing, Minter, Scone, SconeCache, ServiceId, SigningKey,
    Verifier,
};

const STATE_SIZES: [usize; 3] = [64, 256, 4096];

fn setup() -> (Minter, Verifier, ServiceId) {
    let key = SigningKey::from_seed(&[42; 32]);
    let service = ServiceId::new("bench").unwrap();
    let ring = KeyRing::for_service(service.clone(), [key.public_key()]).unwrap();
    let verifier = Verifier::new(ring).for_service(service.clone());
    (Minter::new(key), verifier, service)
}

fn draft(service: &ServiceId, state_len: usize) -> Draft {
    Draft::new(service.clone(), EndpointId::from_bytes([7; 16])).with_state(vec![0xA5; state_len])
}

fn mint(c: &mut Criterion) {
    let (minter, _, service) = setup();
    let mut group = c.benchmark_group("mint");
    for size in STATE_SIZES {
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::new("single", size), &size, |b, &size| {
            b.iter_batched(
                || draft(&service, size),
                |d| minter.mint(d).unwrap(),
                criterion::BatchSize::SmallInput,
            )
        });
    }
    // Per SCONE, when 64 are minted under one signature.
    group.throughput(Throughput::Elements(64));
    group.bench_function(BenchmarkId::new("batch64", 256), |b| {
        b.iter_batched(
            || vec![draft(&service, 256); 64],
            |drafts| minter.mint_batch(&drafts).unwrap(),
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn verify(c: &mut Criterion) {
    let (minter, verifier, service) = setup();
    let issuer = verifier
        .clone()
        .trusting_own_tags(service.clone(), minter.signing_key())
        .unwrap();
    let mut group = c.benchmark_group("verify");
    for size in STATE_SIZES {
        let scone = minter.mint(draft(&service, size)).unwrap();
        group.bench_with_input(BenchmarkId::new("signature", size), &scone, |b, s| {
            b.iter(|| verifier.verify(black_box(s)).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("issuer_tag", size), &scone, |b, s| {
            b.iter(|| issuer.verify(black_box(s)).unwrap())
        });
    }
    group.finish();
}

fn encode_decode(c: &mut Criterion) {
    let (minter, _, service) = setup();
    let mut group = c.benchmark_group("codec");
    for size in STATE_SIZES {
        let scone = minter.mint(draft(&service, size)).unwrap();
        let bytes = scone.encoded().clone();
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_with_input(BenchmarkId::new("encode", size), &scone, |b, s| {
            b.iter(|| postcard::to_stdvec(black_box(s)).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("decode", size), &bytes, |b, bytes| {
            b.iter(|| Scone::decode(black_box(bytes.clone())).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("to_text", size), &scone, |b, s| {
            b.iter(|| black_box(s).to_text())
        });
    }
    group.finish();
}

fn cache(c: &mut Criterion) {
    let (minter, _, _) = setup();
    let entries = 10_000;
    let scones: Vec<(ServiceId, Scone)> = (0..entries)
        .map(|i| {
            let service = ServiceId::new(format!("svc-{i}")).unwrap();
            let scone = minter.mint(draft(&service, 256)).unwrap();
            (service, scone)
        })
        .collect();
    let cache = SconeCache::new(CacheLimits {
        max_entries: NonZeroUsize::new(entries).unwrap(),
        max_bytes: usize::MAX,
    });
    for (service, scone) in &scones {
        cache.put(service.clone(), scone.clone());
    }
    let mut group = c.benchmark_group("cache");
    let mut i = 0;
    group.bench_function("get_hit", |b| {
        b.iter(|| {
            i = (i + 1) % entries;
            cache.get(&scones[i].0).unwrap()
        })
    });
    group.bench_function("put_replace", |b| {
        b.iter(|| {
            i = (i + 1) % entries;
            cache.put(scones[i].0.clone(), scones[i].1.clone())
        })
    });
    group.finish();
}

/// Sealed state: what a sealing server adds per call (one seal on the way out, one open on
/// the way in), next to a plain mint.
fn sealed(c: &mut Criterion) {
    let key = SigningKey::from_seed(&[7; 32]);
    let sealer = scone::sealed::StateSealer::new(&key);
    let service = ServiceId::new("bench").unwrap();
    let mut group = c.benchmark_group("sealed");
    for len in [64usize, 256, 4096] {
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(BenchmarkId::new("seal", len), |b| {
            b.iter(|| {
                let mut draft = draft(&service, len);
                sealer.seal_draft(&mut draft).unwrap();
                draft
            })
        });
        let mut sealed_draft = draft(&service, len);
        sealer.seal_draft(&mut sealed_draft).unwrap();
        let scone = Minter::new(key.clone()).mint(sealed_draft).unwrap();
        group.bench_function(BenchmarkId::new("open", len), |b| {
            b.iter(|| sealer.open_scone(&scone).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, mint, verify, encode_decode, cache, sealed);
criterion_main!(benches);
