//! The task-local context: reads, writes, change detection, and isolation between tasks.

use std::time::Duration;

use scone::context::{self, SconeContext, Written};
use scone::{ContextError, Draft, EndpointId, Minter, SconeBundle, ServiceId, SigningKey, Status};

fn cart() -> ServiceId {
    ServiceId::new("cart").unwrap()
}

fn incoming(state: &[u8]) -> SconeBundle {
    let minter = Minter::new(SigningKey::from_seed(&[1; 32]));
    let scone = minter
        .mint(Draft::new(cart(), EndpointId::from_bytes([1; 16])).with_state(state.to_vec()))
        .unwrap();
    let mut bundle = SconeBundle::new();
    bundle.insert(scone).unwrap();
    bundle
}

#[tokio::test]
async fn a_handler_reads_the_incoming_state_and_records_a_change() {
    let (seen, ctx) = context::scope(SconeContext::new(incoming(b"apple")), async {
        let seen = context::incoming(&cart())
            .unwrap()
            .unwrap()
            .state()
            .to_vec();
        tokio::task::yield_now().await;
        assert_eq!(
            context::write_state(&cart(), b"apple,pear".to_vec()),
            Ok(Written::Changed)
        );
        seen
    })
    .await;
    assert_eq!(seen, b"apple");
    assert_eq!(ctx.writes().len(), 1);
    assert_eq!(ctx.writes()[0].state, b"apple,pear");
    assert_eq!(ctx.writes()[0].service, cart());
}

#[tokio::test]
async fn writing_the_same_state_back_is_no_change() {
    let ((), ctx) = context::scope(SconeContext::new(incoming(b"apple")), async {
        assert_eq!(
            context::write_state(&cart(), b"pear".to_vec()),
            Ok(Written::Changed)
        );
        assert_eq!(
            context::write_state(&cart(), b"apple".to_vec()),
            Ok(Written::Unchanged)
        );
    })
    .await;
    assert!(ctx.writes().is_empty(), "nothing to re-mint");
}

#[tokio::test]
async fn a_status_change_alone_is_a_change() {
    let ((), ctx) = context::scope(SconeContext::new(incoming(b"apple")), async {
        assert_eq!(
            context::write(&cart(), b"apple".to_vec(), Status::Completed),
            Ok(Written::Changed)
        );
        // write_state keeps the status this request already set.
        context::write_state(&cart(), b"apple".to_vec()).unwrap();
    })
    .await;
    assert_eq!(ctx.writes()[0].status, Status::Completed);
}

#[tokio::test]
async fn outside_a_scope_is_a_typed_error() {
    assert_eq!(context::incoming(&cart()), Err(ContextError::NoContext));
    assert_eq!(
        context::write_state(&cart(), vec![]),
        Err(ContextError::NoContext)
    );
}

#[test]
fn reentrant_use_is_a_typed_error() {
    let (result, _) = context::sync_scope(SconeContext::default(), || {
        context::with(|_| context::write_state(&cart(), vec![1])).unwrap()
    });
    assert_eq!(result, Err(ContextError::Reentrant));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_do_not_see_each_other() {
    let tasks: Vec<_> = (0u8..16)
        .map(|i| {
            tokio::spawn(context::scope(SconeContext::default(), async move {
                context::write_state(&cart(), vec![i]).unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
                context::with(|ctx| ctx.writes()[0].state.clone()).unwrap()
            }))
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        let (seen, ctx) = tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(seen, vec![i as u8]);
        assert_eq!(ctx.writes().len(), 1);
    }
}

#[tokio::test]
async fn forwarded_scones_come_back_with_the_context() {
    let backend = incoming(b"backend state").into_iter().next().unwrap();
    let ((), ctx) = context::scope(SconeContext::default(), async {
        context::forward(backend.clone()).unwrap();
    })
    .await;
    assert_eq!(ctx.forwarded().get(&cart()), Some(&backend));
}

#[tokio::test]
async fn a_delta_is_asked_for_by_the_server_and_describes_only_the_last_write() {
    let (wanted, _) = context::scope(SconeContext::new(incoming(b"a")), async {
        context::deltas_wanted()
    })
    .await;
    assert!(!wanted, "not asked for by default");
    assert!(!context::deltas_wanted(), "outside a scope: no");

    let scope = SconeContext::new(incoming(b"a")).with_deltas_wanted(true);
    let ((), ctx) = context::scope(scope, async {
        assert!(context::deltas_wanted());
        assert_eq!(context::attach_delta(&cart(), b"d0".to_vec()), Ok(false));
        context::write_state(&cart(), b"ab".to_vec()).unwrap();
        assert_eq!(context::attach_delta(&cart(), b"d1".to_vec()), Ok(true));
    })
    .await;
    assert_eq!(ctx.writes()[0].delta.as_deref(), Some(&b"d1"[..]));

    let scope = SconeContext::new(incoming(b"a")).with_deltas_wanted(true);
    let ((), ctx) = context::scope(scope, async {
        context::write_state(&cart(), b"ab".to_vec()).unwrap();
        context::attach_delta(&cart(), b"d1".to_vec()).unwrap();
        // A second write that carries no delta of its own: the first one's is stale.
        context::write_state(&cart(), b"abc".to_vec()).unwrap();
    })
    .await;
    assert_eq!(ctx.writes()[0].delta, None);
}
