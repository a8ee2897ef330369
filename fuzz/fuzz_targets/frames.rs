//! Every parser of network input the speaker has, on arbitrary bytes: none
//! may panic, loop, or read out of bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = barelb_speaker::l2::Frame::parse(data);
    let _ = barelb_speaker::net::link::carrier_in(data, 1);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = s.parse::<barelb_speaker::l2::Mac>();
    }
});
