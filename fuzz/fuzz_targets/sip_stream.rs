//! SIP over TCP/TLS: the stream framer takes any bytes, in any read sizes, and its buffer stays
//! within one message's limits plus one read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipbridge::sip::transport::bad_request;
use sipbridge::sip::transport::framing::{Frame, Framer, MAX_BODY, MAX_HEADER};

fuzz_target!(|data: &[u8]| {
    let Some((&size, mut rest)) = data.split_first() else {
        return;
    };
    // The first byte picks the read size, so short and long reads are both explored.
    let read = usize::from(size).max(1);
    let mut framer = Framer::default();
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(read.min(rest.len()));
        rest = tail;
        framer.push(chunk);
        loop {
            match framer.next_frame() {
                Ok(Some(Frame::Message(m))) => assert!(m.len() <= MAX_HEADER + MAX_BODY),
                Ok(Some(Frame::Ping)) => {}
                Ok(None) => break,
                Err(e) => {
                    // What the connection does with a framing error: one 400 if it can.
                    if let Some(head) = e.head() {
                        let _ = bad_request(head, &e.to_string());
                    }
                    return;
                }
            }
        }
        assert!(framer.buffered() <= MAX_HEADER + MAX_BODY + read);
    }
});
