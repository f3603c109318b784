//! The SIP message parser: any datagram parses or is refused, never panics; what parses reads
//! through every typed view and survives a write-and-parse round trip.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sipbridge::sip::message::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = Message::parse(Bytes::copy_from_slice(data)) else {
        return;
    };
    let h = msg.headers();
    let _ = (
        h.vias(),
        h.from(),
        h.to(),
        h.contacts(),
        h.record_routes(),
        h.routes(),
    );
    let _ = (
        h.cseq(),
        h.max_forwards(),
        h.top_branch(),
        h.from_tag(),
        h.to_tag(),
    );
    let again = Message::parse(msg.to_bytes()).expect("what we write parses again");
    assert_eq!(again.call_id(), msg.call_id());
    assert_eq!(again.is_request(), msg.is_request());
});
