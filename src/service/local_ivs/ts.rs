//! Just enough MPEG-2 transport stream (ISO/IEC 13818-1) to add a stream to
//! a segment of the local clip: 188-byte packets, the PAT and a one-packet
//! PMT (read, rewritten, CRC-32/MPEG-2), PES packets with a PTS, and the
//! packets that carry them.
//!
//! The segment is treated as untrusted bytes: every read is checked and a
//! malformed segment is an error, never a panic.

use std::fmt;

/// Bytes in a transport stream packet.
pub(crate) const PACKET: usize = 188;
const SYNC: u8 = 0x47;
/// 33-bit presentation timestamps (90 kHz) wrap at 2^33.
pub(crate) const PTS_MASK: u64 = (1 << 33) - 1;

/// A segment the code cannot read or extend, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TsError(pub(crate) String);

impl fmt::Display for TsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MPEG-TS: {}", self.0)
    }
}

fn err<T>(why: impl Into<String>) -> Result<T, TsError> {
    Err(TsError(why.into()))
}

/// CRC-32/MPEG-2 (13818-1 Annex A: polynomial 0x04C11DB7, initial all ones,
/// no reflection, no final xor), which ends every PSI section.
pub(crate) fn crc32_mpeg2(data: &[u8]) -> u32 {
    let mut crc = u32::MAX;
    for &byte in data {
        crc ^= u32::from(byte) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// One packet of a segment, read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Packet<'a> {
    pub(crate) bytes: &'a [u8],
    pub(crate) pid: u16,
    /// payload_unit_start_indicator: a PES or a section starts here.
    pub(crate) start: bool,
    pub(crate) continuity: u8,
    /// The payload after any adaptation field (empty if none).
    pub(crate) payload: &'a [u8],
}

/// The packets of a segment: a whole number of 188-byte packets, each with
/// the sync byte.
pub(crate) fn packets(segment: &[u8]) -> Result<Vec<Packet<'_>>, TsError> {
    if segment.is_empty() || !segment.len().is_multiple_of(PACKET) {
        return err(format!(
            "{} bytes is not a whole number of {PACKET}-byte packets",
            segment.len()
        ));
    }
    segment
        .chunks_exact(PACKET)
        .enumerate()
        .map(|(i, bytes)| read_packet(bytes).map_err(|e| TsError(format!("packet {i}: {}", e.0))))
        .collect()
}

fn read_packet(bytes: &[u8]) -> Result<Packet<'_>, TsError> {
    let [sync, b1, b2, b3, ..] = *bytes else {
        return err("short packet");
    };
    if sync != SYNC {
        return err(format!("sync byte {sync:#04x}, not 0x47"));
    }
    let control = (b3 >> 4) & 0b11;
    // adaptation_field_control: 01 payload only, 10 adaptation field only,
    // 11 both (13818-1 2.4.3.3).
    let payload_at = match control {
        0b01 => 4,
        0b10 => bytes.len(),
        0b11 => 5 + usize::from(*bytes.get(4).unwrap_or(&0)),
        _ => return err("reserved adaptation_field_control 00"),
    };
    let payload = bytes
        .get(payload_at..)
        .ok_or_else(|| TsError("adaptation field longer than the packet".into()))?;
    Ok(Packet {
        bytes,
        pid: (u16::from(b1 & 0x1F) << 8) | u16::from(b2),
        start: b1 & 0x40 != 0,
        continuity: b3 & 0x0F,
        payload,
    })
}

/// The section a packet starts (after its pointer_field), cut to its
/// section_length, CRC checked.
fn section<'a>(packet: &Packet<'a>) -> Result<&'a [u8], TsError> {
    let (&pointer, rest) = packet
        .payload
        .split_first()
        .ok_or_else(|| TsError("empty PSI packet".into()))?;
    let rest = rest.get(usize::from(pointer)..).unwrap_or_default();
    let [_, hi, lo, ..] = *rest else {
        return err("PSI section header cut short");
    };
    let len = 3 + usize::from(u16::from(hi & 0x0F) << 8 | u16::from(lo));
    let Some(section) = rest.get(..len).filter(|s| s.len() >= 12) else {
        return err("PSI section longer than its packet (multi-packet sections are not read)");
    };
    if crc32_mpeg2(section) != 0 {
        return err(format!(
            "PSI section (table {:#04x}) fails its CRC",
            rest[0]
        ));
    }
    Ok(section)
}

/// The program of the segment's first PAT: (program_number, PMT PID).
pub(crate) fn program(packets: &[Packet<'_>]) -> Result<(u16, u16), TsError> {
    let pat = packets
        .iter()
        .find(|p| p.pid == 0 && p.start)
        .ok_or_else(|| TsError("no PAT".into()))?;
    let section = section(pat)?;
    // After the 8-byte header, 4-byte entries up to the CRC; program 0 is
    // the network PID, not a program.
    let entries = section.get(8..section.len() - 4).unwrap_or_default();
    entries
        .chunks_exact(4)
        .map(|e| {
            (
                u16::from_be_bytes([e[0], e[1]]),
                u16::from_be_bytes([e[2] & 0x1F, e[3]]),
            )
        })
        .find(|(number, _)| *number != 0)
        .ok_or_else(|| TsError("the PAT names no program".into()))
}

/// An elementary stream of a PMT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stream {
    pub(crate) stream_type: u8,
    pub(crate) pid: u16,
    /// ES_info descriptors, raw.
    pub(crate) info: Vec<u8>,
}

/// A program map table (13818-1 2.4.4.8), as read from one section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pmt {
    pub(crate) program_number: u16,
    pub(crate) version: u8,
    pub(crate) pcr_pid: u16,
    /// program_info descriptors, raw.
    pub(crate) program_info: Vec<u8>,
    pub(crate) streams: Vec<Stream>,
}

fn be16(bytes: &[u8], at: usize) -> Result<u16, TsError> {
    match bytes.get(at..at + 2) {
        Some(&[a, b]) => Ok(u16::from_be_bytes([a, b])),
        _ => err("PMT cut short"),
    }
}

impl Pmt {
    pub(crate) fn read(packet: &Packet<'_>) -> Result<Self, TsError> {
        let s = section(packet)?;
        if s[0] != 0x02 {
            return err(format!("table {:#04x} where the PMT should be", s[0]));
        }
        let body_end = s.len() - 4;
        let info_len = usize::from(be16(s, 10)? & 0x0FFF);
        let program_info = s
            .get(12..12 + info_len)
            .ok_or_else(|| TsError("PMT program_info cut short".into()))?;
        let mut streams = Vec::new();
        let mut at = 12 + info_len;
        while at < body_end {
            let stream_type = *s.get(at).ok_or_else(|| TsError("PMT cut short".into()))?;
            let pid = be16(s, at + 1)? & 0x1FFF;
            let len = usize::from(be16(s, at + 3)? & 0x0FFF);
            let info = s
                .get(at + 5..at + 5 + len)
                .filter(|_| at + 5 + len <= body_end)
                .ok_or_else(|| TsError("PMT ES_info cut short".into()))?;
            streams.push(Stream {
                stream_type,
                pid,
                info: info.to_vec(),
            });
            at += 5 + len;
        }
        Ok(Self {
            program_number: be16(s, 3)?,
            version: (s[5] >> 1) & 0x1F,
            pcr_pid: be16(s, 8)? & 0x1FFF,
            program_info: program_info.to_vec(),
            streams,
        })
    }

    /// The section, CRC included.
    pub(crate) fn section(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(64);
        body.extend_from_slice(&self.program_number.to_be_bytes());
        // reserved '11', version, current_next_indicator 1; section 0 of 0.
        body.extend_from_slice(&[0xC1 | (self.version & 0x1F) << 1, 0, 0]);
        body.extend_from_slice(&(0xE000 | self.pcr_pid).to_be_bytes());
        push_with_length(&mut body, &self.program_info);
        for s in &self.streams {
            body.push(s.stream_type);
            body.extend_from_slice(&(0xE000 | s.pid).to_be_bytes());
            push_with_length(&mut body, &s.info);
        }
        // section_syntax_indicator 1, '0', reserved '11'; the length counts
        // what follows it, CRC included (lengths here stay far below 1021).
        let length = (body.len() + 4) as u16 & 0x0FFF;
        let mut section = vec![0x02];
        section.extend_from_slice(&(0xB000 | length).to_be_bytes());
        section.extend_from_slice(&body);
        let crc = crc32_mpeg2(&section);
        section.extend_from_slice(&crc.to_be_bytes());
        section
    }

    /// A packet carrying this PMT in place of `packet` (same PID and
    /// continuity counter), stuffed with 0xFF.
    pub(crate) fn packet(&self, packet: &Packet<'_>) -> Result<[u8; PACKET], TsError> {
        let section = self.section();
        let mut out = [0xFF; PACKET];
        // Header with payload only, then pointer_field 0 and the section.
        out[..4].copy_from_slice(&[
            SYNC,
            0x40 | (packet.pid >> 8) as u8,
            packet.pid as u8,
            0x10 | packet.continuity,
        ]);
        out[4] = 0;
        out.get_mut(5..5 + section.len())
            .ok_or_else(|| TsError("the new PMT does not fit in one packet".into()))?
            .copy_from_slice(&section);
        Ok(out)
    }
}

/// A descriptor loop's 12-bit length (with reserved '1111'), then the loop.
fn push_with_length(out: &mut Vec<u8>, descriptors: &[u8]) {
    out.extend_from_slice(&(0xF000 | (descriptors.len() as u16 & 0x0FFF)).to_be_bytes());
    out.extend_from_slice(descriptors);
}

/// The PTS of the first PES on `pid` that has one.
pub(crate) fn first_pts(packets: &[Packet<'_>], pid: u16) -> Option<u64> {
    packets
        .iter()
        .filter(|p| p.pid == pid && p.start)
        .find_map(|p| {
            let h = p.payload;
            // start code 00 00 01, stream_id, length, flags, PTS_DTS_flags 1x.
            if h.get(..3) != Some(&[0, 0, 1]) || h.get(7).is_none_or(|f| f & 0x80 == 0) {
                return None;
            }
            let t = h.get(9..14)?;
            Some(
                (u64::from(t[0] >> 1) & 0x07) << 30
                    | u64::from(t[1]) << 22
                    | u64::from(t[2] >> 1) << 15
                    | u64::from(t[3]) << 7
                    | u64::from(t[4] >> 1),
            )
        })
}

/// A PES packet (13818-1 2.4.3.6) with a PTS only and data_alignment_indicator
/// set: the payload starts with the access unit (an ID3 tag for the HLS
/// timed-metadata carriage).
pub(crate) fn pes(stream_id: u8, pts: u64, payload: &[u8]) -> Result<Vec<u8>, TsError> {
    let length = u16::try_from(3 + 5 + payload.len())
        .map_err(|_| TsError(format!("a {}-byte PES payload is too long", payload.len())))?;
    let pts = pts & PTS_MASK;
    let mut out = vec![0, 0, 1, stream_id];
    out.extend_from_slice(&length.to_be_bytes());
    // '10', not scrambled, no priority, data_alignment_indicator 1; then
    // PTS_DTS_flags '10' and a 5-byte header.
    out.extend_from_slice(&[0x84, 0x80, 5]);
    // '0010' PTS[32..30] marker, PTS[29..15] marker, PTS[14..0] marker.
    out.extend_from_slice(&[
        0x21 | ((pts >> 29) as u8 & 0x0E),
        (pts >> 22) as u8,
        0x01 | ((pts >> 14) as u8 & 0xFE),
        (pts >> 7) as u8,
        0x01 | ((pts << 1) as u8 & 0xFE),
    ]);
    out.extend_from_slice(payload);
    Ok(out)
}

/// The transport packets that carry `pes` on `pid`, the first with
/// payload_unit_start_indicator, the last filled out with adaptation-field
/// stuffing (never with payload bytes, 2.4.3.5); `continuity` is the counter
/// of the first and comes back as the next one to use.
pub(crate) fn packetize(pid: u16, pes: &[u8], continuity: &mut u8) -> Vec<u8> {
    let mut out = Vec::with_capacity((pes.len() / 184 + 1) * PACKET);
    let mut rest = pes;
    let mut first = true;
    while first || !rest.is_empty() {
        let take = rest.len().min(184);
        let (chunk, tail) = rest.split_at(take);
        let start = if first { 0x40 } else { 0 };
        let header = [SYNC, start | (pid >> 8) as u8 & 0x1F, pid as u8];
        out.extend_from_slice(&header);
        if take == 184 {
            out.push(0x10 | *continuity);
        } else {
            // adaptation_field_length counts the flags byte and stuffing.
            let field = 183 - take;
            out.push(0x30 | *continuity);
            out.push(field as u8);
            if field > 0 {
                out.push(0x00);
                out.extend(std::iter::repeat_n(0xFF, field - 1));
            }
        }
        out.extend_from_slice(chunk);
        *continuity = (*continuity + 1) & 0x0F;
        rest = tail;
        first = false;
    }
    out
}
