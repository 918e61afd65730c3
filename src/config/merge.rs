//! What reals share: one probe for every real with the same target, check and timing, and one
//! argv for every equal `notify` command.
//!
//! A real server behind many virtual services (or many reals whose `check` sends them all to
//! one `--address`) is probed once: [`Checks::share`] gives each real the index of an equal
//! check built before, or builds a new one. Equality is target, [`Timing`] and the plugin's
//! spec; the spec is compared only among the checks of one target and timing, and each `check`
//! line is parsed once per target, so a plan of 100,000 reals does nothing quadratic.
//!
//! The walk ([`super::plan`]) decides each real's effective settings and calls in here; nothing
//! here reads the config's words but the notify argvs.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::parse::{Document, Word};
use super::{CheckPlan, ConfigError, Loc, SockOpts};
use crate::plugins::CheckSpec;

/// Where a real's check connects: the real's own address, with the check line's `--address`
/// and `--port` in place of its address and port where given.
#[inline]
pub(super) fn target(real: SocketAddr, address: Option<IpAddr>, port: Option<u16>) -> SocketAddr {
    SocketAddr::new(address.unwrap_or(real.ip()), port.unwrap_or(real.port()))
}

/// How often and how long one probe runs: part of what makes two reals share it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Timing {
    /// `interval`.
    pub(super) interval: Duration,
    /// `retry-interval`.
    pub(super) retry: Duration,
    /// `connect-timeout`.
    pub(super) connect: Duration,
    /// `timeout`.
    pub(super) timeout: Duration,
    /// The check line's `--source` and `--mark`.
    pub(super) sock: SockOpts,
}

/// The distinct checks (probes) built so far: [`Plan::checks`](super::Plan::checks) in the
/// making.
///
/// Reals share a probe when target, timing and spec are equal. Specs are compared with `==`
/// only among the probes of one (target, timing), which `heads` and `next` chain together, so
/// a spec is never hashed or cloned; and each `check` line is parsed once per target.
pub(super) struct Checks {
    /// (check line, target) to a probe whose spec is that line's against that target.
    parsed: FastMap<(Option<usize>, SocketAddr), usize>,
    /// (target, timing) to the most recent probe with them.
    heads: FastMap<(SocketAddr, u32), usize>,
    /// For each probe, the previous one with the same target and timing (`usize::MAX`: none).
    next: Vec<usize>,
    /// Distinct timings, to keep the keys of `heads` small.
    timing_ids: FastMap<Timing, u32>,
    checks: Vec<CheckPlan>,
}

impl Checks {
    /// Room for `reals` reals, each with a check of its own at worst.
    pub(super) fn with_capacity(reals: usize) -> Checks {
        Checks {
            parsed: fast_map(reals),
            heads: fast_map(reals),
            next: Vec::with_capacity(reals),
            timing_ids: fast_map(16),
            checks: Vec::with_capacity(reals),
        }
    }

    /// The id of timing `t`, a new one if `t` is new.
    fn timing(&mut self, t: Timing) -> u32 {
        let n = u32::try_from(self.timing_ids.len()).unwrap_or(u32::MAX);
        *self.timing_ids.entry(t).or_insert(n)
    }

    /// The check of real `real` (its index in `Plan::reals`): check line `line` (`None`: the
    /// default `tcp`) against `target` with `timing`, an existing check if one is equal, else a
    /// new one whose spec `parse(line, target)` builds. The real joins the check's reals; the
    /// check's index is returned.
    pub(super) fn share(
        &mut self,
        real: usize,
        line: Option<usize>,
        target: SocketAddr,
        timing: Timing,
        parse: impl FnOnce(Option<usize>, SocketAddr) -> Result<CheckSpec, ConfigError>,
    ) -> Result<usize, ConfigError> {
        let timing_id = self.timing(timing);
        // The spec of (line, target): the one of a probe already built from the same pair
        // (a real behind several virtuals sharing a check line), or parsed now.
        let known = self.parsed.get(&(line, target)).copied();
        let spec = match known {
            Some(c) => Spec::Known(c),
            None => Spec::Fresh(parse(line, target)?),
        };
        let head = self.heads.get(&(target, timing_id)).copied();
        let found = {
            let spec = match &spec {
                Spec::Fresh(s) => s,
                Spec::Known(c) => &self.checks[*c].spec,
            };
            let mut cur = head;
            let mut found = None;
            while let Some(c) = cur {
                if Some(c) == known || self.checks[c].spec == *spec {
                    found = Some(c);
                    break;
                }
                cur = Some(self.next[c]).filter(|&n| n != usize::MAX);
            }
            found
        };
        let check = match found {
            Some(c) => c,
            None => {
                let spec = match spec {
                    Spec::Fresh(s) => s,
                    Spec::Known(c) => self.checks[c].spec.clone(),
                };
                self.checks.push(CheckPlan {
                    target,
                    spec,
                    interval: timing.interval,
                    retry_interval: timing.retry,
                    connect_timeout: timing.connect,
                    timeout: timing.timeout,
                    reals: Vec::new(),
                    sock: timing.sock,
                });
                let c = self.checks.len() - 1;
                self.next.push(head.unwrap_or(usize::MAX));
                self.heads.insert((target, timing_id), c);
                c
            }
        };
        if known.is_none() {
            self.parsed.insert((line, target), check);
        }
        self.checks[check].reals.push(real);
        Ok(check)
    }

    /// The checks, each with its reals: [`Plan::checks`](super::Plan::checks).
    pub(super) fn into_checks(self) -> Vec<CheckPlan> {
        let mut checks = self.checks;
        checks.shrink_to_fit();
        checks
    }
}

/// A check's spec while looking for an equal probe.
enum Spec {
    /// Just parsed.
    Fresh(CheckSpec),
    /// The spec of this probe (built from the same check line and target).
    Known(usize),
}

/// The distinct `notify` commands: each `notify` line is turned into argv once, and equal
/// argvs share one entry of [`Plan::notifies`](super::Plan::notifies).
pub(super) struct Notifies {
    /// For each `notify` line, its entry once some real or virtual used it.
    of_line: Vec<Option<usize>>,
    /// Each argv to its entry.
    ids: HashMap<Vec<Vec<u8>>, usize>,
    /// The entries: [`Plan::notifies`](super::Plan::notifies).
    pub(super) argvs: Vec<Vec<Vec<u8>>>,
    /// Where each entry's program word stands: [`Plan::notify_at`](super::Plan::notify_at).
    pub(super) at: Vec<Loc>,
}

impl Notifies {
    /// None yet, for a document of `lines` notify lines.
    pub(super) fn new(lines: usize) -> Notifies {
        Notifies {
            of_line: vec![None; lines],
            ids: HashMap::new(),
            argvs: Vec::new(),
            at: Vec::new(),
        }
    }

    /// The entry of notify line `line`, whose argv words are `words`.
    pub(super) fn intern(&mut self, doc: &Document, words: &[Word], line: usize) -> usize {
        let Notifies {
            of_line,
            ids,
            argvs,
            at,
        } = self;
        *of_line[line].get_or_insert_with(|| {
            let argv: Vec<Vec<u8>> = words.iter().map(|w| w.text.clone()).collect();
            *ids.entry(argv.clone()).or_insert_with(|| {
                argvs.push(argv);
                at.push(doc.loc(words[0].pos));
                argvs.len() - 1
            })
        })
    }
}

/// A fast, non-cryptographic hasher for the planner's own tables. Their keys come from the
/// operator's own file, so there is no flooding attacker to resist, and SipHash showed in the
/// profile of a 100,000-real plan.
#[derive(Default, Clone, Copy)]
pub(super) struct FastHasher(u64);

impl FastHasher {
    fn add(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(c);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(n.into());
    }

    fn write_u16(&mut self, n: u16) {
        self.add(n.into());
    }

    fn write_u32(&mut self, n: u32) {
        self.add(n.into());
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        // A final mix (from MurmurHash3's fmix64) so the table's low and high bits both vary.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h
    }
}

/// A hash map with [`FastHasher`].
pub(super) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// An empty [`FastMap`] with room for `capacity` entries.
pub(super) fn fast_map<K, V>(capacity: usize) -> FastMap<K, V> {
    HashMap::with_capacity_and_hasher(capacity, BuildHasherDefault::default())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::plugins::Target;
    use std::cell::Cell;

    #[test]
    fn a_check_line_is_parsed_once_per_target() {
        let (a, b) = (sa("198.51.100.1:80"), sa("198.51.100.2:80"));
        let t = |interval| Timing {
            interval: secs(interval),
            retry: secs(interval),
            connect: secs(3),
            timeout: secs(5),
            sock: SockOpts::default(),
        };
        let parsed = Cell::new(0);
        let parse = |_line: Option<usize>, target: SocketAddr| {
            parsed.set(parsed.get() + 1);
            Ok(CheckSpec::parse("tcp", &[], Target { addr: target }).expect("tcp"))
        };
        let mut checks = Checks::with_capacity(6);
        // Line 0 against a: parsed, a new check.
        assert_eq!(checks.share(0, Some(0), a, t(10), parse).unwrap(), 0);
        // The same line, target and timing (the real behind another virtual): the same check.
        assert_eq!(checks.share(1, Some(0), a, t(10), parse).unwrap(), 0);
        // Another timing: another check, but the line's spec against a is not parsed again.
        assert_eq!(checks.share(2, Some(0), a, t(5), parse).unwrap(), 1);
        assert_eq!(parsed.get(), 1);
        // Another line whose spec is equal, same target and timing: parsed, then merged.
        assert_eq!(checks.share(3, Some(1), a, t(10), parse).unwrap(), 0);
        // The default check against another target: parsed, a new check.
        assert_eq!(checks.share(4, None, b, t(10), parse).unwrap(), 2);
        assert_eq!(checks.share(5, None, b, t(10), parse).unwrap(), 2);
        assert_eq!(parsed.get(), 3);
        let checks = checks.into_checks();
        let reals: Vec<&[usize]> = checks.iter().map(|c| c.reals.as_slice()).collect();
        assert_eq!(reals, [&[0, 1, 3][..], &[2], &[4, 5]]);
        let targets: Vec<SocketAddr> = checks.iter().map(|c| c.target).collect();
        assert_eq!(targets, [a, a, b]);
        assert_eq!(
            (checks[0].interval, checks[1].interval),
            (secs(10), secs(5))
        );
        // A parse error is the caller's, and nothing is added.
        let mut more = Checks::with_capacity(1);
        let refused = more.share(0, Some(2), a, t(10), |_, _| {
            Err(ConfigError::File {
                path: "x.conf".into(),
                message: "no".into(),
            })
        });
        assert!(refused.is_err());
        assert!(more.into_checks().is_empty());
    }

    #[test]
    fn a_check_goes_where_its_line_says() {
        let real = sa("198.51.100.1:80");
        assert_eq!(target(real, None, None), real);
        assert_eq!(target(real, None, Some(8080)), sa("198.51.100.1:8080"));
        let other = "2001:db8::7".parse().unwrap();
        assert_eq!(target(real, Some(other), None), sa("[2001:db8::7]:80"));
        assert_eq!(target(real, Some(other), Some(99)), sa("[2001:db8::7]:99"));
    }

    // The same, through whole config files

    #[test]
    fn same_real_behind_three_virtuals_is_checked_once() {
        let p = plan_text(
            "check http --url http://www.example.com/health\n\
             virtual tcp 192.0.2.1:80 {\n real 198.51.100.1:80\n}\n\
             virtual tcp 192.0.2.2:80 {\n real 198.51.100.1\n real 198.51.100.2\n}\n\
             virtual fwmark 9 {\n real 198.51.100.1:80 weight 4\n}\n\
             virtual tcp 192.0.2.4:80 {\n interval 5s\n real 198.51.100.1\n}\n",
        );
        assert_eq!(p.reals.len(), 5);
        assert_eq!(p.checks.len(), 3);
        let shared = &p.checks[p.reals[0].check];
        assert_eq!(shared.reals, [0, 1, 3]);
        assert_eq!(shared.target, sa("198.51.100.1:80"));
        assert_eq!(
            (p.reals[1].check, p.reals[3].check),
            (p.reals[0].check, p.reals[0].check)
        );
        // A different interval is a different probe.
        assert_ne!(p.reals[4].check, p.reals[0].check);
        assert_eq!(p.checks[p.reals[4].check].reals, [4]);
        assert_eq!(p.checks[p.reals[2].check].reals, [2]);
        // Every real is in exactly one check's list.
        let mut all: Vec<usize> = p
            .checks
            .iter()
            .flat_map(|c| c.reals.iter().copied())
            .collect();
        all.sort_unstable();
        assert_eq!(all, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn identical_checks_from_different_lines_merge() {
        let p = plan_text(
            "virtual tcp 192.0.2.1:80 {\n check tcp --address 203.0.113.9\n real 198.51.100.1\n real 198.51.100.2\n}\n\
             virtual tcp 192.0.2.2:80 {\n real 198.51.100.3 {\n  check tcp --port 80 --address 203.0.113.9\n }\n\
             real 198.51.100.4 {\n  check tcp --port 81 --address 203.0.113.9\n }\n\
             real 198.51.100.5 {\n  timeout 4s\n  check tcp --address 203.0.113.9\n }\n}\n",
        );
        assert_eq!(p.checks.len(), 3);
        assert_eq!(p.checks[0].reals, [0, 1, 2]);
        assert_eq!(p.checks[1].reals, [3]);
        assert_eq!(p.checks[2].reals, [4]);
    }

    #[test]
    fn notify_commands_are_deduplicated() {
        let p = plan_text(
            "notify /bin/n x\nvirtual tcp 192.0.2.1:80 {\n real 198.51.100.1\n real 198.51.100.2 {\n  notify \"/bin/n\" \"x\"\n }\n\
             real 198.51.100.3 {\n  notify /bin/n y\n }\n}\nvirtual tcp 192.0.2.2:80 {\n notify /bin/unused\n}\n",
        );
        assert_eq!(
            p.notifies,
            [
                vec![b"/bin/n".to_vec(), b"x".to_vec()],
                vec![b"/bin/n".to_vec(), b"y".to_vec()],
                vec![b"/bin/unused".to_vec()],
            ]
        );
        let idx: Vec<Option<usize>> = p.reals.iter().map(|r| r.notify).collect();
        assert_eq!(idx, [Some(0), Some(0), Some(1)]);
        // Quorum events use the virtual's own (or the global) notify.
        let v: Vec<Option<usize>> = p.virtuals.iter().map(|v| v.notify).collect();
        assert_eq!(v, [Some(0), Some(2)]);
    }
}
