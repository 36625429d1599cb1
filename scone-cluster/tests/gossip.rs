//! Gossip membership over real UDP on 127.0.0.1: discovery from one seed, failure
//! detection with the default settings, graceful leave, restarts.
//!
//! Every node binds port 0 (the membership binds the socket itself and reports the
//! port), so there is no race for ports. Every wait is bounded.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use scone_cluster::{GossipConfig, GossipError, GossipMembership, Member, Membership};

/// Every wait that could hang gets this long.
const LIMIT: Duration = Duration::from_secs(10);

/// The bound for declaring a dead node with the default settings.
const DETECTION_BOUND: Duration = Duration::from_secs(3);

/// A member with made-up addresses (nothing dials them here), in `zone`.
fn member(n: u16, zone: Option<&str>) -> Member {
    Member {
        rpc: SocketAddr::from(([127, 0, 0, 1], 17_000 + n)),
        peer: SocketAddr::from(([127, 0, 0, 1], 18_000 + n)),
        zone: zone.map(str::to_owned),
    }
}

/// The default config of node `name` publishing `me`, on a fresh loopback port.
fn config(name: &str, me: Member, seeds: &[&GossipMembership]) -> GossipConfig {
    let mut config = GossipConfig::new(me, "127.0.0.1:0".parse().unwrap());
    config.node_id = name.to_owned();
    config.seeds = seeds
        .iter()
        .map(|seed| seed.gossip_addr().to_string())
        .collect();
    config
}

async fn start(config: GossipConfig) -> GossipMembership {
    tokio::time::timeout(LIMIT, GossipMembership::start(config))
        .await
        .expect("started in time")
        .expect("gossip started")
}

/// Waits until `membership`'s list satisfies `ready`; the time it took.
async fn wait_until(
    membership: &GossipMembership,
    what: &str,
    ready: impl FnMut(&Vec<Member>) -> bool,
) -> Duration {
    let started = Instant::now();
    let mut changes = membership.changes();
    let waited = tokio::time::timeout(LIMIT, changes.wait_for(ready))
        .await
        .map(|ready| ready.is_ok());
    match waited {
        Ok(true) => started.elapsed(),
        Ok(false) => panic!(
            "{}: gossip stopped while waiting for {what}",
            membership.node_id()
        ),
        Err(_) => panic!(
            "{}: not {what} within {LIMIT:?}; members: {:?}",
            membership.node_id(),
            membership.members()
        ),
    }
}

fn sorted(mut members: Vec<Member>) -> Vec<Member> {
    members.sort_by_key(|member| member.rpc);
    members
}

/// Starts `a` (no seeds), then `b` and `c` seeded with `a` alone; waits until each
/// sees all three.
async fn three(configure: impl Fn(&mut GossipConfig)) -> [GossipMembership; 3] {
    let mut a_config = config("a", member(1, Some("z1")), &[]);
    configure(&mut a_config);
    let a = start(a_config).await;
    let mut b_config = config("b", member(2, Some("z2")), &[&a]);
    configure(&mut b_config);
    let b = start(b_config).await;
    let mut c_config = config("c", member(3, None), &[&a]);
    configure(&mut c_config);
    let c = start(c_config).await;
    let all = sorted(vec![a.me().clone(), b.me().clone(), c.me().clone()]);
    for node in [&a, &b, &c] {
        wait_until(node, "seeing all three", |members| {
            sorted(members.clone()) == all
        })
        .await;
    }
    [a, b, c]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_discover_each_other_from_one_seed() {
    let [a, b, c] = three(|_| {}).await;
    for node in [&a, &b, &c] {
        for other in [&a, &b, &c] {
            // Addresses and zone as published, found by client address too.
            assert_eq!(node.by_rpc(other.me().rpc).as_ref(), Some(other.me()));
        }
    }
    assert_eq!(b.by_rpc(a.me().rpc).unwrap().zone.as_deref(), Some("z1"));
    assert_eq!(a.by_rpc(c.me().rpc).unwrap().zone, None);
    for node in [a, b, c] {
        tokio::time::timeout(LIMIT, node.shutdown())
            .await
            .unwrap()
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_stops_abruptly_is_declared_dead_within_3s_by_default() {
    let [a, b, c] = three(|_| {}).await;
    let gone = c.me().clone();
    // Dropping the last handle stops its gossip at once, announcing nothing: a crash,
    // for the others.
    let stopped = Instant::now();
    drop(c);
    let mut detected = Vec::new();
    for node in [&a, &b] {
        wait_until(node, "dropping the dead node", |members| {
            !members.contains(&gone)
        })
        .await;
        let took = stopped.elapsed();
        println!("{} declared c dead after {took:?}", node.node_id());
        detected.push(took);
        assert_eq!(
            sorted(node.members()),
            sorted(vec![a.me().clone(), b.me().clone()])
        );
    }
    for took in detected {
        assert!(
            took < DETECTION_BOUND,
            "a dead node was declared after {took:?}, over {DETECTION_BOUND:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_leaves_drops_out_without_the_failure_detector() {
    // A failure detector this lenient would take over a minute to declare anyone
    // dead: the node can only drop out because it said it was leaving.
    let [a, b, c] = three(|config| config.phi_threshold = 1_000.0).await;
    let gone = c.me().clone();
    let c_view = c.clone();
    let started = Instant::now();
    let leaving = tokio::spawn(c.leave());
    for node in [&a, &b] {
        wait_until(node, "dropping the leaving node", |members| {
            !members.contains(&gone)
        })
        .await;
        println!(
            "{} dropped c {:?} after it started leaving",
            node.node_id(),
            started.elapsed()
        );
    }
    tokio::time::timeout(LIMIT, leaving)
        .await
        .expect("left in time")
        .unwrap()
        .expect("left cleanly");
    let took = started.elapsed();
    println!("leave() took {took:?}");
    assert!(
        took < DETECTION_BOUND,
        "leaving took {took:?}, no faster than failure detection"
    );
    // The leaver dropped itself from its own list, and its list no longer changes.
    assert!(!c_view.members().contains(&gone));
    let mut closed = c_view.changes();
    let ended = tokio::time::timeout(LIMIT, closed.changed()).await;
    assert!(matches!(ended, Ok(Err(_))), "the list's channel closed");
    // Leaving twice (from another handle) does nothing.
    c_view.leave().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_member_replaces_its_old_generation() {
    // `a` declares dead nodes slowly: the old generation of `b` stays live in chitchat
    // while the new one joins, so only deduplication by node id keeps it out.
    let mut a_config = config("a", member(1, None), &[]);
    a_config.phi_threshold = 50.0;
    let a = start(a_config).await;
    let old = start(config("b", member(2, None), &[&a])).await;
    let (old_me, port, old_generation) = (old.me().clone(), old.gossip_addr(), old.generation());
    wait_until(&a, "seeing b", |members| members.contains(&old_me)).await;

    let stopped = Instant::now();
    tokio::time::timeout(LIMIT, old.shutdown())
        .await
        .unwrap()
        .unwrap();
    // Same node id and gossip port, new client address (to tell them apart).
    let mut new_config = config("b", member(20, None), &[&a]);
    new_config.listen_addr = port;
    let new = start(new_config).await;
    assert!(new.generation() > old_generation);
    let new_me = new.me().clone();
    let mut both = false;
    wait_until(&a, "seeing b restarted", |members| {
        both |= members.contains(&old_me) && members.contains(&new_me);
        members.contains(&new_me)
    })
    .await;
    let took = stopped.elapsed();
    println!("the new b replaced the old one at a after {took:?}");
    // With phi 50, the old generation cannot have been declared dead this soon (the
    // mean heartbeat interval is at least ~100 ms, so at least ~5 s).
    assert!(took < Duration::from_secs(4), "restart took {took:?}");
    assert!(!both, "both generations of b were members at once");
    assert_eq!(
        sorted(a.members()),
        sorted(vec![a.me().clone(), new_me.clone()])
    );
    wait_until(&new, "seeing a", |members| members.contains(a.me())).await;
}

#[tokio::test]
async fn port_zero_and_advertised_addresses() {
    let mut config = GossipConfig::new(member(1, None), "0.0.0.0:0".parse().unwrap());
    match GossipMembership::start(config.clone()).await {
        Err(GossipError::Config(why)) => assert!(why.contains("advertise_addr"), "{why}"),
        other => panic!("an unreachable gossip address was accepted: {other:?}"),
    }
    config.advertise_addr = Some("127.0.0.1:0".parse().unwrap());
    let node = start(config).await;
    let addr = node.gossip_addr();
    assert!(addr.ip().is_loopback() && addr.port() != 0, "{addr}");
    assert_eq!(node.node_id(), "127.0.0.1:17001");
    // Alone, it is its only member, from the start.
    assert_eq!(node.members(), [node.me().clone()]);

    let mut taken = GossipConfig::new(member(2, None), addr);
    taken.node_id = "other".into();
    match GossipMembership::start(taken).await {
        Err(GossipError::Bind { addr: asked, .. }) => assert_eq!(asked, addr),
        other => panic!("bound a taken port: {other:?}"),
    }
}

/// Detection times with the default settings, fresh and after 10 s of uptime (prints
/// them; run with `cargo test -p scone-cluster --test gossip -- --ignored --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, about a minute"]
async fn measure_detection_times() {
    for uptime in [Duration::ZERO, Duration::from_secs(10)] {
        for run in 0..4 {
            let [a, b, c] = three(|_| {}).await;
            tokio::time::sleep(uptime).await;
            let gone = c.me().clone();
            let stopped = Instant::now();
            drop(c);
            wait_until(&a, "dropping the dead node", |members| {
                !members.contains(&gone)
            })
            .await;
            println!(
                "uptime {uptime:?}, run {run}: declared dead after {:?}",
                stopped.elapsed()
            );
            drop((a, b));
        }
    }
}
