//! The BGP decoder on arbitrary bytes: it must never panic, whatever it
//! accepts must encode to a message it decodes to the same value, and a
//! stream read on past messages treated as withdraw (RFC 7606) always
//! advances.
#![no_main]

use barelb_speaker::bgp::codec::{Handling, decode, decode_framed, encode};
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
    // As the session reads a stream: message by message, on past
    // recoverable errors, until one resets or the data runs out.
    let mut rest = data;
    while let Ok(Some((msg, used))) = decode_framed(rest) {
        assert!(used > 0 && used <= rest.len());
        if msg.is_err_and(|e| e.handling() == Handling::SessionReset) {
            break;
        }
        rest = &rest[used..];
    }
});
