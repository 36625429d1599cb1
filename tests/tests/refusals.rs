//! Every kind of bad SCONE, and bad frames, against a real cart server on loopback TCP:
//! each gets its typed refusal, the handler never runs, and the server keeps serving.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{bounded, TestServer};
use examples::cart::{self, CartRequest};
use scone::{Draft, EndpointId, ManualClock, Minter, RejectReason, Scone, ServiceId, SigningKey};
use scone_rpc::envelope::{
    ClientId, Outcome, RefusalKind, RequestEnvelope, ResponseEnvelope, WireScones, ENVELOPE_VERSION,
};
use scone_rpc::{refusal, SconeClient, SconeStore};
use tarpc::context;
use tokio::io::AsyncWriteExt;

struct Fixture {
    key: SigningKey,
    server: TestServer,
    raw: scone_rpc::client::SconeChannel,
}

async fn fixture() -> Fixture {
    let key = SigningKey::generate().unwrap();
    let server_key = key.clone();
    let server = TestServer::start(move |listener, stop| async move {
        cart::serve(listener, server_key, "only", stop).await?;
        Ok(())
    })
    .await;
    let raw = bounded(scone_rpc::client::connect(server.addr))
        .await
        .unwrap();
    Fixture { key, server, raw }
}

fn cart_id() -> ServiceId {
    cart::service_id().unwrap()
}

/// A `view` request carrying exactly `scones`.
fn view_request(scones: Vec<Bytes>) -> RequestEnvelope {
    RequestEnvelope {
        version: ENVELOPE_VERSION,
        client: ClientId::from_bytes([7; 16]),
        service: cart_id(),
        scones: WireScones::from(scones),
        token: None,
        body: postcard::to_stdvec(&CartRequest::View {}).unwrap().into(),
    }
}

async fn send(raw: &scone_rpc::client::SconeChannel, request: RequestEnvelope) -> ResponseEnvelope {
    bounded(raw.call(context::current(), request))
        .await
        .expect("a reply, not a dropped connection")
}

fn refusal_kind(reply: &ResponseEnvelope) -> RefusalKind {
    match &reply.outcome {
        Outcome::Refused(refusal) => refusal.kind,
        Outcome::Reply(_) => panic!("the request was served: {reply:?}"),
    }
}

fn valid_scone(key: &SigningKey) -> Scone {
    let state = postcard::to_stdvec(&cart::CartState::default()).unwrap();
    Minter::new(key.clone())
        .mint(Draft::new(cart_id(), EndpointId::from_bytes([1; 16])).with_state(state))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_bad_scone_gets_its_typed_refusal() {
    let f = fixture().await;
    let good = valid_scone(&f.key);
    assert!(matches!(
        send(&f.raw, view_request(vec![good.encoded().clone()]))
            .await
            .outcome,
        Outcome::Reply(_)
    ));

    let forged = valid_scone(&SigningKey::generate().unwrap());
    let mut tampered = good.encoded().to_vec();
    // The signature's last byte: the issuer's tag covers the signature too, so the
    // issuing server refuses what every public verifier refuses.
    let at = tampered.len() - 1;
    tampered[at] ^= 0x04;
    let clock = ManualClock::new(1_000_000);
    let expired = Minter::new(f.key.clone())
        .with_clock(clock)
        .mint(
            Draft::new(cart_id(), EndpointId::from_bytes([1; 16])).with_ttl(Duration::from_secs(1)),
        )
        .unwrap();
    let other_service = Minter::new(f.key.clone())
        .mint(Draft::new(
            ServiceId::new("billing").unwrap(),
            EndpointId::from_bytes([1; 16]),
        ))
        .unwrap();
    let mut future_version = good.encoded().to_vec();
    future_version[0] = 9;
    let oversize = Minter::new(f.key.clone())
        .with_config(scone::MinterConfig {
            max_scone_bytes: 1 << 20,
            ..Default::default()
        })
        .mint(Draft::new(cart_id(), EndpointId::from_bytes([1; 16])).with_state(vec![0; 100_000]))
        .unwrap();

    let cases: Vec<(&str, Vec<Bytes>, RefusalKind)> = vec![
        (
            "forged",
            vec![forged.encoded().clone()],
            RefusalKind::Scone(RejectReason::UnknownKey),
        ),
        (
            "tampered",
            vec![Bytes::from(tampered)],
            RefusalKind::Scone(RejectReason::BadSignature),
        ),
        (
            "expired",
            vec![expired.encoded().clone()],
            RefusalKind::Scone(RejectReason::Expired),
        ),
        (
            "garbage",
            vec![Bytes::from_static(&[1, 2, 3])],
            RefusalKind::Scone(RejectReason::Malformed),
        ),
        (
            "future format",
            vec![Bytes::from(future_version)],
            RefusalKind::Scone(RejectReason::UnsupportedVersion),
        ),
        (
            "oversize",
            vec![oversize.encoded().clone()],
            RefusalKind::Scone(RejectReason::TooLarge),
        ),
        (
            "two for one service",
            vec![good.encoded().clone(), good.encoded().clone()],
            RefusalKind::BadRequest,
        ),
    ];
    for (name, scones, expected) in cases {
        let reply = send(&f.raw, view_request(scones)).await;
        assert_eq!(refusal_kind(&reply), expected, "{name}");
        assert!(reply.scones.is_empty(), "{name}: nothing minted");
    }

    // Another service's SCONE is carried (for a back-end), not verified or refused.
    let reply = send(&f.raw, view_request(vec![other_service.encoded().clone()])).await;
    assert!(matches!(reply.outcome, Outcome::Reply(_)));

    // The envelope itself: wrong service, future version, a body that is not a request.
    let mut wrong_service = view_request(vec![]);
    wrong_service.service = ServiceId::new("billing").unwrap();
    assert_eq!(
        refusal_kind(&send(&f.raw, wrong_service).await),
        RefusalKind::WrongService
    );
    let mut future_envelope = view_request(vec![]);
    future_envelope.version = 2;
    assert_eq!(
        refusal_kind(&send(&f.raw, future_envelope).await),
        RefusalKind::UnsupportedEnvelope
    );
    let mut garbled_body = view_request(vec![]);
    garbled_body.body = vec![0xff; 7].into();
    assert_eq!(
        refusal_kind(&send(&f.raw, garbled_body).await),
        RefusalKind::BadRequest
    );
    f.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_client_sees_a_refusal_as_a_typed_error() {
    let f = fixture().await;
    let store = SconeStore::default();
    // A SCONE from a stranger's key, as if the client's store had been tampered with.
    store.put(valid_scone(&SigningKey::generate().unwrap()));
    let client =
        cart::CartClient::from(SconeClient::caching(f.raw.clone(), cart_id(), store).unwrap());
    let error = bounded(client.view(context::current())).await.unwrap_err();
    assert_eq!(
        refusal(&error),
        Some(RefusalKind::Scone(RejectReason::UnknownKey)),
        "{error:?}"
    );
    // Shown to a person, the refusal says what, why, and its code.
    let shown = scone_rpc::CallError::from(error);
    assert_eq!(
        shown.refusal(),
        Some(RefusalKind::Scone(RejectReason::UnknownKey))
    );
    let text = shown.to_string();
    assert!(
        text.starts_with("the scone was refused [scone-unknown-key] by cart: ")
            && text.contains("unknown key"),
        "{text}"
    );
    f.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_and_garbled_frames_close_that_connection_only() {
    let f = fixture().await;

    // A client whose own limit is larger sends a 2 MiB body: over the server's 1 MiB.
    let big = bounded(scone_rpc::client::connect_with(
        f.server.addr,
        Default::default(),
        4 << 20,
    ))
    .await
    .unwrap();
    let mut request = view_request(vec![]);
    request.body = vec![0; 2 << 20].into();
    let result = bounded(big.call(context::current(), request)).await;
    assert!(result.is_err(), "the oversize frame was refused");

    // Our own client refuses to send a frame over its limit.
    let mut request = view_request(vec![]);
    request.body = vec![0; 2 << 20].into();
    assert!(bounded(f.raw.call(context::current(), request))
        .await
        .is_err());

    // Bytes that frame correctly but are not a message.
    let mut stream = bounded(tokio::net::TcpStream::connect(f.server.addr))
        .await
        .unwrap();
    bounded(stream.write_all(&[0, 0, 0, 5, 0xde, 0xad, 0xbe, 0xef, 0x00]))
        .await
        .unwrap();
    drop(stream);

    // The server still serves everyone else.
    let fresh = bounded(cart::connect(f.server.addr, SconeStore::default()))
        .await
        .unwrap();
    let view = bounded(fresh.add(context::current(), "pear".into(), 1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(view.items.get("pear"), Some(&1));
    f.server.stop().await;
}
