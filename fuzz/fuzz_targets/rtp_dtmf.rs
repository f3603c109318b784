//! RTP packets and RFC 4733 events: the header codec, the DTMF decoder and the SRTP receiver
//! take any bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipbridge::media::dtmf::DtmfDecoder;
use sipbridge::media::rtp;
use sipbridge::media::srtp::{MasterKey, SrtpReceiver, Suite};

fuzz_target!(|data: &[u8]| {
    let mut dtmf = DtmfDecoder::new(8000);
    let key = MasterKey::new([7; 16], [9; 14]);
    let mut srtp = [
        SrtpReceiver::new(Suite::AesCm128HmacSha1_80, &key),
        SrtpReceiver::new(Suite::AesCm128HmacSha1_32, &key),
    ];
    // Several packets per input, so the decoder's state across packets is explored too.
    for packet in data.split(|&b| b == 0xA5) {
        for receiver in &mut srtp {
            let mut buf = packet.to_vec();
            if let Ok(len) = receiver.unprotect(&mut buf) {
                assert!(len <= packet.len());
            }
        }
        if let Ok((header, payload)) = rtp::parse(packet) {
            let _ = dtmf.on_packet(&header, payload);
        }
    }
});
