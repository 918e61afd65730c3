//! The agent-check protocol (HAProxy's `agent-check`): a real server says how it wants to be
//! weighted.
//!
//! lvsmon connects to the agent's port, optionally sends a line, and reads one line back: words
//! separated by commas, spaces or tabs. This module only judges that line; the monitor owns the
//! socket and the deadlines, and the table turns the reply into a weight.
//!
//! | word | meaning |
//! |---|---|
//! | `NN%` | scale the configured weight to NN percent (0 to 1000) |
//! | `drain`, `maint` | weight 0, established connections finish |
//! | `down`, `fail`, `stopped` | mark the real DOWN (reason `agent-down`); the rest of the line is the detail |
//! | `up`, `ready` | undo `drain`/`down` |
//!
//! Words lvsmon does not know are ignored, so agents written for HAProxy (which also send
//! `maxconn:N` and the like) work unchanged. When a line holds several words of one kind, the
//! last one wins.

/// What the agent asked for besides a weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentAdmin {
    /// `up` or `ready`: serve again (undoes `Drain` and `Down`).
    Up,
    /// `drain` or `maint`: weight 0, established connections finish.
    Drain,
    /// `down`, `fail` or `stopped`: the real is DOWN whatever its checks say.
    Down,
}

/// One agent reply, folded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AgentReply {
    /// `NN%`: the configured weight scaled to this percentage.
    pub percent: Option<u16>,
    /// The last state word, if any.
    pub admin: Option<AgentAdmin>,
    /// With `admin == Some(Down)`: where, in the line given to [`parse`], the text after the
    /// `down`/`fail`/`stopped` word starts (the detail of the `agent-down` reason).
    pub detail_at: usize,
}

/// Highest percentage accepted; more is taken as this.
pub const MAX_PERCENT: u16 = 1000;

/// Judges one line (without its line ending). Never fails: a line with no word lvsmon knows is
/// a reply that changes nothing.
pub fn parse(line: &[u8]) -> AgentReply {
    let mut reply = AgentReply::default();
    let mut i = 0;
    while i < line.len() {
        while i < line.len() && is_sep(line[i]) {
            i += 1;
        }
        let start = i;
        while i < line.len() && !is_sep(line[i]) {
            i += 1;
        }
        let word = &line[start..i];
        if word.is_empty() {
            continue;
        }
        if let Some(p) = percent(word) {
            reply.percent = Some(p);
            continue;
        }
        let admin = if word.eq_ignore_ascii_case(b"up") || word.eq_ignore_ascii_case(b"ready") {
            AgentAdmin::Up
        } else if word.eq_ignore_ascii_case(b"drain") || word.eq_ignore_ascii_case(b"maint") {
            AgentAdmin::Drain
        } else if word.eq_ignore_ascii_case(b"down")
            || word.eq_ignore_ascii_case(b"fail")
            || word.eq_ignore_ascii_case(b"stopped")
        {
            AgentAdmin::Down
        } else {
            continue;
        };
        reply.admin = Some(admin);
        if admin == AgentAdmin::Down {
            let mut d = i;
            while d < line.len() && is_sep(line[d]) {
                d += 1;
            }
            reply.detail_at = d;
        }
    }
    reply
}

fn is_sep(b: u8) -> bool {
    matches!(b, b',' | b' ' | b'\t')
}

/// `NN%` (digits then one `%`), capped at [`MAX_PERCENT`].
fn percent(word: &[u8]) -> Option<u16> {
    let digits = word.strip_suffix(b"%")?;
    if digits.is_empty() || digits.len() > 6 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
    Some(n.min(u32::from(MAX_PERCENT)) as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_percentages() {
        let cases: &[(&[u8], Option<u16>, Option<AgentAdmin>)] = &[
            (b"75%", Some(75), None),
            (b"up 50%", Some(50), Some(AgentAdmin::Up)),
            (b"ready,100%", Some(100), Some(AgentAdmin::Up)),
            (b"drain", None, Some(AgentAdmin::Drain)),
            (b"MAINT", None, Some(AgentAdmin::Drain)),
            (b"0%", Some(0), None),
            (b"5000%", Some(MAX_PERCENT), None),
            (b"maxconn:30 80%", Some(80), None),
            (b"", None, None),
            (b"%", None, None),
            (b"12a%", None, None),
            (b"drain up", None, Some(AgentAdmin::Up)),
            (b"10% 20%", Some(20), None),
        ];
        for &(line, p, a) in cases {
            let r = parse(line);
            assert_eq!(
                (r.percent, r.admin),
                (p, a),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn down_keeps_the_rest_of_the_line_as_detail() {
        let line = b"50%, down  disk full";
        let r = parse(line);
        assert_eq!(r.admin, Some(AgentAdmin::Down));
        assert_eq!(r.percent, Some(50));
        assert_eq!(&line[r.detail_at..], b"disk full");
        let r = parse(b"stopped");
        assert_eq!(r.admin, Some(AgentAdmin::Down));
        assert_eq!(r.detail_at, 7);
    }
}
