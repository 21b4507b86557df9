//! Counters of decisions. Each worker counts on its own, without locks, and adds its counts to
//! the shared totals at the end of each burst; the totals feed SIGUSR1, the periodic summary of
//! drops and the Prometheus text.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::net::IpAddr;
use std::sync::Mutex;

use geofence_core::{CountryCode, Decision, Verdict};

/// How many distinct dropped sources an interval remembers: an attack from millions of spoofed
/// addresses must not grow memory without bound. Drops beyond that are still counted.
const MAX_TRACKED_SOURCES: usize = 4096;
/// The slot of "no known country" after the 676 country codes.
const UNKNOWN: usize = CountryCode::COUNT;

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
    /// Per country index ([`CountryCode::index`], then one for unknown): [accepted, dropped].
    per_country: Vec<[u64; 2]>,
    /// Per rule name, `(default)` and `(malformed)`: packets decided by it.
    pub per_rule: BTreeMap<String, u64>,
    interval: Interval,
}

/// The drops since the last summary.
#[derive(Default)]
pub struct Interval {
    /// Packets dropped.
    pub dropped: u64,
    /// Per source: packets dropped and the source's country.
    pub sources: HashMap<IpAddr, (u64, Option<CountryCode>)>,
}

impl Totals {
    /// The interval's drops, leaving a fresh interval.
    pub fn take_interval(&mut self) -> Interval {
        std::mem::take(&mut self.interval)
    }

    /// Per country code (`unknown` for none, last): [accepted, dropped], for each one seen.
    pub fn per_country(&self) -> impl Iterator<Item = (String, [u64; 2])> + '_ {
        self.per_country.iter().enumerate().filter(|(_, counts)| **counts != [0, 0]).map(|(index, counts)| {
            (CountryCode::from_index(index).map_or("unknown".to_owned(), |code| code.to_string()), *counts)
        })
    }
}

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
    drops: Vec<(IpAddr, Option<CountryCode>)>,
}

impl Local {
    /// Counters for a policy of `rules` rules.
    pub fn new(rules: usize) -> Local {
        Local {
            accepted: 0,
            marked: 0,
            dropped: 0,
            malformed: 0,
            per_country: vec![[0; 2]; CountryCode::COUNT + 1],
            touched_countries: Vec::new(),
            per_rule: vec![0; rules + 2],
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
        let rules = self.per_rule.len() - 2;
        let rule_slot = match (decision.packet.is_err(), decision.rule_index) {
            (true, _) => rules + 1,
            (false, Some(index)) => index.min(rules),
            (false, None) => rules,
        };
        self.per_rule[rule_slot] += 1;
        let Some(source) = decision.source else {
            self.malformed += 1;
            return;
        };
        let country = decision.country.map_or(UNKNOWN, CountryCode::index);
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

    /// Whether the drops since the last flush fill the list, so that further sources would go
    /// untracked until the next flush.
    pub fn is_full(&self) -> bool {
        self.drops.len() >= MAX_TRACKED_SOURCES
    }

    /// Adds the counts to `totals` (naming rules by `rule_names`) and starts afresh.
    pub fn flush(&mut self, totals: &Mutex<Totals>, rule_names: &[String]) {
        if self.accepted + self.marked + self.dropped == 0 {
            return;
        }
        let Ok(mut totals) = totals.lock() else { return };
        totals.accepted += self.accepted;
        totals.marked += self.marked;
        totals.dropped += self.dropped;
        totals.malformed += self.malformed;
        totals.interval.dropped += self.dropped;
        totals.per_country.resize(UNKNOWN + 1, [0, 0]);
        for country in self.touched_countries.drain(..) {
            let [accepted, dropped] = std::mem::take(&mut self.per_country[country]);
            totals.per_country[country][0] += accepted;
            totals.per_country[country][1] += dropped;
        }
        let rules = self.per_rule.len() - 2;
        for (slot, count) in self.per_rule.iter_mut().enumerate().filter(|(_, count)| **count > 0) {
            let numbered;
            let name = match slot {
                s if s < rules => match rule_names.get(s) {
                    Some(name) => name.as_str(),
                    None => {
                        numbered = format!("rule {}", s + 1);
                        numbered.as_str()
                    }
                },
                s if s == rules => "(default)",
                _ => "(malformed)",
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
/// countries, and the top sources; `None` when nothing was dropped.
pub fn summary(interval: &Interval, seconds: u64) -> Option<String> {
    if interval.dropped == 0 {
        return None;
    }
    let mut by_country: HashMap<String, u64> = HashMap::new();
    for (count, country) in interval.sources.values() {
        *by_country.entry(country.map_or("unknown".to_owned(), |c| c.to_string())).or_default() += count;
    }
    let mut countries: Vec<(String, u64)> = by_country.into_iter().collect();
    countries.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut sources: Vec<(&IpAddr, &(u64, Option<CountryCode>))> = interval.sources.iter().collect();
    sources.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(b.0)));
    let mut line = format!(
        "dropped {} packets from {}{} sources in {}{} in the last {seconds} s; top sources:",
        thousands(interval.dropped),
        if interval.sources.len() >= MAX_TRACKED_SOURCES { "at least " } else { "" },
        thousands(interval.sources.len() as u64),
        countries.iter().take(5).map(|(c, _)| c.as_str()).collect::<Vec<_>>().join(", "),
        if countries.len() > 5 { ", …" } else { "" },
    );
    for (source, (count, country)) in sources.iter().take(5) {
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
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use geofence_core::packet::PacketMeta;
    use geofence_core::{Protocol, Transport};

    fn decision(source: &str, country: Option<&str>, verdict: Verdict, rule: Option<usize>) -> Decision<'static> {
        let source: IpAddr = source.parse().unwrap();
        let meta = PacketMeta {
            source,
            destination: "192.0.2.1".parse().unwrap(),
            protocol: Protocol::UDP,
            transport: Transport::Ports { source: 5062, destination: 5060 },
        };
        Decision {
            verdict,
            rule: None,
            rule_index: rule,
            packet: Ok(meta),
            source: Some(source),
            country: country.map(|c| c.parse().unwrap()),
        }
    }

    #[test]
    fn counts_flow_from_workers_to_totals_by_verdict_country_and_rule() {
        let totals = Mutex::new(Totals::default());
        let names = vec!["lan".to_owned(), "allowed".to_owned(), "rest".to_owned()];
        let mut local = Local::new(3);
        local.record(&decision("192.0.2.10", Some("GB"), Verdict::Accept, Some(1)));
        local.record(&decision("198.51.100.7", Some("CN"), Verdict::Drop, Some(2)));
        local.record(&decision("198.51.100.7", Some("CN"), Verdict::Drop, Some(2)));
        local.record(&decision("203.0.113.200", None, Verdict::AcceptWithMark(1), None));
        local.flush(&totals, &names);
        local.flush(&totals, &names);
        let mut totals = totals.into_inner().unwrap();
        assert_eq!((totals.accepted, totals.marked, totals.dropped, totals.malformed), (1, 1, 2, 0));
        assert_eq!(
            totals.per_country().collect::<Vec<_>>(),
            [("CN".to_owned(), [0, 2]), ("GB".to_owned(), [1, 0]), ("unknown".to_owned(), [1, 0])]
        );
        assert_eq!(
            totals.per_rule.iter().map(|(k, v)| (k.as_str(), *v)).collect::<Vec<_>>(),
            [("(default)", 1), ("allowed", 1), ("rest", 2)]
        );
        let interval = totals.take_interval();
        assert_eq!(
            summary(&interval, 10).unwrap(),
            "dropped 2 packets from 1 sources in CN in the last 10 s; top sources: 198.51.100.7 (CN) 2"
        );
        assert_eq!(summary(&totals.take_interval(), 10), None);
    }

    #[test]
    fn sources_tracked_per_interval_are_bounded() {
        let totals = Mutex::new(Totals::default());
        let mut local = Local::new(1);
        for i in 0..(MAX_TRACKED_SOURCES as u32 + 100) {
            let source = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
            local.record(&decision(&source, Some("CN"), Verdict::Drop, Some(0)));
        }
        local.flush(&totals, &["r".to_owned()]);
        let interval = totals.lock().unwrap().take_interval();
        assert_eq!(interval.sources.len(), MAX_TRACKED_SOURCES);
        assert_eq!(interval.dropped, MAX_TRACKED_SOURCES as u64 + 100);
        assert!(summary(&interval, 10).unwrap().starts_with("dropped 4,196 packets from at least 4,096 sources in CN"));
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(
            (thousands(0), thousands(999), thousands(1204), thousands(1_000_000)),
            ("0".into(), "999".into(), "1,204".into(), "1,000,000".into())
        );
    }
}
