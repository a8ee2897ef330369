//! Control-channel messages on arbitrary bytes, as each side reads them:
//! the protobuf decoders must never panic and whatever they accept must
//! re-encode to the same message; the speaker's conversions of what the
//! operator sends (BGP peers to session configurations, routes to tables,
//! addresses, the trace context) must never panic on any decoded value.
#![no_main]

use barelb_control::v1::{OperatorMessage, SpeakerMessage, operator_message};
use barelb_runtime::TraceContext;
use barelb_speaker::agent::bgp::{peer_config, route_table};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = SpeakerMessage::decode(data) {
        let again = SpeakerMessage::decode(m.encode_to_vec().as_slice());
        assert_eq!(again.as_ref(), Ok(&m));
    }
    let Ok(m) = OperatorMessage::decode(data) else {
        return;
    };
    let again = OperatorMessage::decode(m.encode_to_vec().as_slice());
    assert_eq!(again.as_ref(), Ok(&m));
    let (peers, routes, l2, headers) = match m.msg {
        Some(operator_message::Msg::Snapshot(s)) => (s.bgp_peers, s.bgp_routes, s.l2, s.trace_context),
        Some(operator_message::Msg::Delta(d)) => (d.bgp_peers_set, d.bgp_routes_set, d.l2_set, d.trace_context),
        None => return,
    };
    let _ = TraceContext::from_headers(&headers);
    for a in &l2 {
        let _ = a.ip.parse::<std::net::IpAddr>();
        let _ = TraceContext::from_headers(&a.trace_context);
    }
    let mut errors = Vec::new();
    for p in &peers {
        let _ = peer_config(p);
        let _ = route_table(&routes, &p.name, &mut errors);
    }
});
