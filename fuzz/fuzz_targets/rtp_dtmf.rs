//! RTP packets and RFC 4733 events: the header codec and the DTMF decoder take any bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipbridge::media::dtmf::DtmfDecoder;
use sipbridge::media::rtp;

fuzz_target!(|data: &[u8]| {
    let mut dtmf = DtmfDecoder::new(8000);
    // Several packets per input, so the decoder's state across packets is explored too.
    for packet in data.split(|&b| b == 0xA5) {
        if let Ok((header, payload)) = rtp::parse(packet) {
            let _ = dtmf.on_packet(&header, payload);
        }
    }
});
