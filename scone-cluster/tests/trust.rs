//! Members that trust each other (`NodeConfig::trust_members`) over TCP on 127.0.0.1:
//! copies and deltas on sealed links are kept without a signature check, yet byte for
//! byte what the primary made; a link without the cluster secret gets no such trust.

mod common;

use common::*;
use examples::cart;
use scone::{Draft, EndpointId, Minter, SigningKey};
use scone_cluster::{
    ClusterConfig, CopyItem, PeerError, PeerTransport, Replica, ReplicaRefusal, SessionCopy,
    SessionStore, StaticMembership, TcpTransport,
};
use scone_rpc::peer_link::LinkSecret;

/// A copy of a new cart session signed by `key`.
fn copy_signed_by(key: &SigningKey, endpoint: u8) -> SessionCopy {
    let scone = Minter::new(key.clone())
        .mint(Draft::new(
            cart::service_id().unwrap(),
            EndpointId::from_bytes([endpoint; 16]),
        ))
        .unwrap();
    SessionCopy::without_lineage(&scone)
}

/// Two trusting members with deltas: the secondary keeps every copy and delta without
/// checking a signature, and still ends up with the very SCONE the primary signed; a
/// delta that does not rebuild it is refused even on trust.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusting_members_keep_copies_unchecked_yet_byte_for_byte() {
    let key = SigningKey::generate().unwrap();
    let secret = LinkSecret::from_bytes([9; 32]);
    let (listeners, members) = members(2).await;
    let membership = StaticMembership::new(members.clone());
    let [node_a, node_b] = {
        let mut nodes = listeners.into_iter().zip(members).map(|(listeners, me)| {
            start_node_sealed(
                listeners,
                me,
                membership.clone(),
                &key,
                ClusterConfig::default(),
                Some(secret.clone()),
                |replica| {
                    replica
                        .with_deltas(scone_rpc::state::apply_delta::<cart::CartState>)
                        .trusting_members()
                },
            )
        });
        [nodes.next().unwrap(), nodes.next().unwrap()]
    };
    let mut client = TokenClient::new();
    for _ in 0..5 {
        client.add(node_a.member.rpc, "apple", 1).await.unwrap();
    }
    assert_eq!(node_a.placement.stats().delta_copies, 4);
    let kept = node_b.placement.stats();
    assert_eq!(
        (kept.copies_kept_on_trust, kept.copies_kept),
        (5, 0),
        "every copy, whole or delta, kept on trust"
    );
    let session = client.routing().session;
    let primary = node_a.replica.store().get_scone(&session).unwrap();
    let secondary = node_b.replica.store().get_scone(&session).unwrap();
    assert_eq!(
        secondary.encoded(),
        primary.encoded(),
        "rebuilt byte for byte"
    );

    // A delta whose rebuilt SCONE is not the one the primary made: refused on trust too.
    let held = node_b.replica.store().get(&session).unwrap();
    let mut wrong = scone_cluster::DeltaCopy::new(&primary, held.id(), &[], None);
    wrong.delta = postcard::to_allocvec(&scone_rpc::Delta::default()).unwrap();
    wrong.tail = vec![0; wrong.tail.len()];
    let refused = node_b
        .replica
        .accept_item_from(CopyItem::Delta(wrong), true);
    assert_eq!(refused, Err(ReplicaRefusal::OutOfStep));
    assert_eq!(
        node_b.replica.store().get(&session).unwrap().id(),
        held.id()
    );
    stop_all(vec![node_a, node_b]).await;
}

/// A trusting replica checks every copy that does not come on a sealed link: served
/// without a secret, it refuses a copy signed by a key it does not trust; served with
/// one, strangers do not get through at all, and only members' copies skip the check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_is_only_for_sealed_links() {
    let trusted = SigningKey::generate().unwrap();
    let foreign = SigningKey::generate().unwrap();
    let keys =
        scone::KeyRing::for_service(cart::service_id().unwrap(), [trusted.public_key()]).unwrap();
    let replica = Replica::new(SessionStore::new(100), keys).trusting_members();
    let timeout = std::time::Duration::from_secs(2);

    // No secret: nothing is sealed, so the signature is checked.
    let open_port = loopback().await;
    let open_addr = open_port.local_addr().unwrap();
    let (stop_open, open_stopped) = tokio::sync::oneshot::channel::<()>();
    let open = tokio::spawn(scone_cluster::serve_peers(
        open_port,
        replica.clone(),
        open_stopped,
    ));
    let anyone = TcpTransport::new(timeout);
    let planted = bounded(anyone.replicate(open_addr, copy_signed_by(&foreign, 1))).await;
    assert!(
        matches!(
            planted,
            Err(PeerError::Refused {
                refusal: ReplicaRefusal::Untrusted,
                ..
            })
        ),
        "{planted:?}"
    );
    bounded(anyone.replicate(open_addr, copy_signed_by(&trusted, 2)))
        .await
        .unwrap();
    assert_eq!(replica.store().len(), 1);

    // With a secret: a stranger is refused at connect; a member's copy skips the check.
    let secret = LinkSecret::from_bytes([3; 32]);
    let sealed_port = loopback().await;
    let sealed_addr = sealed_port.local_addr().unwrap();
    let (stop_sealed, sealed_stopped) = tokio::sync::oneshot::channel::<()>();
    let sealed = tokio::spawn(scone_cluster::serve_peers_with_secret(
        sealed_port,
        replica.clone(),
        secret.clone(),
        timeout,
        sealed_stopped,
    ));
    let stranger = TcpTransport::new(timeout).with_secret(LinkSecret::from_bytes([4; 32]));
    let planted = bounded(stranger.replicate(sealed_addr, copy_signed_by(&foreign, 3))).await;
    assert!(
        matches!(planted, Err(PeerError::Unreachable { .. })),
        "{planted:?}"
    );
    assert_eq!(replica.store().len(), 1);
    let member = TcpTransport::new(timeout).with_secret(secret);
    bounded(member.replicate(sealed_addr, copy_signed_by(&foreign, 4)))
        .await
        .unwrap();
    assert_eq!(
        replica.store().len(),
        2,
        "a member's copy is kept on trust, whoever signed it"
    );

    let _ = (stop_open.send(()), stop_sealed.send(()));
    bounded(open).await.unwrap().unwrap();
    bounded(sealed).await.unwrap().unwrap();
}
