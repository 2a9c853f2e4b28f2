//! How the delivery log's Redis entries and references are written and read back: the
//! hashes that name an event, its reference list and a host; a reference's 22 bytes; an
//! entry's fields. The hash is FNV-1a, written out here (six lines): it must give every
//! replica and every version the same bucket, which `std`'s hasher does not promise.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use super::super::{LoggedAttempt, Outcome};

/// Reference lists an event may be in.
const BUCKETS: u64 = 8192;

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

/// The 12-bit hash an entry names its host by: small enough to cost 3 bytes an entry; a
/// campaign sends to a handful of hosts, so two of its hosts share one with a chance of
/// about 1 in 1,000 (the later one is then shown for both).
pub(super) fn host_hash(host: &str) -> u32 {
    (fnv(host) % 4096) as u32
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

/// A reference: hash, campaign, entry id (ms, sequence).
pub(super) fn reference(event_id: &str, target_id: i64, entry: &str) -> Option<Vec<u8>> {
    let (ms, seq) = entry.split_once('-')?;
    let (ms, seq) = (ms.parse::<u64>().ok()?, seq.parse::<u32>().ok()?);
    let mut out = Vec::with_capacity(22);
    out.extend_from_slice(&event_hash(event_id).to_be_bytes());
    out.extend_from_slice(&target_id.to_be_bytes());
    out.extend_from_slice(&ms.to_be_bytes()[2..]);
    out.extend_from_slice(&seq.to_be_bytes());
    Some(out)
}

/// (hash, campaign, entry id) of a reference.
pub(super) fn parse_reference(bytes: &[u8]) -> Option<(u32, i64, String)> {
    if bytes.len() != 22 {
        return None;
    }
    let hash = u32::from_be_bytes(bytes[0..4].try_into().ok()?);
    let target = i64::from_be_bytes(bytes[4..12].try_into().ok()?);
    let mut ms = [0u8; 8];
    ms[2..].copy_from_slice(&bytes[12..18]);
    let seq = u32::from_be_bytes(bytes[18..22].try_into().ok()?);
    Some((hash, target, format!("{}-{seq}", u64::from_be_bytes(ms))))
}

/// The outcome and what followed, in one value: `d`, `r` + the tier, `x` + the reason.
pub(super) fn outcome_code(attempt: &LoggedAttempt) -> String {
    let code = match attempt.outcome {
        Outcome::Delivered => "d",
        Outcome::Retrying => "r",
        Outcome::DeadLettered => "x",
    };
    format!("{code}{}", attempt.next.as_deref().unwrap_or_default())
}

/// `ms-seq`, as stream ids are written.
pub(super) fn parse_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
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

pub(super) fn uuid_text(bytes: &[u8]) -> Option<String> {
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

/// An attempt from its entry (`fields`: names and values in turn); `None` for an entry
/// this version cannot read.
pub(super) fn decode(
    id: &str,
    target_id: i64,
    fields: &[Vec<u8>],
    hosts: &BTreeMap<String, String>,
) -> Option<LoggedAttempt> {
    let mut map = BTreeMap::new();
    for pair in fields.chunks(2) {
        if let [name, value] = pair {
            map.insert(name.as_slice(), value.as_slice());
        }
    }
    let text = |name: &str| -> Option<String> {
        map.get(name.as_bytes())
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .filter(|v| !v.is_empty())
    };
    let number = |name: &str| -> Option<u64> { text(name)?.parse().ok() };
    let event_id = match map.get(b"u".as_slice()) {
        Some(bytes) => uuid_text(bytes)?,
        None => text("e")?,
    };
    let template_id = text("t").unwrap_or_default();
    let code = text("o")?;
    let mut chars = code.chars();
    let outcome = match chars.next()? {
        'd' => Outcome::Delivered,
        'r' => Outcome::Retrying,
        'x' => Outcome::DeadLettered,
        _ => return None,
    };
    let next = chars.as_str();
    let said = text("s");
    let status = said.as_deref().and_then(|s| s.parse::<u16>().ok());
    Some(LoggedAttempt {
        id: id.to_string(),
        host: text("h").and_then(|h| hosts.get(&h).cloned()).unwrap_or_default(),
        event_id,
        target_id,
        template_id,
        chunk: number("c").unwrap_or_default() as u32,
        attempt: number("n").unwrap_or(1) as u32,
        at_ms: parse_id(id).map_or(0, |(ms, _)| ms),
        error: said.filter(|_| status.is_none()),
        status,
        latency_ms: number("l").unwrap_or_default(),
        tier: number("r").unwrap_or_default() as u32,
        outcome,
        next: Some(next.to_string()).filter(|n| !n.is_empty()),
        answer: text("a"),
        request_bytes: number("b").unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_and_uuids_read_back_as_written() {
        let r = reference("e-1", -42, "1765150000123-7").unwrap();
        assert_eq!(r.len(), 22);
        assert_eq!(
            parse_reference(&r),
            Some((event_hash("e-1"), -42, "1765150000123-7".to_string()))
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
