//! Timed metadata (PutMetadata) in the local stream's segments, carried as
//! IVS carries it: an ID3v2.4 tag with one `PRIV` frame per payload, owned
//! by "metadata.live-video.net", in a PES stream of the segment's program.
//!
//! The form, and where it comes from:
//! - Apple, "Timed Metadata for HTTP Live Streaming" (developer.apple.com,
//!   HTTP_Live_Streaming_Metadata_Spec, section 2): the ID3 tag is the
//!   payload of a PES packet with stream_id 0xBD (private_stream_1), a PTS
//!   and data_alignment_indicator 1; the PMT names the stream with
//!   stream_type 0x15 (metadata in PES) and a metadata_descriptor (tag
//!   0x26) in its ES_info, and announces it with a metadata_pointer_descriptor
//!   (tag 0x25) in program_info; both say 'ID3 ' with the "registered"
//!   format codes 0xFFFF and 0xFF.
//! - An IVS segment carrying a PutMetadata payload: `videos/aws-example.ts`
//!   in github.com/skliffmueller/act-rtmp-encoder (commit 64501b7; its
//!   docs/STORY.md: "analyzing the packets in one of Amazon's test streams
//!   [...] an ID3 metadata encoded buffer with a single PRIV frame,
//!   containing owner, and text json data"), read here with ffprobe and by
//!   hand. Its PMT has exactly the descriptors above, and the ID3 stream is
//!   PID 0x102 after audio and video. Two ID3 tags, each ID3v2.4 with no
//!   flags, each the payload of its own PES (stream_id 0xBD, PTS only,
//!   data_alignment_indicator 1): at the segment's start, text frames and a
//!   `TXXX` "segmentmetadata" (IVS's per-segment JSON, also in the tests of
//!   github.com/tonalfitness/easyid3, id3v2_test.go, "ivsID3"); and, about
//!   a second in, the PutMetadata payload (a quiz question in JSON) as one
//!   `PRIV` frame: owner "metadata.live-video.net", NUL, the payload's bytes
//!   with no terminator. That second tag is what [`id3_priv`] writes, byte
//!   for byte. github.com/tonalfitness/ivsmeta, which reads timed metadata
//!   out of IVS recordings, finds it the same way (the PMT stream of type
//!   21).
//! - The IVS Web Player's cue (amazon-ivs-player 1.56.1 in Chromium, the
//!   viewer page, `tests/browser/play.mjs`): that `PRIV` frame becomes a
//!   `TEXT_METADATA_CUE` with `owner: "metadata.live-video.net"`,
//!   `description: ""` and `text` the payload, the cue logged from the IVS
//!   test stream in "Creating Interactive Live Streaming Experiences Using
//!   Timed Metadata with Amazon IVS" (dev.to/aws, 2022). The player's
//!   typings call that owner "HTTP sourced, out of band ID3 metadata"
//!   (`MetadataID3Type.METADATA_ID`, dist/index.d.ts), and
//!   `TextMetadataCue.owner` "the source of the cue, either RTMP inband or
//!   HTTP out of band". Tried in the same player: a `TXXX` frame with an
//!   empty description gives the same text and description but
//!   `owner: ""`; a `PRIV` owned by "inband.metadata.live-video.net" gives
//!   that owner; one owned by "foo.example" gives no cue at all.
//! - The segment tag is per segment, so IVS announces the metadata stream
//!   in every segment; the clip does not, and the PMT gains it only in a
//!   segment with cues. The IVS Web Player plays that: live, segments with
//!   and without the stream in turn, it fires a cue for each and plays on.

use std::borrow::Cow;

use super::ts::{self, PTS_MASK, Pmt, Stream, TsError};

/// The owner IVS gives the `PRIV` frame of a PutMetadata payload, and the
/// IVS Web Player gives its cue: "HTTP sourced, out of band ID3 metadata"
/// (the player's `MetadataID3Type.METADATA_ID`).
pub(crate) const PUT_METADATA_OWNER: &str = "metadata.live-video.net";

/// A PutMetadata payload as IVS carries it: an ID3v2.4 tag (id3.org "ID3
/// tag version 2.4.0 - Main Structure": "ID3", version 4.0, no flags, a
/// syncsafe size of what follows) with one `PRIV` frame (section 4.27 of
/// the frames document: the owner, NUL, then the private data, here the
/// payload's UTF-8 as it is, with no terminator) whose size is syncsafe too
/// in 2.4.
pub(crate) fn id3_priv(payload: &str) -> Vec<u8> {
    let body_len = PUT_METADATA_OWNER.len() + 1 + payload.len();
    let mut out = Vec::with_capacity(20 + body_len);
    out.extend_from_slice(b"ID3\x04\x00\x00");
    out.extend_from_slice(&syncsafe(10 + body_len));
    out.extend_from_slice(b"PRIV");
    out.extend_from_slice(&syncsafe(body_len));
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(PUT_METADATA_OWNER.as_bytes());
    out.push(0);
    out.extend_from_slice(payload.as_bytes());
    out
}

/// A 28-bit size as four bytes of seven bits (ID3v2.4 section 6.2). Sizes
/// here are a few KB at most; larger ones are cut to 28 bits.
fn syncsafe(n: usize) -> [u8; 4] {
    let n = n as u32;
    [
        (n >> 21) as u8 & 0x7F,
        (n >> 14) as u8 & 0x7F,
        (n >> 7) as u8 & 0x7F,
        n as u8 & 0x7F,
    ]
}

/// PMT stream_type of metadata carried in PES packets (13818-1 table 2-34).
pub(crate) const METADATA_STREAM_TYPE: u8 = 0x15;
/// private_stream_1, the stream_id Apple's spec gives ID3 in PES.
const PRIVATE_STREAM_1: u8 = 0xBD;
/// The PID the metadata stream takes when the PMT has none: the next after
/// the clip's video (0x100) and audio (0x101), as ffmpeg numbers streams.
const METADATA_PID: u16 = 0x102;

/// metadata_pointer_descriptor (13818-1 2.6.58; Apple's spec 2.3.2.2):
/// application format 0xFFFF + 'ID3 ', format 0xFF + 'ID3 ', service 0,
/// no locator record, MPEG_carriage_flags 0 (this transport stream),
/// reserved bits set, then the program number.
fn metadata_pointer_descriptor(program_number: u16) -> Vec<u8> {
    let mut d = vec![0x25, 15, 0xFF, 0xFF];
    d.extend_from_slice(b"ID3 \xFFID3 ");
    d.extend_from_slice(&[0x00, 0x1F]);
    d.extend_from_slice(&program_number.to_be_bytes());
    d
}

/// metadata_descriptor (13818-1 2.6.60; Apple's spec 2.3.2.3): the same
/// formats and service, decoder_config_flags 000, DSM-CC_flag 0, reserved.
fn metadata_descriptor() -> Vec<u8> {
    let mut d = vec![0x26, 13, 0xFF, 0xFF];
    d.extend_from_slice(b"ID3 \xFFID3 ");
    d.extend_from_slice(&[0x00, 0x0F]);
    d
}

/// A payload for one segment: the text and its time, in 90 kHz ticks after
/// the segment's first video frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cue {
    pub(crate) text: String,
    pub(crate) offset_ticks: u64,
}

/// The segment with `cues` in it: one PES (one ID3 tag, one `PRIV`) per cue
/// on the PMT's metadata stream, right after the first PMT, stamped with the
/// segment's first video PTS plus the cue's offset. A PMT that does not
/// announce the metadata stream is rewritten to (the version bumped, so a
/// demuxer that keeps PMTs by version reads it again).
///
/// With no cue the segment comes back as it is, borrowed: not even read.
pub(crate) fn with_cues<'a>(segment: &'a [u8], cues: &[Cue]) -> Result<Cow<'a, [u8]>, TsError> {
    if cues.is_empty() {
        return Ok(Cow::Borrowed(segment));
    }
    let packets = ts::packets(segment)?;
    let (_, pmt_pid) = ts::program(&packets)?;
    let pmt_packet = packets
        .iter()
        .find(|p| p.pid == pmt_pid && p.start)
        .ok_or_else(|| TsError(format!("no PMT on PID {pmt_pid:#x}")))?;
    let pmt = Pmt::read(pmt_packet)?;
    let video_pid = pmt
        .streams
        .iter()
        .find(|s| matches!(s.stream_type, 0x1B | 0x24 | 0x02))
        .map_or(pmt.pcr_pid, |s| s.pid);
    let base = ts::first_pts(&packets, video_pid)
        .ok_or_else(|| TsError("no video PES with a PTS".into()))?;

    let (new_pmt, pid) = announce(&pmt)?;
    // The cues go in before the media, so a PID that already carries packets
    // (none does in the clip) would have its continuity broken.
    if packets.iter().any(|p| p.pid == pid) {
        return Err(TsError(format!(
            "PID {pid:#x} already carries packets; cues would break its continuity"
        )));
    }
    let mut continuity = 0;
    let mut metadata = Vec::new();
    for cue in cues {
        let pes = ts::pes(
            PRIVATE_STREAM_1,
            base.wrapping_add(cue.offset_ticks) & PTS_MASK,
            &id3_priv(&cue.text),
        )?;
        metadata.extend(ts::packetize(pid, &pes, &mut continuity));
    }

    let mut out = Vec::with_capacity(segment.len() + metadata.len());
    let mut inserted = false;
    for p in &packets {
        if p.pid == pmt_pid && p.start {
            match &new_pmt {
                Some(pmt) => out.extend_from_slice(&pmt.packet(p)?),
                None => out.extend_from_slice(p.bytes),
            }
            if !inserted {
                out.extend_from_slice(&metadata);
                inserted = true;
            }
        } else {
            out.extend_from_slice(p.bytes);
        }
    }
    Ok(Cow::Owned(out))
}

/// The PMT with the metadata stream announced (`None`: it already is) and
/// the stream's PID.
fn announce(pmt: &Pmt) -> Result<(Option<Pmt>, u16), TsError> {
    if let Some(s) = pmt
        .streams
        .iter()
        .find(|s| s.stream_type == METADATA_STREAM_TYPE)
    {
        return Ok((None, s.pid));
    }
    let pid = (METADATA_PID..0x1FFF)
        .find(|pid| *pid != pmt.pcr_pid && pmt.streams.iter().all(|s| s.pid != *pid))
        .ok_or_else(|| TsError("no free PID for the metadata stream".into()))?;
    let mut new = pmt.clone();
    new.version = (pmt.version + 1) & 0x1F;
    new.program_info
        .extend(metadata_pointer_descriptor(pmt.program_number));
    new.streams.push(Stream {
        stream_type: METADATA_STREAM_TYPE,
        pid,
        info: metadata_descriptor(),
    });
    Ok((Some(new), pid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::local_ivs::live_media::segment;
    use crate::service::local_ivs::ts::Packet;

    /// Reads back the cues of a segment: (PTS, ID3 tag) of each PES on the
    /// PMT's metadata stream, for tests and diagnostics.
    pub(crate) fn read_id3(segment: &[u8]) -> Result<Vec<(u64, Vec<u8>)>, TsError> {
        let packets = ts::packets(segment)?;
        let (_, pmt_pid) = ts::program(&packets)?;
        let pmt = packets
            .iter()
            .find(|p| p.pid == pmt_pid && p.start)
            .ok_or_else(|| TsError("no PMT".into()))
            .and_then(Pmt::read)?;
        let Some(stream) = pmt
            .streams
            .iter()
            .find(|s| s.stream_type == METADATA_STREAM_TYPE)
        else {
            return Ok(Vec::new());
        };
        let mut found: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut pes: Vec<u8> = Vec::new();
        let mut expected: Option<u8> = None;
        let finish = |pes: &[u8], found: &mut Vec<(u64, Vec<u8>)>| -> Result<(), TsError> {
            if pes.is_empty() {
                return Ok(());
            }
            let pts = ts::first_pts(&[fake_start(pes)], 0)
                .ok_or_else(|| TsError("cue PES without PTS".into()))?;
            let skip = 9 + usize::from(*pes.get(8).unwrap_or(&0));
            found.push((pts, pes.get(skip..).unwrap_or_default().to_vec()));
            Ok(())
        };
        for p in packets.iter().filter(|p| p.pid == stream.pid) {
            if expected.is_some_and(|e| e != p.continuity) {
                return Err(TsError(format!(
                    "continuity {} where {expected:?} was due",
                    p.continuity
                )));
            }
            expected = Some((p.continuity + 1) & 0x0F);
            if p.start {
                finish(&pes, &mut found)?;
                pes.clear();
            }
            pes.extend_from_slice(p.payload);
        }
        finish(&pes, &mut found)?;
        Ok(found)
    }

    /// A packet view of a reassembled PES, so that `first_pts` can read it.
    fn fake_start(pes: &[u8]) -> Packet<'_> {
        Packet {
            bytes: pes,
            pid: 0,
            start: true,
            continuity: 0,
            payload: pes,
        }
    }

    /// The `PRIV` frames of an ID3v2.4 tag: (owner, data as UTF-8).
    pub(crate) fn read_priv(tag: &[u8]) -> Result<Vec<(String, String)>, TsError> {
        let bad = |why: &str| TsError(format!("ID3: {why}"));
        if tag.get(..4) != Some(b"ID3\x04") {
            return Err(bad("not an ID3v2.4 tag"));
        }
        let size = |b: &[u8]| {
            b.iter()
                .fold(0usize, |n, &x| n << 7 | usize::from(x & 0x7F))
        };
        let end = 10 + size(tag.get(6..10).ok_or_else(|| bad("short header"))?);
        let frames = tag
            .get(10..end)
            .ok_or_else(|| bad("tag longer than its bytes"))?;
        let mut out = Vec::new();
        let mut at = 0;
        while let Some(header) = frames.get(at..at + 10) {
            let len = size(&header[4..8]);
            let body = frames
                .get(at + 10..at + 10 + len)
                .ok_or_else(|| bad("frame cut short"))?;
            if &header[..4] == b"PRIV" {
                let nul = body
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or_else(|| bad("PRIV without NUL after its owner"))?;
                let text =
                    |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| bad("PRIV not UTF-8"));
                out.push((text(&body[..nul])?, text(&body[nul + 1..])?));
            }
            at += 10 + len;
        }
        Ok(out)
    }

    fn clip(rendition: &str, n: u64) -> &'static [u8] {
        segment(rendition, n).expect("the clip has this segment")
    }

    fn cue(text: &str, offset_ticks: u64) -> Cue {
        Cue {
            text: text.into(),
            offset_ticks,
        }
    }

    #[test]
    fn id3_priv_is_an_id3v24_tag_with_one_frame_owned_as_ivs_owns_put_metadata() {
        let tag = id3_priv("hé");
        // 10 + 24 + 3 bytes after the header: 0x25; 24 + 3 in the frame: 0x1b.
        let mut want = b"ID3\x04\x00\x00\x00\x00\x00\x25PRIV\x00\x00\x00\x1b\x00\x00".to_vec();
        want.extend_from_slice(b"metadata.live-video.net\x00");
        want.extend_from_slice("hé".as_bytes());
        assert_eq!(tag, want);
        assert_eq!(
            read_priv(&tag).unwrap(),
            vec![(PUT_METADATA_OWNER.to_owned(), "hé".to_owned())]
        );
        // Sizes past 127 are syncsafe: 7 bits a byte.
        assert_eq!(syncsafe(1058), [0, 0, 8, 34]);
        let big = id3_priv(&"x".repeat(1024));
        assert_eq!(&big[6..10], &syncsafe(10 + 24 + 1024));
        assert_eq!(&big[14..18], &syncsafe(24 + 1024));
        assert_eq!(read_priv(&big).unwrap()[0].1.len(), 1024);
    }

    #[test]
    fn with_no_cue_every_clip_segment_comes_back_borrowed_and_identical() {
        for rendition in ["720p30", "360p30"] {
            for n in 0..4 {
                let seg = clip(rendition, n);
                let out = with_cues(seg, &[]).unwrap();
                assert!(matches!(out, Cow::Borrowed(b) if std::ptr::eq(b, seg)));
            }
        }
    }

    #[test]
    fn cues_read_back_with_their_pts_a_valid_pmt_and_the_media_untouched() {
        for rendition in ["720p30", "360p30"] {
            for n in 0..4 {
                let seg = clip(rendition, n);
                let out = with_cues(seg, &[cue("{\"a\":1}", 0), cue("second", 45_000)]).unwrap();
                let packets = ts::packets(&out).unwrap();
                let (program, pmt_pid) = ts::program(&packets).unwrap();
                // Pmt::read checks the CRC.
                let pmt = Pmt::read(packets.iter().find(|p| p.pid == pmt_pid).unwrap()).unwrap();
                let meta = pmt.streams.iter().find(|s| s.stream_type == 0x15).unwrap();
                assert_eq!(meta.pid, METADATA_PID);
                assert_eq!(meta.info, metadata_descriptor());
                assert_eq!(pmt.program_info, metadata_pointer_descriptor(program));
                let old = Pmt::read(
                    ts::packets(seg)
                        .unwrap()
                        .iter()
                        .find(|p| p.pid == pmt_pid)
                        .unwrap(),
                )
                .unwrap();
                assert_eq!(pmt.version, (old.version + 1) & 0x1F);
                assert_eq!(pmt.streams[..2], old.streams[..]);

                let video = ts::first_pts(&ts::packets(seg).unwrap(), 0x100).unwrap();
                let cues = read_id3(&out).unwrap();
                assert_eq!(cues.len(), 2);
                assert_eq!(cues[0].0, video);
                assert_eq!(cues[1].0, video + 45_000);
                assert_eq!(
                    read_priv(&cues[0].1).unwrap(),
                    vec![(PUT_METADATA_OWNER.into(), "{\"a\":1}".into())]
                );
                assert_eq!(
                    read_priv(&cues[1].1).unwrap(),
                    vec![(PUT_METADATA_OWNER.into(), "second".into())]
                );

                // Every other packet is the clip's, in its order.
                let media: Vec<&[u8]> = packets
                    .iter()
                    .filter(|p| p.pid != METADATA_PID && p.pid != pmt_pid)
                    .map(|p| p.bytes)
                    .collect();
                let clip_media: Vec<&[u8]> = ts::packets(seg)
                    .unwrap()
                    .iter()
                    .filter(|p| p.pid != pmt_pid)
                    .map(|p| p.bytes)
                    .collect();
                assert_eq!(media, clip_media);
            }
        }
    }

    #[test]
    fn a_kilobyte_payload_spans_packets_with_continuous_counters() {
        // PutMetadata takes up to 1 KB of UTF-8.
        let text: String = "é".repeat(512);
        assert_eq!(text.len(), 1024);
        let out = with_cues(clip("720p30", 1), &[cue(&text, 0), cue("next", 1)]).unwrap();
        let packets = ts::packets(&out).unwrap();
        let meta: Vec<&Packet<'_>> = packets.iter().filter(|p| p.pid == METADATA_PID).collect();
        // 14 + 1068 bytes of PES: 6 packets, then 1 for the short one.
        assert_eq!(meta.len(), 7);
        let counters: Vec<u8> = meta.iter().map(|p| p.continuity).collect();
        assert_eq!(counters, (0..7).collect::<Vec<u8>>());
        assert_eq!(meta.iter().filter(|p| p.start).count(), 2);
        let cues = read_id3(&out).unwrap();
        assert_eq!(read_priv(&cues[0].1).unwrap()[0].1, text);
        assert_eq!(read_priv(&cues[1].1).unwrap()[0].1, "next");
    }

    #[test]
    fn a_pts_past_2_pow_33_wraps() {
        let out = with_cues(clip("360p30", 0), &[cue("w", PTS_MASK)]).unwrap();
        let video = ts::first_pts(&ts::packets(clip("360p30", 0)).unwrap(), 0x100).unwrap();
        assert_eq!(read_id3(&out).unwrap()[0].0, video - 1);
    }

    #[test]
    fn a_bad_segment_is_an_error_never_a_panic() {
        let c = [cue("x", 0)];
        assert!(with_cues(&[], &c).is_err());
        assert!(with_cues(&[0x47; 100], &c).is_err());
        assert!(with_cues(&[0u8; 188], &c).is_err());
        let seg = clip("360p30", 0);
        assert!(with_cues(&seg[..188 * 2], &c).is_err(), "no PMT");
        // Every byte of the PSI packets and the first video packet, each
        // value: errors or a segment, no panic.
        for at in 0..188 * 4 {
            for v in [0x00, 0x01, 0x0F, 0x10, 0x3F, 0x40, 0x80, 0xB7, 0xFF] {
                let mut bad = seg.to_vec();
                bad[at] = v;
                let _ = with_cues(&bad, &c);
                let _ = read_id3(&bad);
            }
        }
        // A PMT that already announces the stream is kept as it is.
        let once = with_cues(seg, &c).unwrap().into_owned();
        let pmt_of = |s: &[u8]| ts::packets(s).unwrap()[2].bytes.to_vec();
        let without: Vec<u8> = ts::packets(&once)
            .unwrap()
            .iter()
            .filter(|p| p.pid != METADATA_PID)
            .flat_map(|p| p.bytes.iter().copied())
            .collect();
        let twice = with_cues(&without, &c).unwrap();
        assert_eq!(pmt_of(&twice), pmt_of(&once));
        assert_eq!(read_id3(&twice).unwrap().len(), 1);
        // ...but packets already on its PID would be out of order.
        assert!(with_cues(&once, &c).is_err());
    }

    #[test]
    fn crc32_mpeg2_matches_the_catalogue_and_the_clip() {
        // The CRC catalogue's check value of CRC-32/MPEG-2.
        assert_eq!(ts::crc32_mpeg2(b"123456789"), 0x0376_E6E7);
        let packets = ts::packets(clip("720p30", 0)).unwrap();
        // ffmpeg's PAT and PMT pass (program and Pmt::read check CRCs).
        let (_, pmt_pid) = ts::program(&packets).unwrap();
        let pmt = Pmt::read(packets.iter().find(|p| p.pid == pmt_pid).unwrap()).unwrap();
        // Written back unchanged, the section is ffmpeg's byte for byte.
        let written = pmt.packet(&packets[2]).unwrap();
        assert_eq!(&written[..], packets[2].bytes);
    }
}
