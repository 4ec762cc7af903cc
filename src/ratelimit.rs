//! Rate-limited log lines: a flood of refused or dead-lettered writes must not fill the disk
//! with logs. Each call site keeps a [`LogLimit`]; past its budget in a window, lines are
//! counted instead, and the next line that is let through says how many were suppressed.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most `per_window` lines per `window` from one call site.
#[derive(Debug)]
pub struct LogLimit {
    per_window: u32,
    window: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    started: Option<Instant>,
    sent: u32,
    suppressed: u64,
}

impl LogLimit {
    /// A limit of `per_window` lines each `window`.
    pub const fn new(per_window: u32, window: Duration) -> Self {
        LogLimit {
            per_window,
            window,
            state: Mutex::new(State {
                started: None,
                sent: 0,
                suppressed: 0,
            }),
        }
    }

    /// Whether to log now: `Some(n)` with the number of lines suppressed since the last one
    /// let through, or `None` to stay quiet (the line is counted).
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> Option<u64> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = st
            .started
            .is_none_or(|s| now.saturating_duration_since(s) >= self.window);
        if fresh {
            st.started = Some(now);
            st.sent = 0;
        }
        if st.sent < self.per_window {
            st.sent += 1;
            Some(std::mem::take(&mut st.suppressed))
        } else {
            st.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_cut_to_the_budget_and_the_suppressed_are_counted() {
        let limit = LogLimit::new(3, Duration::from_secs(10));
        let t0 = Instant::now();
        let out: Vec<Option<u64>> = (0..1000).map(|_| limit.allow_at(t0)).collect();
        assert_eq!(out.iter().filter(|o| o.is_some()).count(), 3);
        // The next window lets lines through again, the first saying what was dropped.
        assert_eq!(limit.allow_at(t0 + Duration::from_secs(11)), Some(997));
        assert_eq!(limit.allow_at(t0 + Duration::from_secs(11)), Some(0));
    }
}
