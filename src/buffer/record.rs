//! The payload of a log record holding metrics: runs of `u16 len | db | u16 len | rp | u32 len |
//! line protocol`, one run per origin, timestamps in ns.

use std::sync::Arc;

use crate::line_protocol::{self, Line, Parser, Precision};
use crate::metric::{Metric, Origin};

/// Encodes `metrics` (in order; consecutive metrics of one origin share a run).
pub fn encode(metrics: &[Metric]) -> Vec<u8> {
    let mut out = Vec::with_capacity(metrics.len() * 128);
    let mut i = 0;
    while i < metrics.len() {
        let origin = &metrics[i].origin;
        let mut lp = String::new();
        while i < metrics.len() && metrics[i].origin == *origin {
            line_protocol::encode(&metrics[i], &mut lp);
            i += 1;
        }
        for part in [origin.db.as_bytes(), origin.rp.as_bytes()] {
            let len = part.len().min(u16::MAX as usize);
            out.extend_from_slice(&(len as u16).to_le_bytes());
            out.extend_from_slice(&part[..len]);
        }
        out.extend_from_slice(&(lp.len() as u32).to_le_bytes());
        out.extend_from_slice(lp.as_bytes());
    }
    out
}

/// Decodes a payload back into metrics; `None` if it is not one [`encode`] made.
pub fn decode(payload: &[u8]) -> Option<Vec<Metric>> {
    let mut out = Vec::new();
    let mut at = 0;
    let take = |at: &mut usize, n: usize| -> Option<&[u8]> {
        let s = payload.get(*at..*at + n)?;
        *at += n;
        Some(s)
    };
    while at < payload.len() {
        let db_len = u16::from_le_bytes(take(&mut at, 2)?.try_into().ok()?) as usize;
        let db = std::str::from_utf8(take(&mut at, db_len)?).ok()?;
        let rp_len = u16::from_le_bytes(take(&mut at, 2)?.try_into().ok()?) as usize;
        let rp = std::str::from_utf8(take(&mut at, rp_len)?).ok()?;
        let lp_len = u32::from_le_bytes(take(&mut at, 4)?.try_into().ok()?) as usize;
        let lp = std::str::from_utf8(take(&mut at, lp_len)?).ok()?;
        let origin = Arc::new(Origin::new(db, Some(rp)));
        let mut parser = Parser::new(lp);
        let mut line = Line::default();
        while let Some(r) = parser.next_into(&mut line) {
            r.ok()?;
            out.push(line.to_metric(Precision::Nanoseconds, 0, &origin).ok()?);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric::FieldValue;

    #[test]
    fn round_trip_keeps_origins_and_order() {
        let mut ms = Vec::new();
        for (i, db) in ["a", "a", "b", "a"].iter().enumerate() {
            let mut m = Metric::new("m", i as i64);
            m.add_field("v", FieldValue::Int(i as i64));
            m.origin = Arc::new(Origin::new(*db, Some("rp")));
            ms.push(m);
        }
        assert_eq!(decode(&encode(&ms)).unwrap(), ms);
        assert!(decode(b"\x05\x00ab").is_none());
    }
}
