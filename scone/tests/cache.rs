//! The SCONE cache: bounds by count, bytes and TTL; stale versions; sharing across tasks.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use scone::{
    CacheLimits, Draft, EndpointId, ManualClock, Minter, PutOutcome, Scone, SconeCache, ServiceId,
    SigningKey,
};

const NOW_MS: u64 = 1_800_000_000_000;

fn setup() -> (Arc<ManualClock>, Minter) {
    let clock = ManualClock::new(NOW_MS);
    let minter = Minter::new(SigningKey::from_seed(&[5; 32])).with_clock(clock.clone());
    (clock, minter)
}

fn service(n: usize) -> ServiceId {
    ServiceId::new(format!("svc-{n}")).unwrap()
}

fn mint(minter: &Minter, n: usize, version: u64, state_len: usize) -> Scone {
    minter
        .mint(
            Draft::new(service(n), EndpointId::from_bytes([1; 16]))
                .with_version(version)
                .with_state(vec![0; state_len]),
        )
        .unwrap()
}

fn limits(entries: usize, bytes: usize) -> CacheLimits {
    CacheLimits {
        max_entries: NonZeroUsize::new(entries).unwrap(),
        max_bytes: bytes,
    }
}

#[test]
fn count_bound_evicts_the_least_recently_used() {
    let (clock, minter) = setup();
    let cache = SconeCache::new(limits(2, 1 << 20)).with_clock(clock);
    cache.put(service(1), mint(&minter, 1, 1, 10));
    cache.put(service(2), mint(&minter, 2, 1, 10));
    assert!(
        cache.get(&service(1)).is_some(),
        "touch 1 so 2 is the oldest"
    );
    assert_eq!(cache.evictions(), 0);
    cache.put(service(3), mint(&minter, 3, 1, 10));
    assert_eq!(cache.len(), 2);
    assert_eq!(cache.len_including_expired(), 2);
    assert_eq!(cache.evictions(), 1);
    assert!(cache.get(&service(2)).is_none());
    assert!(cache.get(&service(1)).is_some());
    assert!(cache.get(&service(3)).is_some());
}

#[test]
fn byte_bound_evicts_until_it_fits() {
    let (clock, minter) = setup();
    let one = mint(&minter, 0, 1, 1000).encoded_len();
    let cache = SconeCache::new(limits(100, 3 * one)).with_clock(clock);
    for n in 0..5 {
        cache.put(service(n), mint(&minter, n, 1, 1000));
        assert!(cache.bytes() <= 3 * one);
    }
    assert_eq!(cache.len(), 3);
    assert_eq!(cache.evictions(), 2, "0 and 1 went to make room");
    assert!(cache.get(&service(0)).is_none());
    assert!(cache.get(&service(4)).is_some());
    assert_eq!(
        cache.put(service(9), mint(&minter, 9, 1, 4 * one)),
        PutOutcome::TooLarge
    );
}

#[test]
fn a_replacement_that_grows_evicts_others_but_never_itself() {
    let (clock, minter) = setup();
    let small = mint(&minter, 0, 1, 100).encoded_len();
    let large = mint(&minter, 0, 2, 1000).encoded_len();
    let cache = SconeCache::new(limits(100, large + small)).with_clock(clock);
    for n in 0..3 {
        assert_eq!(
            cache.put(service(n), mint(&minter, n, 1, 100)),
            PutOutcome::Inserted
        );
    }
    // Session 0 grows: the least recently used others go, session 0 stays.
    assert_eq!(
        cache.put(service(0), mint(&minter, 0, 2, 1000)),
        PutOutcome::Replaced
    );
    assert_eq!(cache.get(&service(0)).map(|s| s.version()), Some(2));
    assert!(cache.get(&service(1)).is_none(), "least recent evicted");
    assert!(cache.get(&service(2)).is_some());
    assert_eq!(cache.bytes(), large + small);
    assert_eq!(
        cache.evictions(),
        1,
        "the replacement itself is no eviction"
    );
}

#[test]
fn expired_entries_are_dropped() {
    let (clock, minter) = setup();
    let cache = SconeCache::new(CacheLimits::default()).with_clock(clock.clone());
    let short = minter
        .mint(
            Draft::new(service(1), EndpointId::from_bytes([1; 16]))
                .with_ttl(Duration::from_secs(5)),
        )
        .unwrap();
    let long = minter
        .mint(
            Draft::new(service(2), EndpointId::from_bytes([1; 16]))
                .with_ttl(Duration::from_secs(50)),
        )
        .unwrap();
    cache.put(service(1), short.clone());
    cache.put(service(2), long);
    clock.advance(Duration::from_secs(5));
    assert_eq!(
        cache.len(),
        1,
        "an expired entry no longer counts, even before it is met"
    );
    assert!(cache.get(&service(1)).is_none());
    assert_eq!(cache.len(), 1, "the expired entry was dropped on get");
    assert_eq!(cache.put(service(1), short), PutOutcome::Expired);
    clock.advance(Duration::from_secs(45));
    assert_eq!(cache.purge_expired(), 1);
    assert!(cache.is_empty());
    assert_eq!(cache.bytes(), 0);
}

#[test]
fn an_older_version_of_the_same_session_never_replaces_a_newer_one() {
    let (clock, minter) = setup();
    let cache = SconeCache::new(CacheLimits::default()).with_clock(clock);
    assert_eq!(
        cache.put(service(1), mint(&minter, 1, 5, 1)),
        PutOutcome::Inserted
    );
    assert_eq!(
        cache.put(service(1), mint(&minter, 1, 4, 1)),
        PutOutcome::Stale
    );
    assert_eq!(cache.get(&service(1)).unwrap().version(), 5);
    assert_eq!(
        cache.put(service(1), mint(&minter, 1, 6, 1)),
        PutOutcome::Replaced
    );
    // Another session (new endpoint) under the same key starts over at version 1.
    let other = minter
        .mint(Draft::new(service(1), EndpointId::from_bytes([2; 16])))
        .unwrap();
    assert_eq!(cache.put(service(1), other), PutOutcome::Replaced);
}

#[test]
fn relays_key_by_client_and_service() {
    let (clock, minter) = setup();
    let cache: SconeCache<(u64, ServiceId)> =
        SconeCache::new(CacheLimits::default()).with_clock(clock);
    cache.put((1, service(1)), mint(&minter, 1, 1, 1));
    cache.put((2, service(1)), mint(&minter, 1, 2, 1));
    assert_eq!(cache.get(&(1, service(1))).unwrap().version(), 1);
    assert_eq!(cache.get(&(2, service(1))).unwrap().version(), 2);
    assert!(cache.remove(&(1, service(1))).is_some());
    assert_eq!(cache.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn it_is_shared_safely_across_tasks() {
    let (clock, minter) = setup();
    let cache = SconeCache::new(limits(50, 1 << 20)).with_clock(clock);
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let cache = cache.clone();
            let minter = minter.clone();
            tokio::spawn(async move {
                for i in 0..100 {
                    cache.put(service(t * 1000 + i), mint(&minter, t * 1000 + i, 1, 16));
                    cache.get(&service(t * 1000 + i / 2));
                }
            })
        })
        .collect();
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("task finished in time")
            .unwrap();
    }
    assert_eq!(cache.len(), 50);
    let one = mint(&minter, 0, 1, 16).encoded_len();
    assert!(cache.bytes() > 0 && cache.bytes() <= 50 * (one + 8));
}

proptest! {
    #[test]
    fn bounds_hold_for_any_sequence_of_operations(
        ops in proptest::collection::vec((0usize..20, 0usize..400, any::<bool>()), 1..200),
        max_entries in 1usize..10,
        max_bytes in 200usize..3000,
    ) {
        let (clock, minter) = setup();
        let cache = SconeCache::new(limits(max_entries, max_bytes)).with_clock(clock);
        for (key, state_len, is_put) in ops {
            if is_put {
                cache.put(service(key), mint(&minter, key, 1, state_len));
            } else {
                cache.remove(&service(key));
            }
            prop_assert!(cache.len() <= max_entries);
            prop_assert!(cache.bytes() <= max_bytes);
        }
        // The byte count is exact, not merely bounded.
        let held: usize = (0..20)
            .filter_map(|key| cache.get(&service(key)))
            .map(|scone| scone.encoded_len())
            .sum();
        prop_assert_eq!(cache.bytes(), held);
    }
}

#[test]
fn it_keeps_its_own_copy_not_the_buffer_a_scone_came_in() {
    let (clock, minter) = setup();
    let scone = mint(&minter, 1, 1, 10);
    // A SCONE decoded without copying, from a slice of the larger message it came in.
    let at = 100..100 + scone.encoded_len();
    let mut message = vec![0u8; 4096];
    message[at.clone()].copy_from_slice(scone.encoded());
    let message = bytes::Bytes::from(message);
    let sliced = Scone::decode(message.slice(at)).unwrap();
    assert!(message.as_ptr_range().contains(&sliced.encoded().as_ptr()));

    let cache = SconeCache::new(limits(4, 1 << 20)).with_clock(clock);
    cache.put(service(1), sliced);
    let kept = cache.get(&service(1)).unwrap();
    assert_eq!(kept, scone);
    assert!(
        !message.as_ptr_range().contains(&kept.encoded().as_ptr()),
        "the cache holds a compact copy, so the 4 KiB message can be freed"
    );
}
