//! The BFD Control packet decoder on arbitrary bytes: it must never panic,
//! and whatever it accepts must encode to a packet it decodes to the same
//! value.
#![no_main]

use barelb_speaker::bfd::codec::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = decode(data) {
        assert_eq!(decode(&encode(&c)), Ok(c));
    }
});
