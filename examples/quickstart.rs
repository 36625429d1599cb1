//! The life of a SCONE, narrated: a server mints state, a client holds it, the server
//! restores it, and every kind of tampering is caught.
//!
//! `cargo run --example quickstart` exits 0 when every check passed, 1 naming the first
//! check that failed.

use std::time::Duration;

use anyhow::{ensure, Context};
use scone::context::{self, SconeContext};
use scone::{
    Draft, EndpointId, KeyRing, Minter, Scone, SconeBundle, SconeCache, ServiceId, SigningKey,
    StateFormat, Verifier, VerifyError,
};

fn step(text: &str) {
    println!("\n== {text}");
}

fn main() -> anyhow::Result<()> {
    step("1. The cart service makes a signing key; clients get only the public key");
    let key = SigningKey::generate()?;
    let cart = ServiceId::new("cart")?;
    let minter = Minter::new(key.clone());
    // The key is trusted for cart's SCONEs only: it vouches for no other service.
    let verifier = Verifier::new(KeyRing::for_service(cart.clone(), [key.public_key()])?)
        .for_service(cart.clone());
    println!("public key {}  (key id {})", key.public_key(), key.key_id());

    step("2. First request: no state, so the handler starts a session and writes its state");
    let (written, ctx) = context::sync_scope(SconeContext::default(), || {
        context::write_state_as(&cart, br#"{"items":["apple"]}"#.to_vec(), StateFormat::Json)
    });
    written?;
    let write = ctx
        .writes()
        .first()
        .context("the handler's write was recorded")?;
    let session = Draft::new(cart.clone(), EndpointId::random()?);
    let first = minter.mint(session.with_state(write.state.clone()))?;
    println!(
        "minted version {} ({} bytes): {}",
        first.version(),
        first.encoded_len(),
        first.to_text()
    );

    step("3. The client keeps it in its cache by service ID; the server keeps nothing");
    let client_cache: SconeCache = SconeCache::default();
    client_cache.put(cart.clone(), first.clone());
    ensure!(
        client_cache.len() == 1,
        "check 3 failed: the client cache holds the scone"
    );

    step("4. Next request: the client attaches it, the server verifies and restores the state");
    let attached = client_cache
        .get(&cart)
        .context("check 4 failed: cache hit")?;
    let restored = verifier.decode(attached.encoded().clone())?;
    let mut bundle = SconeBundle::new();
    bundle.insert(restored)?;
    let (seen, ctx) = context::sync_scope(SconeContext::new(bundle), || {
        let seen = context::incoming(&cart)
            .ok()
            .flatten()
            .map(|s| s.state().to_vec());
        let _ = context::write_state_as(
            &cart,
            br#"{"items":["apple","pear"]}"#.to_vec(),
            StateFormat::Json,
        );
        seen
    });
    ensure!(
        seen.as_deref() == Some(&br#"{"items":["apple"]}"#[..]),
        "check 4 failed: the handler saw the state the client brought back"
    );
    let second = minter.mint(first.successor(ctx.writes()[0].state.clone()))?;
    client_cache.put(cart.clone(), second.clone());
    println!(
        "restored {:?}, wrote version {}",
        String::from_utf8_lossy(&seen.unwrap_or_default()),
        second.version()
    );

    step("5. A stale copy cannot roll the client's state back");
    client_cache.put(cart.clone(), first.clone());
    ensure!(
        client_cache.get(&cart).map(|s| s.version()) == Some(2),
        "check 5 failed: the cache kept version 2"
    );

    step("6. Tampering, forgery, other services and expiry are all refused");
    // Change one byte of the state: the signature covers it.
    let mut tampered = second.encoded().to_vec();
    let at = tampered
        .windows(second.state().len())
        .position(|window| window == second.state())
        .context("the state is inside the encoding")?;
    tampered[at] ^= 0x20;
    let forged =
        Minter::new(SigningKey::generate()?).mint(second.successor(b"free stuff".to_vec()))?;
    let billing = minter.mint(Draft::new(
        ServiceId::new("billing")?,
        EndpointId::random()?,
    ))?;
    let short = minter.mint(first.successor(vec![]).with_ttl(Duration::from_millis(1)))?;
    let strict = verifier.clone().with_config(scone::VerifierConfig {
        clock_skew: Duration::ZERO,
        ..Default::default()
    });
    std::thread::sleep(Duration::from_millis(5));
    let cases: [(&str, Result<Scone, VerifyError>); 4] = [
        ("tampered", verifier.decode(tampered)),
        ("forged", verifier.decode(forged.encoded().clone())),
        ("billing's", verifier.decode(billing.encoded().clone())),
        ("expired", strict.decode(short.encoded().clone())),
    ];
    for (name, result) in cases {
        match result {
            Err(error) => println!("{name:>9} scone refused: {error} ({:?})", error.reason()),
            Ok(_) => anyhow::bail!("check 6 failed: a {name} scone was accepted"),
        }
    }

    println!("\nall checks passed");
    Ok(())
}
