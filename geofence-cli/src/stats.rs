//! Counters of decisions. Each worker counts on its own, without locks, and adds its counts to
//! the shared totals at the end of each burst; the totals feed SIGUSR1, the periodic summary of
//! drops and the Prometheus text.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::net::IpAddr;
use std::sync::Mutex;

use geofence_core::{CountryCode, Decision, Looked, Verdict};

/// How many distinct dropped sources an interval remembers: an attack from millions of spoofed
/// addresses must not grow memory without bound. Drops beyond that are still counted.
const MAX_TRACKED_SOURCES: usize = 4096;
/// The slot of "no known country" after the 676 country codes.
const UNKNOWN: usize = CountryCode::COUNT;
/// The slot of sources whose decision did not need their country, after "unknown": counting
/// must not make a packet pay for a lookup its decision skipped.
const SKIPPED: usize = UNKNOWN + 1;

/// Everything counted since start, plus the drops of the current summary interval.
#[derive(Default)]
pub struct Totals {
    /// Packets accepted without a mark of their own.
    pub accepted: u64,
    /// Packets accepted with a rule's mark.
    pub marked: u64,
    /// Packets dropped.
    pub dropped: u64,
    /// Packets that could not be parsed.
    pub malformed: u64,
    /// Per country index ([`CountryCode::index`], then unknown, then not looked up):
    /// [accepted, dropped].
    per_country: Vec<[u64; 2]>,
    /// Per rule name, `(default)`, `(malformed)` and `(behaviour)`: packets decided by it; and
    /// `(answers)`: the server's failure answers queued on OUTPUT, each accepted.
    pub per_rule: BTreeMap<String, u64>,
    interval: Interval,
}

/// The drops since the last summary.
#[derive(Default)]
pub struct Interval {
    /// Packets dropped.
    pub dropped: u64,
    /// Per source: packets dropped and the source's country, if a decision looked it up.
    pub sources: HashMap<IpAddr, (u64, Looked<CountryCode>)>,
}

impl Totals {
    /// The interval's drops, leaving a fresh interval.
    pub fn take_interval(&mut self) -> Interval {
        std::mem::take(&mut self.interval)
    }

    /// The `count` sources dropped most since the last summary, most first, with their
    /// packets and the country their decisions looked up.
    pub fn top_dropped(&self, count: usize) -> Vec<(IpAddr, u64, Looked<CountryCode>)> {
        let mut sources: Vec<_> =
            self.interval.sources.iter().map(|(source, (packets, country))| (*source, *packets, *country)).collect();
        sources.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        sources.truncate(count);
        sources
    }

    /// Per country code (then `unknown`, then `not looked up`): [accepted, dropped], for each
    /// one seen.
    pub fn per_country(&self) -> impl Iterator<Item = (String, [u64; 2])> + '_ {
        self.per_country.iter().enumerate().filter(|(_, counts)| **counts != [0, 0]).map(|(index, counts)| {
            let name = match CountryCode::from_index(index) {
                Some(code) => code.to_string(),
                None if index == UNKNOWN => "unknown".to_owned(),
                None => "not looked up".to_owned(),
            };
            (name, *counts)
        })
    }
}

/// Counters after the rules': the default verdict, malformed packets, behaviour drops, the
/// server's answers.
const EXTRA_SLOTS: usize = 4;

/// The name the server's answers (queued on OUTPUT for `[behaviour]`) are counted under.
pub const ANSWERS: &str = "(answers)";

/// One worker's counts since its last flush.
pub struct Local {
    accepted: u64,
    marked: u64,
    dropped: u64,
    malformed: u64,
    per_country: Vec<[u64; 2]>,
    touched_countries: Vec<usize>,
    per_rule: Vec<u64>,
    /// The drops since the last flush, by source: hashed once, when flushed.
    drops: Vec<(IpAddr, Looked<CountryCode>)>,
}

impl Local {
    /// Counters for a policy of `rules` rules.
    pub fn new(rules: usize) -> Local {
        Local {
            accepted: 0,
            marked: 0,
            dropped: 0,
            malformed: 0,
            per_country: vec![[0; 2]; SKIPPED + 1],
            touched_countries: Vec::new(),
            per_rule: vec![0; rules + EXTRA_SLOTS],
            drops: Vec::new(),
        }
    }

    /// Counts one decision.
    pub fn record(&mut self, decision: &Decision) {
        let dropped = decision.verdict == Verdict::Drop;
        match decision.verdict {
            Verdict::Accept => self.accepted += 1,
            Verdict::AcceptWithMark(_) => self.marked += 1,
            Verdict::Drop => self.dropped += 1,
        }
        let rules = self.per_rule.len() - EXTRA_SLOTS;
        let rule_slot = match (decision.packet.is_err(), decision.rule_index) {
            (true, _) => rules + 1,
            (false, Some(index)) => index.min(rules),
            (false, None) if decision.rule == Some(crate::behaviour::RULE) => rules + 2,
            (false, None) => rules,
        };
        self.per_rule[rule_slot] += 1;
        let Some(source) = decision.source else {
            self.malformed += 1;
            return;
        };
        let country = match decision.country {
            Looked::Found(Some(code)) => code.index(),
            Looked::Found(None) => UNKNOWN,
            _ => SKIPPED,
        };
        if self.per_country[country] == [0, 0] {
            self.touched_countries.push(country);
        }
        self.per_country[country][usize::from(dropped)] += 1;
        if !dropped {
            return;
        }
        // Kept in a list and hashed once, by the flush: spoofed floods bring a new source with
        // nearly every packet, so counting here would hash each drop twice.
        if !self.is_full() {
            self.drops.push((source, decision.country));
        }
    }

    /// Counts one of the server's answers, which is accepted as it is.
    pub fn record_answer(&mut self) {
        self.accepted += 1;
        let answers = self.per_rule.len() - 1;
        self.per_rule[answers] += 1;
    }

    /// Whether the drops since the last flush fill the list, so that further sources would go
    /// untracked until the next flush.
    pub fn is_full(&self) -> bool {
        self.drops.len() >= MAX_TRACKED_SOURCES
    }

    /// Adds the counts to `totals` (naming rules by `rule_names`) and starts afresh.
    pub fn flush(&mut self, totals: &Mutex<Totals>, rule_names: &[impl AsRef<str>]) {
        if self.accepted + self.marked + self.dropped == 0 {
            return;
        }
        let Ok(mut totals) = totals.lock() else { return };
        totals.accepted += self.accepted;
        totals.marked += self.marked;
        totals.dropped += self.dropped;
        totals.malformed += self.malformed;
        totals.interval.dropped += self.dropped;
        totals.per_country.resize(SKIPPED + 1, [0, 0]);
        for country in self.touched_countries.drain(..) {
            let [accepted, dropped] = std::mem::take(&mut self.per_country[country]);
            totals.per_country[country][0] += accepted;
            totals.per_country[country][1] += dropped;
        }
        let rules = self.per_rule.len() - EXTRA_SLOTS;
        for (slot, count) in self.per_rule.iter_mut().enumerate().filter(|(_, count)| **count > 0) {
            let numbered;
            let name = match slot {
                s if s < rules => match rule_names.get(s) {
                    Some(name) => name.as_ref(),
                    None => {
                        numbered = format!("rule {}", s + 1);
                        numbered.as_str()
                    }
                },
                s if s == rules => "(default)",
                s if s == rules + 1 => "(malformed)",
                s if s == rules + 2 => crate::behaviour::RULE,
                _ => ANSWERS,
            };
            let count = std::mem::take(count);
            add_to(&mut totals.per_rule, name, |total| *total += count);
        }
        for (source, country) in self.drops.drain(..) {
            let sources = &mut totals.interval.sources;
            if sources.len() < MAX_TRACKED_SOURCES {
                sources.entry(source).or_insert((0, country)).0 += 1;
            } else if let Some((total, _)) = sources.get_mut(&source) {
                *total += 1;
            }
        }
        (self.accepted, self.marked, self.dropped, self.malformed) = (0, 0, 0, 0);
    }
}

/// Applies `add` to the entry for `key`, made empty if new. Looked up by `&str` first, so the
/// steady state (every flush after the first rule's) allocates nothing.
fn add_to<V: Default>(map: &mut BTreeMap<String, V>, key: &str, add: impl FnOnce(&mut V)) {
    match map.get_mut(key) {
        Some(entry) => add(entry),
        None => add(map.entry(key.to_owned()).or_default()),
    }
}

/// The log line for an interval with drops: how many, from how many sources, from which
/// countries, and the top sources; `None` when nothing was dropped. Sources whose decisions did
/// not look their country up are looked up here, through `country_of`, once each: off the
/// packet path, at most [`MAX_TRACKED_SOURCES`] an interval.
pub fn summary(
    interval: &Interval,
    seconds: u64,
    country_of: impl Fn(IpAddr) -> Option<CountryCode>,
) -> Option<String> {
    if interval.dropped == 0 {
        return None;
    }
    let mut sources: Vec<(&IpAddr, u64, Option<CountryCode>)> = interval
        .sources
        .iter()
        .map(|(source, (count, country))| {
            let country = match country {
                Looked::Found(country) => *country,
                _ => country_of(*source),
            };
            (source, *count, country)
        })
        .collect();
    let mut by_country: HashMap<String, u64> = HashMap::new();
    for (_, count, country) in &sources {
        *by_country.entry(country.map_or("unknown".to_owned(), |c| c.to_string())).or_default() += count;
    }
    let mut countries: Vec<(String, u64)> = by_country.into_iter().collect();
    countries.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    sources.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let mut line = format!(
        "dropped {} packets from {}{} sources in {}{} in the last {seconds} s; top sources:",
        thousands(interval.dropped),
        if interval.sources.len() >= MAX_TRACKED_SOURCES { "at least " } else { "" },
        thousands(interval.sources.len() as u64),
        countries.iter().take(5).map(|(c, _)| c.as_str()).collect::<Vec<_>>().join(", "),
        if countries.len() > 5 { ", …" } else { "" },
    );
    for (source, count, country) in sources.iter().take(5) {
        let country = country.map_or("-".to_owned(), |c| c.to_string());
        let _ = write!(line, " {source} ({country}) {}", thousands(*count));
    }
    Some(line)
}

/// 1204 → "1,204".
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use geofence_core::{db::parse_range_csv, sample, Config, Policy};

    const DB: &str = "192.0.2.0,192.0.2.255,GB\n198.51.100.0,198.51.100.255,CN\n";

    /// The LAN first (no country needed), GB accepted with a mark, the rest of SIP dropped.
    fn policy() -> Policy {
        let config = Config::parse(
            "default = \"accept\"\n\
             [[rule]]\nname = \"lan\"\nsource = [\"rfc1918\"]\naction = \"accept\"\n\
             [[rule]]\nname = \"allowed\"\nports = [5060]\ncountry = [\"GB\"]\naction = \"accept\"\nmark = 1\n\
             [[rule]]\nname = \"rest\"\nports = [5060]\naction = \"drop\"\n",
        )
        .unwrap();
        config.policy.build(Arc::new(parse_range_csv(DB).unwrap())).unwrap()
    }

    fn record(local: &mut Local, policy: &Policy, source: &str, port: u16) {
        let source: IpAddr = source.parse().unwrap();
        let server = if source.is_ipv4() { "192.0.2.1" } else { "2001:db8::1" }.parse().unwrap();
        local.record(&policy.explain(&sample::udp_packet(source, server, (5062, port), b"x")));
    }

    fn names(policy: &Policy) -> Vec<String> {
        policy.rules().map(|rule| rule.name().to_owned()).collect()
    }

    #[test]
    fn counts_flow_from_workers_to_totals_by_verdict_country_and_rule() {
        let (policy, totals) = (policy(), Mutex::new(Totals::default()));
        let mut local = Local::new(3);
        record(&mut local, &policy, "192.0.2.10", 5060);
        record(&mut local, &policy, "198.51.100.7", 5060);
        record(&mut local, &policy, "198.51.100.7", 5060);
        record(&mut local, &policy, "10.1.2.3", 5060);
        record(&mut local, &policy, "203.0.113.200", 5070);
        local.flush(&totals, &names(&policy));
        local.flush(&totals, &names(&policy));
        let mut totals = totals.into_inner().unwrap();
        assert_eq!((totals.accepted, totals.marked, totals.dropped, totals.malformed), (2, 1, 2, 0));
        assert_eq!(
            totals.per_country().collect::<Vec<_>>(),
            [("CN".to_owned(), [0, 2]), ("GB".to_owned(), [1, 0]), ("not looked up".to_owned(), [2, 0])]
        );
        assert_eq!(
            totals.per_rule.iter().map(|(k, v)| (k.as_str(), *v)).collect::<Vec<_>>(),
            [("(default)", 1), ("allowed", 1), ("lan", 1), ("rest", 2)]
        );
        let top = totals.top_dropped(1);
        assert_eq!(top, [("198.51.100.7".parse().unwrap(), 2, Looked::Found(Some("CN".parse().unwrap())))]);
        let interval = totals.take_interval();
        assert_eq!(
            summary(&interval, 10, |source| policy.country_of(source)).unwrap(),
            "dropped 2 packets from 1 sources in CN in the last 10 s; top sources: 198.51.100.7 (CN) 2"
        );
        assert_eq!(summary(&totals.take_interval(), 10, |_| None), None);
    }

    #[test]
    fn drops_decided_without_a_lookup_are_looked_up_for_the_summary_only() {
        let config = Config::parse("default = \"drop\"\n").unwrap();
        let policy = config.policy.build(Arc::new(parse_range_csv(DB).unwrap())).unwrap();
        let totals = Mutex::new(Totals::default());
        let mut local = Local::new(0);
        record(&mut local, &policy, "198.51.100.7", 5060);
        local.flush(&totals, &[] as &[&str]);
        let mut totals = totals.into_inner().unwrap();
        assert_eq!(totals.per_country().collect::<Vec<_>>(), [("not looked up".to_owned(), [0, 1])]);
        assert_eq!(
            summary(&totals.take_interval(), 1, |source| policy.country_of(source)).unwrap(),
            "dropped 1 packets from 1 sources in CN in the last 1 s; top sources: 198.51.100.7 (CN) 1"
        );
    }

    #[test]
    fn sources_tracked_per_interval_are_bounded() {
        let (policy, totals) = (policy(), Mutex::new(Totals::default()));
        let mut local = Local::new(3);
        for i in 0..(MAX_TRACKED_SOURCES as u32 + 100) {
            let source = std::net::Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(i)).to_string();
            record(&mut local, &policy, &source, 5060);
        }
        local.flush(&totals, &names(&policy));
        let interval = totals.lock().unwrap().take_interval();
        assert_eq!(interval.sources.len(), MAX_TRACKED_SOURCES);
        assert_eq!(interval.dropped, MAX_TRACKED_SOURCES as u64 + 100);
        assert!(summary(&interval, 10, |_| None)
            .unwrap()
            .starts_with("dropped 4,196 packets from at least 4,096 sources in unknown"));
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(
            (thousands(0), thousands(999), thousands(1204), thousands(1_000_000)),
            ("0".into(), "999".into(), "1,204".into(), "1,000,000".into())
        );
    }
}
