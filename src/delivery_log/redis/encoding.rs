//! How the delivery log's Redis entries and references are written and read back.
//!
//! An entry packs up to [`PER_ENTRY`] attempts of one campaign from one flush into one
//! binary value: a version byte, the earliest attempt time, the strings the attempts share
//! (templates, hosts, error classes, what followed) as 24-bit keys into the campaign's
//! string map (a host or a template id is written once per campaign, not once per entry),
//! then each attempt as LEB128 varints (a UUID event id as its 16 bytes). One `XADD` per campaign and flush instead of one per
//! attempt is what keeps the log's CPU, on both sides, a small part of a delivery's.
//!
//! A reference is 22 bytes: a 32-bit hash of the event id, the campaign, the entry id
//! (48-bit ms, 16-bit sequence) and the attempt's place in the entry. The hash is FNV-1a,
//! written out here (six lines): it must give every replica and every version the same
//! list, which `std`'s hasher does not promise. Reading never panics on what Redis holds:
//! what does not decode is skipped.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use super::super::{LoggedAttempt, Outcome};

/// Reference lists an event may be in.
pub(super) const BUCKETS: u64 = 1024;

/// Attempts one entry holds at most.
pub(super) const PER_ENTRY: usize = 256;

const VERSION: u8 = 2;

/// The key a string has in its campaign's string map: 24 bits, so the few dozen strings of
/// a campaign share one with a chance of about 1 in 30,000.
pub(super) fn string_key(text: &str) -> u64 {
    fnv(text) & 0xff_ffff
}

/// FNV-1a, 64 bits.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The 32-bit hash an event's references carry.
pub fn event_hash(event_id: &str) -> u32 {
    fnv(event_id) as u32
}

/// The reference list an event's attempts are found through.
pub fn bucket_of(event_id: &str) -> u64 {
    (fnv(event_id) >> 32) % BUCKETS
}

pub(super) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A reference to attempt `index` of entry `entry` of campaign `target_id`.
pub(super) fn reference(event_id: &str, target_id: i64, entry: (u64, u64), index: usize) -> Option<[u8; 22]> {
    let (ms, seq) = entry;
    let seq = u16::try_from(seq).ok()?;
    let index = u16::try_from(index).ok()?;
    let mut out = [0u8; 22];
    out[0..4].copy_from_slice(&event_hash(event_id).to_be_bytes());
    out[4..12].copy_from_slice(&target_id.to_be_bytes());
    out[12..18].copy_from_slice(&ms.to_be_bytes()[2..]);
    out[18..20].copy_from_slice(&seq.to_be_bytes());
    out[20..22].copy_from_slice(&index.to_be_bytes());
    Some(out)
}

/// (hash, campaign, entry id, index) of a reference.
pub(super) fn parse_reference(bytes: &[u8]) -> Option<(u32, i64, String, usize)> {
    if bytes.len() != 22 {
        return None;
    }
    let hash = u32::from_be_bytes(bytes[0..4].try_into().ok()?);
    let target = i64::from_be_bytes(bytes[4..12].try_into().ok()?);
    let mut ms = [0u8; 8];
    ms[2..].copy_from_slice(&bytes[12..18]);
    let seq = u16::from_be_bytes(bytes[18..20].try_into().ok()?);
    let index = u16::from_be_bytes(bytes[20..22].try_into().ok()?);
    Some((
        hash,
        target,
        format!("{}-{seq}", u64::from_be_bytes(ms)),
        usize::from(index),
    ))
}

/// `ms-seq`, as stream ids are written.
pub(super) fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

fn put(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// The strings an entry's attempts share, each written once.
#[derive(Default)]
struct Strings<'a>(Vec<&'a str>);

impl<'a> Strings<'a> {
    /// `text`'s number, 1-based (0 is none).
    fn number(&mut self, text: Option<&'a str>) -> u64 {
        let Some(text) = text else {
            return 0;
        };
        let at = self.0.iter().position(|s| *s == text).unwrap_or_else(|| {
            self.0.push(text);
            self.0.len() - 1
        });
        at as u64 + 1
    }
}

/// The entry value of `attempts` (of one campaign, at most [`PER_ENTRY`]), and the strings
/// it names by their keys (for the campaign's string map).
pub(super) fn pack<'a>(attempts: &[&'a LoggedAttempt]) -> (Vec<u8>, Vec<&'a str>) {
    let mut strings = Strings::default();
    let mut body = Vec::with_capacity(attempts.len() * 40);
    let base = attempts.iter().map(|a| a.at_ms).min().unwrap_or_default();
    for a in attempts {
        match uuid_bytes(&a.event_id) {
            Some(bytes) => {
                body.push(0);
                body.extend_from_slice(&bytes);
            }
            None => {
                body.push(1);
                put_bytes(&mut body, a.event_id.as_bytes());
            }
        }
        for text in [
            Some(a.template_id.as_str()),
            Some(a.host.as_str()),
            a.error.as_deref(),
            a.next.as_deref(),
        ] {
            let number = strings.number(text);
            put(&mut body, number);
        }
        for number in [
            u64::from(a.chunk),
            u64::from(a.attempt),
            u64::from(a.status.unwrap_or(0)),
            a.latency_ms,
            u64::from(a.tier),
            a.request_bytes,
            a.at_ms - base,
        ] {
            put(&mut body, number);
        }
        body.push(match a.outcome {
            Outcome::Delivered => 0,
            Outcome::Retrying => 1,
            Outcome::DeadLettered => 2,
        });
        put_bytes(&mut body, a.answer.as_deref().unwrap_or_default().as_bytes());
    }
    let mut out = Vec::with_capacity(body.len() + 64);
    out.push(VERSION);
    put(&mut out, base);
    put(&mut out, strings.0.len() as u64);
    for text in &strings.0 {
        put(&mut out, string_key(text));
    }
    put(&mut out, attempts.len() as u64);
    out.extend_from_slice(&body);
    (out, strings.0)
}

/// Reads what [`pack`] wrote.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*first)
    }

    fn number(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn bytes(&mut self, len: usize) -> Option<&'a [u8]> {
        if len > self.0.len() {
            return None;
        }
        let (taken, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(taken)
    }

    fn text(&mut self) -> Option<String> {
        let len = usize::try_from(self.number()?).ok()?;
        Some(String::from_utf8_lossy(self.bytes(len)?).into_owned())
    }
}

/// The attempts of entry `id` of campaign `target_id`, in the order they were packed, each
/// with its id (`entry.index`), their strings looked up in `names` (the campaign's string
/// map); `None` when the value does not decode.
pub(super) fn unpack(
    id: &str,
    target_id: i64,
    value: &[u8],
    names: &BTreeMap<u64, String>,
) -> Option<Vec<LoggedAttempt>> {
    let mut r = Reader(value);
    if r.byte()? != VERSION {
        return None;
    }
    let base = r.number()?;
    let count = usize::try_from(r.number()?).ok()?;
    if count > 4 * PER_ENTRY {
        return None;
    }
    let mut strings = Vec::with_capacity(count);
    for _ in 0..count {
        strings.push(names.get(&r.number()?).cloned().unwrap_or_default());
    }
    let attempts = usize::try_from(r.number()?).ok()?;
    if attempts > PER_ENTRY {
        return None;
    }
    let mut out = Vec::with_capacity(attempts);
    for index in 0..attempts {
        out.push(LoggedAttempt {
            id: format!("{id}.{index}"),
            target_id,
            ..read_attempt(&mut r, &strings, base)?
        });
    }
    Some(out)
}

/// One attempt as [`pack`] wrote it (no id or campaign: the entry's), its strings looked up
/// in `strings` and its time after `base`.
fn read_attempt(r: &mut Reader<'_>, strings: &[String], base: u64) -> Option<LoggedAttempt> {
    let string =
        |n: u64| -> Option<String> { n.checked_sub(1).and_then(|i| strings.get(i as usize).cloned()) };
    let event_id = match r.byte()? {
        0 => uuid_text(r.bytes(16)?)?,
        1 => r.text()?,
        _ => return None,
    };
    let [template, host, error, next] = [r.number()?, r.number()?, r.number()?, r.number()?];
    let [chunk, attempt, status, latency_ms, tier, request_bytes, at] = [
        r.number()?,
        r.number()?,
        r.number()?,
        r.number()?,
        r.number()?,
        r.number()?,
        r.number()?,
    ];
    let outcome = match r.byte()? {
        0 => Outcome::Delivered,
        1 => Outcome::Retrying,
        2 => Outcome::DeadLettered,
        _ => return None,
    };
    let answer = r.text()?;
    Some(LoggedAttempt {
        id: String::new(),
        event_id,
        target_id: 0,
        template_id: string(template).unwrap_or_default(),
        chunk: chunk as u32,
        attempt: attempt as u32,
        at_ms: base.saturating_add(at),
        host: string(host).unwrap_or_default(),
        status: u16::try_from(status).ok().filter(|s| *s != 0),
        error: string(error),
        latency_ms,
        tier: tier as u32,
        outcome,
        next: string(next),
        answer: Some(answer).filter(|a| !a.is_empty()),
        request_bytes,
    })
}

/// The 16 bytes of a UUID written as 36 lower-case characters with hyphens; `None` for any
/// other id (kept as text: it must come back exactly as it was).
pub(super) fn uuid_bytes(id: &str) -> Option<[u8; 16]> {
    let bytes = id.as_bytes();
    if bytes.len() != 36 || [8, 13, 18, 23].iter().any(|&i| bytes[i] != b'-') {
        return None;
    }
    let hex: Vec<u8> = bytes.iter().copied().filter(|&b| b != b'-').collect();
    if hex.len() != 32 || !hex.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

fn uuid_text(bytes: &[u8]) -> Option<String> {
    if bytes.len() != 16 {
        return None;
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// The attempts of every entry of `entries` (`(id, [field, value, …])` as `XRANGE` answers),
/// in entry order.
pub(super) fn unpack_entries(
    target_id: i64,
    entries: Vec<(String, Vec<Vec<u8>>)>,
    names: &BTreeMap<u64, String>,
) -> Vec<(String, Vec<LoggedAttempt>)> {
    entries
        .into_iter()
        .filter_map(|(id, fields)| {
            let value = fields
                .chunks(2)
                .find(|pair| pair.first().map(Vec::as_slice) == Some(b"v"))?
                .get(1)?;
            let attempts = unpack(&id, target_id, value, names)?;
            Some((id, attempts))
        })
        .collect()
}

/// How many attempts each campaign of `batch` has, by campaign (for the count kept per
/// campaign).
pub(super) fn by_campaign(batch: &[LoggedAttempt]) -> BTreeMap<i64, Vec<&LoggedAttempt>> {
    let mut out: BTreeMap<i64, Vec<&LoggedAttempt>> = BTreeMap::new();
    for attempt in batch {
        out.entry(attempt.target_id).or_default().push(attempt);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(event: &str, n: u32, at_ms: u64) -> LoggedAttempt {
        LoggedAttempt {
            id: String::new(),
            event_id: event.into(),
            target_id: 7,
            template_id: "crm".into(),
            chunk: 3,
            attempt: n,
            at_ms,
            host: "crm.example:443".into(),
            status: if n == 1 { None } else { Some(503) },
            error: if n == 1 { Some("timeout".into()) } else { None },
            latency_ms: 5_000,
            tier: n - 1,
            outcome: if n == 1 {
                Outcome::Retrying
            } else {
                Outcome::DeadLettered
            },
            next: Some(if n == 1 {
                "1".into()
            } else {
                "retries_exhausted".into()
            }),
            answer: if n == 1 {
                None
            } else {
                Some("upstream \"down\"".into())
            },
            request_bytes: 1432,
        }
    }

    #[test]
    fn an_entry_reads_back_as_packed() {
        let uuid = "3f2b1c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d";
        let packed = vec![
            attempt(uuid, 1, 1_765_150_000_000),
            attempt("e-2 ü", 2, 1_765_150_000_900),
        ];
        let (value, strings) = pack(&packed.iter().collect::<Vec<_>>());
        let names: BTreeMap<u64, String> = strings.iter().map(|s| (string_key(s), s.to_string())).collect();
        let back = unpack("1765150001000-3", 7, &value, &names).unwrap();
        for (i, (read, wrote)) in back.iter().zip(&packed).enumerate() {
            assert_eq!(read.id, format!("1765150001000-3.{i}"));
            assert_eq!(
                LoggedAttempt {
                    id: String::new(),
                    ..read.clone()
                },
                *wrote
            );
        }
        // Anything cut short or altered is skipped, never a panic.
        for end in 0..value.len() {
            let _ = unpack("1-0", 7, &value[..end], &names);
        }
        assert!(unpack("1-0", 7, &[9, 1, 2], &names).is_none());
    }

    #[test]
    fn references_and_uuids_read_back_as_written() {
        let r = reference("e-1", -42, (1_765_150_000_123, 7), 5).unwrap();
        assert_eq!(r.len(), 22);
        assert_eq!(
            parse_reference(&r),
            Some((event_hash("e-1"), -42, "1765150000123-7".to_string(), 5))
        );
        let id = "3f2b1c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d";
        assert_eq!(uuid_text(&uuid_bytes(id).unwrap()).as_deref(), Some(id));
        for other in [
            "3F2B1C4D-5E6F-4A7B-8C9D-0E1F2A3B4C5D",
            "e-1",
            "3f2b1c4d5e6f4a7b8c9d0e1f2a3b4c5d0000",
        ] {
            assert_eq!(uuid_bytes(other), None, "{other} stays text");
        }
    }

    #[test]
    fn buckets_are_the_same_on_every_replica_and_version() {
        // FNV-1a of "a", fixed by its definition: a change here moves every event's bucket.
        assert_eq!(fnv("a"), 0xaf63_dc4c_8601_ec8c);
        assert!(bucket_of("any event") < BUCKETS);
    }
}
