//! Decoding arbitrary bytes (as a SCONE, as its text form, and as a bundle inside a
//! message) must return a value or a typed error: never panic, hang or over-allocate.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scone::{KeyRing, Scone, SconeBundle, ServiceId, SigningKey, Verifier};

fuzz_target!(|data: &[u8]| {
    let verifier = Verifier::new(
        KeyRing::for_service(
            ServiceId::new("fuzz").expect("a valid name"),
            [SigningKey::from_seed(&[1; 32]).public_key()],
        )
        .expect("one key"),
    );
    if let Ok(scone) = Scone::decode(data.to_vec()) {
        // Whatever decodes survives the text form and serde, unchanged.
        let again = Scone::from_text(&scone.to_text()).expect("text round trip");
        assert_eq!(again, scone);
        let wire = postcard::to_stdvec(&scone).expect("serialize");
        assert_eq!(postcard::from_bytes::<Scone>(&wire).expect("deserialize"), scone);
        let _ = verifier.verify(&scone);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Scone::from_text(text);
    }
    let _ = postcard::from_bytes::<SconeBundle>(data);
});
