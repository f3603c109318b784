use super::*;
use proptest::prelude::*;
use rtc::srtp::context::Context;
use rtc::srtp::protection_profile::ProtectionProfile;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    hex::decode(s).expect("test vector is hex")
}

fn array<const N: usize>(s: &str) -> [u8; N] {
    hex(s)
        .try_into()
        .expect("test vector has the array's length")
}

/// RFC 3711 Appendix B.3's master key, reused where any key will do.
fn rfc_master() -> MasterKey {
    MasterKey::new(
        array("E1F97A0D3E018BE0D64FA32C06DE4139"),
        array("0EC675AD498AFEEBB6960B3AABE6"),
    )
}

/// A plain RTP packet; `extras` adds two CSRCs, a one-byte-header extension (RFC 8285) and
/// three bytes of padding, so the payload does not start at byte 12.
fn rtp(seq: u16, ssrc: u32, payload_len: usize, extras: bool) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&u32::from(seq).wrapping_mul(160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    if extras {
        p[0] |= 0x20 | 0x10 | 2;
        p.extend_from_slice(&[0xC5, 0xC5, 0xC5, 0x01, 0xC5, 0xC5, 0xC5, 0x02]);
        // Profile 0xBEDE, one word: element id 1 with one byte, then two padding zeros.
        p.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x01, 0x10, 0xAB, 0x00, 0x00]);
    }
    p.extend((0..payload_len).map(|i| (i as u8).wrapping_mul(7) ^ seq as u8));
    if extras {
        p.extend_from_slice(&[0, 0, 3]);
    }
    p
}

fn protect(sender: &mut SrtpSender, plain: &[u8]) -> Vec<u8> {
    let mut buf = plain.to_vec();
    buf.resize(plain.len() + MAX_TAG_LEN, 0);
    let len = sender.protect(&mut buf, plain.len()).expect("protects");
    buf.truncate(len);
    buf
}

fn unprotect(receiver: &mut SrtpReceiver, srtp: &[u8]) -> Result<Vec<u8>, SrtpError> {
    let mut buf = srtp.to_vec();
    let len = receiver.unprotect(&mut buf)?;
    buf.truncate(len);
    Ok(buf)
}

#[test]
fn rfc3711_b2_aes_cm_keystream() {
    let aes = Aes128::new(&array::<16>("2B7E151628AED2A6ABF7158809CF4F3C").into());
    let iv = packet_iv(&array("F0F1F2F3F4F5F6F7F8F9FAFBFCFD"), 0, 0);
    assert_eq!(iv, array::<16>("F0F1F2F3F4F5F6F7F8F9FAFBFCFD0000"));

    // The RFC's whole segment, 65282 blocks, so the counter runs past 0xFF00.
    let mut keystream = vec![0u8; 65282 * 16];
    apply_keystream(&aes, &iv, &mut keystream);
    let block = |n: usize| &keystream[n * 16..(n + 1) * 16];
    assert_eq!(block(0), hex("E03EAD0935C95E80E166B16DD92B4EB4"));
    assert_eq!(block(1), hex("D23513162B02D0F72A43A2FE4A5F97AB"));
    assert_eq!(block(2), hex("41E95B3BB0A2E8DD477901E4FCA894C0"));
    assert_eq!(block(0xFEFF), hex("EC8CDF7398607CB0F2D21675EA9EA1E4"));
    assert_eq!(block(0xFF00), hex("362B7C3C6773516318A077D7FC5073AE"));
    assert_eq!(block(0xFF01), hex("6A2CC3787889374FBEB4C81B17BA6C44"));
}

#[test]
fn rfc3711_b3_key_derivation() {
    let master = rfc_master();
    let mut key = [0u8; 16];
    derive(&master, LABEL_ENCRYPTION, &mut key);
    assert_eq!(key, array("C61E7A93744F39EE10734AFE3FF7A087"));
    let mut salt = [0u8; 14];
    derive(&master, LABEL_SALT, &mut salt);
    assert_eq!(salt, array("30CBBC08863D8C85D49DB34A9AE1"));
    // The RFC lists 94 octets of auth key; the HMAC uses the first 20, the rest checks the PRF
    // past its first block.
    let mut auth = [0u8; 94];
    derive(&master, LABEL_AUTH, &mut auth);
    let expected = hex(
        "CEBE321F6FF7716B6FD4AB49AF256A15 6D38BAA48F0A0ACF3C34E2359E6CDBCE
         E049646C43D9327AD175578EF7227098 6371C10C9A369AC2F94A8C5FBCDDDC25
         6D6E919A48B610EF17C2041E47403576 6B68642C59BBFC2F34DB60DBDFB2",
    );
    assert_eq!(auth[..], expected[..]);
    assert_eq!(
        auth[..20],
        hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")[..]
    );

    let keys = SessionKeys::new(Suite::AesCm128HmacSha1_80, &master);
    assert_eq!(keys.salt, array("30CBBC08863D8C85D49DB34A9AE1"));
}

#[test]
fn packet_iv_places_ssrc_and_index() {
    let iv = packet_iv(&[0; 14], 0x1122_3344, 0xAABB_CCDD_EEFF);
    assert_eq!(iv, array::<16>("00000000 11223344 AABBCCDDEEFF 0000"));
    let iv = packet_iv(&[0xFF; 14], 0, 1 << 16);
    assert_eq!(iv, array::<16>("FFFFFFFF FFFFFFFF FFFFFFFEFFFF 0000"));
}

#[test]
fn suite_names_and_tags() {
    assert_eq!(
        Suite::ALL,
        [Suite::AesCm128HmacSha1_80, Suite::AesCm128HmacSha1_32]
    );
    for suite in Suite::ALL {
        assert_eq!(Suite::from_name(suite.name()), Some(suite));
    }
    assert_eq!(Suite::AesCm128HmacSha1_80.name(), "AES_CM_128_HMAC_SHA1_80");
    assert_eq!(Suite::AesCm128HmacSha1_32.name(), "AES_CM_128_HMAC_SHA1_32");
    assert_eq!(Suite::from_name("aes_cm_128_hmac_sha1_80"), None);
    assert_eq!(Suite::from_name("AES_CM_128_HMAC_SHA1_80 "), None);
    assert_eq!(Suite::from_name("AEAD_AES_128_GCM"), None);
    assert_eq!(Suite::AesCm128HmacSha1_80.tag_len(), 10);
    assert_eq!(Suite::AesCm128HmacSha1_32.tag_len(), 4);
    assert_eq!(
        Suite::ALL.map(Suite::tag_len).into_iter().max(),
        Some(MAX_TAG_LEN)
    );
}

#[test]
fn inline_key_round_trips() {
    // RFC 4568 §6.1's example key.
    let example = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz";
    let key = MasterKey::from_inline(example).expect("30 bytes");
    assert_eq!(&key.key, b"YS___semctl () {");
    assert_eq!(&key.salt, b"\t220;}\n}\nunles");
    assert_eq!(key.to_inline(), example);

    let random = MasterKey::random();
    let inline = random.to_inline();
    assert_eq!(inline.len(), 40);
    assert_eq!(MasterKey::from_inline(&inline), Some(random));
}

#[test]
fn inline_key_rejects_other_lengths_and_bad_base64() {
    let short = INLINE.encode([7u8; 29]);
    let long = INLINE.encode([7u8; 31]);
    let long_unpadded = long.trim_end_matches('=');
    for bad in [
        "",
        short.as_str(),
        long.as_str(),
        long_unpadded,
        "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGV", // one character short
        "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4",
        "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGV!",
        "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz ",
    ] {
        assert_eq!(MasterKey::from_inline(bad), None, "{bad:?}");
    }
}

#[test]
fn random_keys_differ_and_debug_hides_them() {
    let (a, b) = (MasterKey::random(), MasterKey::random());
    assert_ne!(a, b);
    assert_eq!(format!("{a:?}"), "MasterKey(<redacted>)");
    let inline = a.to_inline();
    assert!(!format!("{a:?}").contains(&inline[..8]));
}

fn rtc_profile(suite: Suite) -> ProtectionProfile {
    match suite {
        Suite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
        Suite::AesCm128HmacSha1_32 => ProtectionProfile::Aes128CmHmacSha1_32,
    }
}

fn rtc_context(suite: Suite, key: &MasterKey) -> Context {
    let provider = rtc::crypto::default_provider().expect("rtc is built with ring");
    Context::new(
        &key.key,
        &key.salt,
        rtc_profile(suite),
        None,
        None,
        provider.crypto(),
    )
    .expect("rtc context")
}

/// 300 packets from sequence 65500, so both ends cross the wrap into ROC 1.
fn wrapping_stream(ssrc: u32) -> Vec<Vec<u8>> {
    (0..300u16)
        .map(|i| {
            rtp(
                65500u16.wrapping_add(i),
                ssrc,
                usize::from(i % 170) + 1,
                i % 3 == 0,
            )
        })
        .collect()
}

#[test]
fn interop_with_rtc_across_the_sequence_wrap() {
    for suite in Suite::ALL {
        assert_eq!(rtc_profile(suite).rtp_auth_tag_len(), suite.tag_len());
        let key = MasterKey::random();
        let mut ours_out = SrtpSender::new(suite, &key);
        let mut ours_in = SrtpReceiver::new(suite, &key);
        let mut rtc_out = rtc_context(suite, &key);
        let mut rtc_in = rtc_context(suite, &key);

        let plains = wrapping_stream(0xCAFE_F00D);
        let mut from_rtc = Vec::new();
        // A keystream byte is zero one time in 256, so a short payload can come out as it went
        // in: the stream as a whole is judged, not each packet.
        let (mut unchanged, mut payload) = (0usize, 0usize);
        for plain in &plains {
            let ours = protect(&mut ours_out, plain);
            assert_eq!(ours.len(), plain.len() + suite.tag_len());
            let start = payload_offset(plain).expect("the stream is RTP");
            payload += plain.len() - start;
            unchanged += plain[start..]
                .iter()
                .zip(&ours[start..])
                .filter(|(p, o)| p == o)
                .count();
            let theirs = rtc_out.encrypt_rtp(plain).expect("rtc encrypts");
            // Both are deterministic, so the same state gives the same bytes.
            assert_eq!(ours[..], theirs[..], "{suite:?} seq {:?}", &plain[2..4]);
            let decrypted = rtc_in.decrypt_rtp(&ours).expect("rtc decrypts ours");
            assert_eq!(decrypted[..], plain[..]);
            from_rtc.push(theirs.to_vec());
        }
        // About 0.4 % by chance; a payload left in the clear would be 100 %.
        assert!(
            unchanged * 50 < payload,
            "{suite:?}: {unchanged} of {payload} payload bytes unchanged"
        );

        // Ours receives rtc's packets with neighbours swapped, 65535 after 0 among them, so the
        // ROC estimate must look back (ROC - 1) as well as ahead.
        let mut order: Vec<usize> = (0..plains.len()).collect();
        assert_eq!(
            plains[36][2..4],
            [0, 0],
            "sequence 0 is at an even position"
        );
        for pair in order[1..].chunks_mut(2) {
            pair.reverse();
        }
        for i in order {
            let plain = unprotect(&mut ours_in, &from_rtc[i]).expect("ours decrypts rtc's");
            assert_eq!(plain, plains[i]);
        }
        let stream = ours_in.streams[0].as_ref().expect("a stream");
        assert_eq!(stream.highest >> 16, 1, "ROC advanced past the wrap");
        assert_eq!(ours_out.stream.map(|(_, highest)| highest >> 16), Some(1));
    }
}

#[test]
fn header_only_packet_round_trips() {
    let key = rfc_master();
    let plain = rtp(9, 1, 0, false);
    let srtp = protect(
        &mut SrtpSender::new(Suite::AesCm128HmacSha1_80, &key),
        &plain,
    );
    assert_eq!(srtp.len(), HEADER_LEN + 10);
    let mut receiver = SrtpReceiver::new(Suite::AesCm128HmacSha1_80, &key);
    assert_eq!(unprotect(&mut receiver, &srtp), Ok(plain));
}

/// Protected packets 0..n of one stream, for the receive-side tests.
fn protected(
    suite: Suite,
    key: &MasterKey,
    ssrc: u32,
    seqs: impl Iterator<Item = u16>,
) -> Vec<Vec<u8>> {
    let mut sender = SrtpSender::new(suite, key);
    seqs.map(|seq| protect(&mut sender, &rtp(seq, ssrc, 160, false)))
        .collect()
}

#[test]
fn replays_and_old_packets_are_rejected_reordering_is_not() {
    let key = rfc_master();
    let mut receiver = SrtpReceiver::new(Suite::AesCm128HmacSha1_80, &key);
    let packets = protected(Suite::AesCm128HmacSha1_80, &key, 7, 0..=100);
    for (seq, packet) in packets.iter().enumerate() {
        if ![36, 37, 40, 99].contains(&seq) {
            assert!(unprotect(&mut receiver, packet).is_ok(), "seq {seq}");
        }
    }
    assert_eq!(
        unprotect(&mut receiver, &packets[100]),
        Err(SrtpError::Replayed)
    );
    assert_eq!(
        unprotect(&mut receiver, &packets[50]),
        Err(SrtpError::Replayed)
    );
    // Within the window and never seen: accepted late, then a replay.
    assert_eq!(
        unprotect(&mut receiver, &packets[99]),
        Ok(rtp(99, 7, 160, false))
    );
    assert_eq!(
        unprotect(&mut receiver, &packets[40]),
        Ok(rtp(40, 7, 160, false))
    );
    assert_eq!(
        unprotect(&mut receiver, &packets[40]),
        Err(SrtpError::Replayed)
    );
    assert!(unprotect(&mut receiver, &packets[37]).is_ok(), "63 behind");
    assert_eq!(
        unprotect(&mut receiver, &packets[36]),
        Err(SrtpError::TooOld),
        "64 behind"
    );
    assert_eq!(
        unprotect(&mut receiver, &packets[0]),
        Err(SrtpError::TooOld)
    );
}

#[test]
fn a_forgery_is_rejected_and_changes_nothing() {
    for suite in Suite::ALL {
        let key = rfc_master();
        let mut receiver = SrtpReceiver::new(suite, &key);
        let packets = protected(suite, &key, 7, 1000..1100);
        for packet in &packets[..50] {
            unprotect(&mut receiver, packet).expect("genuine");
        }
        let state = |r: &SrtpReceiver| r.streams[0].as_ref().map(|s| (s.ssrc, s.highest, s.window));
        let before = state(&receiver);

        let genuine = &packets[50];
        let tag_at = genuine.len() - suite.tag_len();
        // One bit in the payload, in the tag, in the sequence number (its top bit: an index
        // 32768 ahead) and in the SSRC (it would start a new stream).
        for bit in [8 * 40, 8 * tag_at + 3, 8 * 2 + 7, 8 * 8 + 7] {
            let mut forged = genuine.clone();
            forged[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(
                unprotect(&mut receiver, &forged),
                Err(SrtpError::AuthFailed)
            );
            assert_eq!(state(&receiver), before, "{suite:?} bit {bit}");
        }
        assert_eq!(
            unprotect(&mut receiver, genuine),
            Ok(rtp(1050, 7, 160, false))
        );
        assert_eq!(
            unprotect(&mut receiver, &packets[10]),
            Err(SrtpError::Replayed)
        );
    }
}

#[test]
fn a_new_ssrc_that_authenticates_starts_a_new_stream() {
    let suite = Suite::AesCm128HmacSha1_80;
    let key = rfc_master();
    let mut receiver = SrtpReceiver::new(suite, &key);
    // The first stream gets past its wrap, to ROC 1.
    for packet in protected(suite, &key, 1, (65530..=65535).chain(0..10)) {
        unprotect(&mut receiver, &packet).expect("first stream");
    }
    // The restarted stream is at ROC 0 with sequence numbers the old window has seen.
    let restarted = protected(suite, &key, 2, 3..8);
    for packet in &restarted {
        assert!(unprotect(&mut receiver, packet).is_ok());
    }
    let stream = receiver.streams[0].as_ref().expect("a stream");
    assert_eq!((stream.ssrc, stream.highest), (2, 7));
    assert_eq!(
        unprotect(&mut receiver, &restarted[0]),
        Err(SrtpError::Replayed)
    );
}

#[test]
fn protect_rejects_short_buffers_and_non_rtp() {
    let mut sender = SrtpSender::new(Suite::AesCm128HmacSha1_80, &rfc_master());
    let plain = rtp(1, 1, 160, false);

    let mut buf = plain.clone();
    buf.resize(plain.len() + 9, 0);
    let untouched = buf.clone();
    assert_eq!(
        sender.protect(&mut buf, plain.len()),
        Err(SrtpError::TooShort)
    );
    assert_eq!(
        buf, untouched,
        "nothing encrypted when the tag does not fit"
    );
    let past_the_end = buf.len() + 1;
    assert_eq!(
        sender.protect(&mut buf, past_the_end),
        Err(SrtpError::TooShort)
    );

    let mut buf = [0u8; 64];
    buf[..11].copy_from_slice(&plain[..11]);
    assert_eq!(sender.protect(&mut buf, 11), Err(SrtpError::NotRtp));
    let mut version1 = plain.clone();
    version1[0] = 0x40;
    version1.resize(plain.len() + 10, 0);
    assert_eq!(
        sender.protect(&mut version1, plain.len()),
        Err(SrtpError::NotRtp)
    );
    // Fifteen CSRCs claimed in a 20-byte packet; an extension running past the end.
    let mut csrcs = rtp(1, 1, 8, false);
    csrcs[0] |= 0x0F;
    let len = csrcs.len();
    csrcs.resize(len + 10, 0);
    assert_eq!(sender.protect(&mut csrcs, len), Err(SrtpError::NotRtp));
    let mut extension = rtp(1, 1, 8, false);
    extension[0] |= 0x10;
    extension[14..16].copy_from_slice(&[0x00, 0x02]);
    let len = extension.len();
    extension.resize(len + 10, 0);
    assert_eq!(sender.protect(&mut extension, len), Err(SrtpError::NotRtp));
}

#[test]
fn unprotect_rejects_truncated_and_non_rtp_packets() {
    let suite = Suite::AesCm128HmacSha1_80;
    let key = rfc_master();
    let mut receiver = SrtpReceiver::new(suite, &key);
    let packet = &protected(suite, &key, 7, 5..6)[0];
    for len in 0..HEADER_LEN + suite.tag_len() {
        assert_eq!(
            receiver.unprotect(&mut packet.clone()[..len]),
            Err(SrtpError::TooShort)
        );
    }
    let mut version0 = packet.clone();
    version0[0] &= 0x3F;
    assert_eq!(receiver.unprotect(&mut version0), Err(SrtpError::NotRtp));
    assert!(receiver.streams[0].is_none());
    assert_eq!(unprotect(&mut receiver, packet), Ok(rtp(5, 7, 160, false)));
}

proptest! {
    #[test]
    fn unprotect_never_panics_on_arbitrary_bytes(
        bytes in proptest::collection::vec(any::<u8>(), 0..=200),
        rtp_like in any::<bool>(),
    ) {
        let key = rfc_master();
        let mut receiver = SrtpReceiver::new(Suite::AesCm128HmacSha1_80, &key);
        let packets = protected(Suite::AesCm128HmacSha1_80, &key, 7, 10..12);
        unprotect(&mut receiver, &packets[0]).expect("genuine");

        let mut garbage = bytes;
        if rtp_like {
            // Version 2 and the current SSRC, so the bytes reach the index estimate and the MAC.
            if let Some(first) = garbage.first_mut() {
                *first = 0x80 | (*first & 0x3F);
            }
            if let Some(ssrc) = garbage.get_mut(8..12) {
                ssrc.copy_from_slice(&7u32.to_be_bytes());
            }
        }
        let short = garbage.len() < HEADER_LEN + 10;
        let result = receiver.unprotect(&mut garbage);
        prop_assert!(result.is_err(), "an 80-bit tag does not match by chance");
        if short {
            prop_assert_eq!(result, Err(SrtpError::TooShort));
        }
        prop_assert_eq!(receiver.streams[0].as_ref().map(|s| (s.highest, s.window)), Some((10, 1)));
        prop_assert_eq!(unprotect(&mut receiver, &packets[1]), Ok(rtp(11, 7, 160, false)));
    }

    #[test]
    fn the_short_tag_suite_never_panics_either(bytes in proptest::collection::vec(any::<u8>(), 0..=40)) {
        let mut receiver = SrtpReceiver::new(Suite::AesCm128HmacSha1_32, &rfc_master());
        let mut garbage = bytes;
        let len = garbage.len();
        if let Ok(plain) = receiver.unprotect(&mut garbage) {
            // A 32-bit tag can match by chance; the length must still be the packet's.
            prop_assert_eq!(plain, len - 4);
        }
    }
}

/// Alternating SSRCs must not reopen a stream's window: each SSRC seen resumes its own, so a
/// captured packet of the first stream is still a replay after the second one spoke.
#[test]
fn alternating_ssrcs_cannot_replay_a_stream() {
    let suite = Suite::AesCm128HmacSha1_80;
    let key = rfc_master();
    let mut receiver = SrtpReceiver::new(suite, &key);
    let first = protected(suite, &key, 1, 100..105);
    let second = protected(suite, &key, 2, 100..105);
    for (a, b) in first.iter().zip(&second) {
        unprotect(&mut receiver, a).expect("first stream");
        unprotect(&mut receiver, b).expect("second stream");
    }
    for packet in first.iter().chain(&second) {
        assert_eq!(unprotect(&mut receiver, packet), Err(SrtpError::Replayed));
    }
    // Past the remembered streams the oldest is forgotten: four newer SSRCs push out the first.
    for ssrc in 3..=6 {
        unprotect(&mut receiver, &protected(suite, &key, ssrc, 7..8)[0]).expect("a new stream");
    }
    assert!(
        unprotect(&mut receiver, &first[0]).is_ok(),
        "forgotten, so fresh again"
    );
}
