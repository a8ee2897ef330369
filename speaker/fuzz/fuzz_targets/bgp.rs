//! The BGP decoder on arbitrary bytes: it must never panic, and whatever it
//! accepts must encode to a message it decodes to the same value.
#![no_main]

use barelb_speaker::bgp::codec::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((msg, used))) = decode(data) {
        assert!(used <= data.len());
        let again = encode(&msg);
        match decode(&again) {
            Ok(Some((round, n))) => {
                assert_eq!(n, again.len());
                assert_eq!(round, msg);
            }
            other => panic!("re-encoded message does not decode: {other:?}"),
        }
    }
});
