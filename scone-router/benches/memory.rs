//! What a relay's store holds in memory: the process's RSS with 1,000,000 cached SCONEs of
//! 256-byte state in a `MemoryStore` (one per client ID, as a relay keeps them). Target:
//! under 600 MB.
//!
//! `cargo bench -p scone-router --bench memory`
//!
//! Settings (environment): `SCONES` (default 1,000,000; smaller for a quick run),
//! `SCONE_STATE_BYTES` (default 256) and `SCONE_GROUP` (default 64, see below).
//!
//! In this process: a `MemoryStore` bounded at `SCONES` entries and bytes enough for all
//! of them, and `SCONES` SCONEs of the `cart` service, each for its own client ID and
//! endpoint, put with `Store::put` as the relay does. `VmRSS` is read from
//! `/proc/self/status` before the first SCONE is minted and after the last is stored.
//! Reported: the RSS, the RSS it grew by per SCONE, and the cache's own `bytes()` figure
//! (the SCONEs' encoded bytes only), so the difference is the cost of keeping one (the
//! `Scone` value with its parsed fields, the LRU's node and key, the hash table, the
//! allocator's overhead). MB are 10^6 bytes.
//!
//! Minting: one ed25519 signature per SCONE would take a minute of CPU for a million, so
//! the SCONEs are minted in groups of `SCONE_GROUP` under one signature over a Merkle
//! root (`Minter::mint_batch`), as a SCONE server signs the replies it has ready at once
//! (scone-rpc's group signing, at most 64 a group by default). Sharing a root is
//! realistic, but it changes nothing in memory: every SCONE carries its own copy of the
//! signature and of its Merkle path, and the store keeps each one's bytes apart. What the
//! group size does change is the path: `ceil(log2(group))` digests of 32 bytes in every
//! SCONE. 64 is the largest group a default server makes (six digests, 192 bytes), so the
//! default is the worst case of a server under load; a server answering one call at a
//! time signs each SCONE alone (`SCONE_GROUP=1`: no path).
//!
//! What is measured is what the store holds, not the bench's own vectors: SCONEs are
//! minted a group at a time, each one handed to `Store::put` by value (the cache keeps a
//! compacted copy of its bytes and the minted value is dropped), and the group's drafts
//! are reused for the next, so at most one group of temporaries is alive at once and its
//! memory is freed before the last reading (and reused by the allocator for the next
//! group all along).

use std::num::NonZeroUsize;
use std::str::FromStr;
use std::time::Instant;

use futures::executor::block_on;
use scone::{
    CacheLimits, ClientId, Draft, EndpointId, Minter, PutOutcome, Scone, ServiceId, SigningKey,
};
use scone_router::{HoldKey, MemoryStore, Store};

/// The target for 1,000,000 SCONEs, in MB.
const TARGET_MB: f64 = 600.0;

/// `name`'s value, or `default` when unset; a bad value stops the bench.
fn env_or<T: FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .replace('_', "")
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a valid value")),
        Err(_) => default,
    }
}

/// This process's resident set size in bytes (`VmRSS` in `/proc/self/status`).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib * 1024
}

/// 16 bytes that differ for every `n`: a client ID, or an endpoint ID.
fn id_bytes(n: u64, tag: u8) -> [u8; 16] {
    let mut bytes = [tag; 16];
    bytes[..8].copy_from_slice(&n.to_le_bytes());
    bytes
}

fn mb(bytes: f64) -> f64 {
    bytes / 1e6
}

fn main() {
    let count: u64 = env_or("SCONES", 1_000_000u64).max(1);
    let state_bytes: usize = env_or("SCONE_STATE_BYTES", 256usize);
    let group: usize = env_or("SCONE_GROUP", 64usize).clamp(1, 1 << 16);
    let entries = NonZeroUsize::new(usize::try_from(count).expect("SCONES fits in memory"))
        .expect("at least one");

    let service = ServiceId::new("cart").expect("service ID");
    let minter = Minter::new(SigningKey::generate().expect("signing key"));
    let store = MemoryStore::new(CacheLimits {
        max_entries: entries,
        // Enough for all of them: the entry bound is the one meant to hold.
        max_bytes: entries.get().saturating_mul(64 * 1024),
    });
    let mut drafts: Vec<Draft> = Vec::with_capacity(group);
    let rss_before = rss_bytes();

    let started = Instant::now();
    let mut next = 0u64;
    while next < count {
        let size = (group as u64).min(count - next);
        drafts.clear();
        for n in next..next + size {
            // A state that differs from SCONE to SCONE (its content does not matter).
            let state: Vec<u8> = (0..state_bytes).map(|i| (n as usize + i) as u8).collect();
            let draft = Draft::new(service.clone(), EndpointId::from_bytes(id_bytes(n, 0xe)))
                .with_state(state);
            drafts.push(draft);
        }
        let scones = minter.mint_batch(&drafts).expect("mint a group");
        for (n, scone) in (next..).zip(scones) {
            let key = (ClientId::from_bytes(id_bytes(n, 0xc)), service.clone());
            // By value: the store keeps a compacted copy, the minted SCONE is dropped here.
            let outcome = block_on(store.put(key, scone));
            assert_eq!(outcome, PutOutcome::Inserted, "SCONE {n} was not stored");
        }
        next += size;
    }
    // The last group's drafts go too; only the store is left.
    drop(drafts);
    let elapsed = started.elapsed();
    let rss_after = rss_bytes();

    let cache = store.cache();
    let held = cache.len() as u64;
    assert_eq!(held, count, "the store holds every SCONE");
    let encoded = cache.bytes() as f64;
    let grown = rss_after.saturating_sub(rss_before) as f64;
    let per_scone = grown / count as f64;
    let encoded_each = encoded / count as f64;
    println!(
        "memory: {count} SCONEs of {state_bytes}-byte state, minted in groups of {group} \
         ({:.1} s to mint and store)",
        elapsed.as_secs_f64()
    );
    println!(
        "encoded size: {encoded_each:.0} B a SCONE; cache bytes() {:.1} MB",
        mb(encoded)
    );
    println!(
        "RSS before {:.1} MB, after {:.1} MB: grew {:.1} MB, {per_scone:.0} B a SCONE \
         ({:.0} B beyond its encoded bytes)",
        mb(rss_before as f64),
        mb(rss_after as f64),
        mb(grown),
        per_scone - encoded_each
    );
    println!(
        "in memory besides: a `Scone` value is {} B, its key (client ID, service ID) {} B, \
         both in an LRU node with two links, plus the hash table",
        std::mem::size_of::<Scone>(),
        std::mem::size_of::<HoldKey>()
    );
    // The target is for a million; a smaller run is scaled up to compare.
    let at_a_million = mb(rss_before as f64 + per_scone * 1e6);
    if count != 1_000_000 {
        println!("at 1,000,000 SCONEs that would be about {at_a_million:.0} MB");
    }
    println!("rss_mb={:.0} target={TARGET_MB:.0}", mb(rss_after as f64));
}
