//! The TOML configuration: text in, a [`Deployment`] and a [`PolicyConfig`] out.
//!
//! A file holds both parts side by side at its top level; each has one owner. The policy part
//! (`default`, `malformed`, `database`, `[lists]`, `[[rule]]`) is what is decided, and an
//! embedder can read it from a table of its own file ([`PolicyTable`]). The deployment part
//! (queues, fail-open, queue length, copy range, hashlimit, flow mark, metrics, summaries) is how packets
//! reach the policy; geofence-nfq derives the queue settings and firewall rules from it.
//!
//! Every error names the line and column of the offending value and, where the fix is obvious,
//! says it (`UK` → `GB`, a CIDR with host bits set, a misspelt list name). Rules that can never
//! match are not errors but [`ConfigWarning`]s, so a config under construction still loads.
//!
//! ```toml
//! queue = 0                 # the NFQUEUE number, or a range "0-3" (one worker a queue)
//! database = "countries.csv" # the country database file (read by the caller)
//! fail_open = false         # true: let packets through when geofence cannot keep up or is stopped
//! queue_length = 8192       # packets that may wait in the kernel for a verdict
//! copy_range = 256          # bytes of each packet the kernel hands over (64 to 65535)
//! hashlimit_rate = 2        # new flows a second one source may start before the rules drop
//! hashlimit_burst = 5       #   them ahead of the queue (geofence rules)
//! flow_mark = 0x40000000    # mark bit set on accepted packets; the rules let the rest of the
//!                           #   flow pass in the kernel (0: off)
//! examined_mark = 0x20000000 # mark bit set on packets accepted one by one (SIP rules), which
//!                           #   fail-open's count of unexamined packets passes over (0: off)
//! metrics = "127.0.0.1:9477" # optional: Prometheus text on this address
//! summary_seconds = 10      # how often drops are summarised in the log
//! default = "accept"        # packets no rule matches
//! malformed = "drop"        # packets that cannot be parsed (the default)
//!
//! [lists]
//! trunks = ["203.0.113.10", "2001:db8:5::/48"]
//!
//! [feeds]                             # lists read from files (see geofence_core::feed)
//! voipbl = { files = ["voipbl.txt"] } # relative to the config file
//! drop = { files = ["drop_v4.json", "drop_v6.json"], may_shrink = true }
//!
//! [[rule]]
//! name = "trunks"
//! source = ["trunks", "rfc1918"]      # defined, feed or built-in lists
//! action = "accept"
//!
//! [[rule]]
//! name = "sip-allowed"
//! protocol = "udp"                    # or ["udp", "tcp"]
//! ports = [5060, "5061-5062"]
//! country = ["GB", "US", "unknown"]   # "unknown": the database has no country for the source
//! continent = ["OC"]
//! action = "accept"
//! mark = 0x10                         # optional: accept and set this netfilter mark
//!
//! [[rule]]
//! name = "sip-others"
//! protocol = "udp"
//! ports = [5060]
//! action = "drop"
//!
//! [sip_patterns]                      # User-Agent (or host, user) patterns rules name as @name
//! mine = ["BadDialer*", "evil-ua"]
//!
//! [[rule]]                            # SIP conditions (see below): before the country rules
//! name = "scanners"
//! protocol = "udp"
//! ports = [5060]
//! user_agent = ["@scanners", "@mine"] # @scanners: the built-in list of scanner User-Agents
//! action = "drop"
//!
//! [[rule]]
//! name = "address-literal"
//! ports = [5060]
//! sip_method = ["REGISTER", "INVITE"]
//! request_host = ["address"]          # the Request-URI names an address, not the domain
//! action = "drop"
//! ```
//!
//! The SIP keys are `sip` (`request`, `response`, `keep-alive`, `empty`, `not-sip`),
//! `sip_method`, `user_agent` / `not_user_agent`, `request_host` / `not_request_host`,
//! `request_user`, `from_user` and `to_user`; a rule with any of them reads each datagram's
//! payload, and a verdict from it or a later rule is not given to the flow: every datagram is
//! decided.
//!
//! `not_country` and `not_continent` exclude instead; "unknown" is a member like any country, so
//! `not_country = ["CN"]` matches sources of unknown country unless "unknown" is listed too.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use ip_network::IpNetwork;
use serde::Deserialize;
use toml::Spanned;

use crate::ban::{BanLimits, BanSpec, Duration as BanDuration, SetKind, MAX_DURATION_MS};
use crate::condition::asn::{self, AsnCondition};
use crate::condition::country::{self, CountryCondition};
use crate::condition::port::{self, PortCondition};
use crate::condition::protocol::{self, ProtocolCondition};
use crate::condition::sip::{self, SipCondition};
use crate::condition::source::SourceCondition;
use crate::condition::Conditions;
use crate::db::CountryDb;
use crate::policy::{Policy, PolicyBuilder, PolicyError};
use crate::prefix::{self, PrefixList};
use crate::rule::{Rule, Verdict};

/// A whole configuration file, checked: how geofence is deployed, and the policy it applies.
#[derive(Debug)]
#[non_exhaustive]
pub struct Config {
    /// Where and how the packets reach geofence: queues, firewall rules, metrics, logs.
    pub deployment: Deployment,
    /// What is decided: rules, lists, verdicts, databases.
    pub policy: PolicyConfig,
}

/// The deployment settings: how packets reach the policy and how geofence reports, nothing
/// about what is decided.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Deployment {
    /// The netfilter queues to bind, first to last (default 0 to 0).
    pub queues: (u16, u16),
    /// Whether packets pass unexamined when geofence cannot keep up or is not running (the
    /// queue's fail-open flag and the rule's `--queue-bypass`), rather than being dropped.
    pub fail_open: bool,
    /// How many packets may wait in the kernel for a verdict (at least 1); `None`: the queue's
    /// default.
    pub queue_length: Option<u32>,
    /// How many bytes of each packet the kernel copies to geofence (64 to 65,535); `None`: the
    /// queue's default. A packet whose headers do not fit is decided as malformed.
    pub copy_range: Option<u16>,
    /// New flows a second one source may start before the firewall rules drop them.
    pub hashlimit_rate: u32,
    /// The burst those rules allow above the rate.
    pub hashlimit_burst: u32,
    /// The mark bit set on accepted packets, which the rules save to the connection so the rest
    /// of an accepted flow never leaves the kernel; 0 turns it off.
    pub flow_mark: u32,
    /// The mark bit set on packets accepted without the flow mark (a verdict a later packet of
    /// the flow could change, as SIP rules give), which is never saved to the connection: the
    /// rules that count what fail-open let pass unexamined tell these decided packets by it. 0
    /// turns it off, and with fail-open such packets are then counted as unexamined. Shares no
    /// bit with `flow_mark`.
    pub examined_mark: u32,
    /// Where to serve counters as Prometheus text, if anywhere.
    pub metrics: Option<SocketAddr>,
    /// Seconds between the log's summaries of dropped packets.
    pub summary_seconds: u64,
    /// The ban sets' settings (`[bans]`).
    pub bans: BanSettings,
    /// Where `geofence update` fetches the data from (`[update]`); empty: nothing is fetched.
    pub update: UpdateSettings,
}

/// The `[bans]` table: the bounds of the ban sets and where the bans are kept across restarts.
///
/// ```toml
/// [bans]
/// max_entries = 65536                # each kernel set's size (maxelem)
/// max_duration = "7d"                # the longest ban a repeat offender gets (at most 24d)
/// state = "/var/lib/geofence/bans"   # saved on exit and every 10 s, restored at start
/// sets = "ipset"                     # or "nft": the kind of set, as the firewall backend
/// ports = [5060, "10000-20000"]      # drop banned sources on these TCP/UDP ports only (default: all traffic)
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BanSettings {
    /// The sets' size and the longest ban.
    pub limits: BanLimits,
    /// The file the bans are saved to and restored from, as written (relative: to the config);
    /// `None`: a restart forgets them (the kernel's sets keep theirs until they end).
    pub state: Option<String>,
    /// The kind of kernel set: ipsets for the iptables backend, nft sets for the nft one.
    pub sets: SetKind,
    /// The TCP and UDP destination ports on which banned sources are dropped; empty: all of
    /// their traffic, whatever the protocol.
    pub ports: Vec<crate::PortRange>,
}

impl Deployment {
    /// The most queues one geofence binds: each gets a worker thread, a netlink socket and its
    /// receive buffer, and more workers than CPUs gain nothing.
    pub const MAX_QUEUES: usize = 64;
    /// The smallest copy range: an IPv6 header, a few extension headers and the ports.
    pub const MIN_COPY_RANGE: u16 = 64;
}

impl Default for Deployment {
    fn default() -> Deployment {
        Deployment {
            queues: (0, 0),
            fail_open: false,
            queue_length: None,
            copy_range: None,
            hashlimit_rate: default_hashlimit_rate(),
            hashlimit_burst: default_hashlimit_burst(),
            flow_mark: default_flow_mark(),
            examined_mark: default_examined_mark().into_inner(),
            metrics: None,
            summary_seconds: default_summary_seconds(),
            bans: BanSettings::default(),
            update: UpdateSettings::default(),
        }
    }
}

/// The policy settings, checked: ready to be built with a country database.
#[derive(Debug)]
#[non_exhaustive]
pub struct PolicyConfig {
    /// The country database file to load, as written in the config; `None`: the caller's default.
    pub database: Option<String>,
    /// Whether a reload may bring a country or ASN database with less than half the ranges of
    /// the running one (off: such a database is more likely cut short or the wrong file than
    /// right).
    pub database_may_shrink: bool,
    /// The ASN database files to load and layer (read by the caller and given with
    /// [`PolicyBuilder::asn_database`]), as written in the config (one file or a list: the
    /// ip-location-db package has a file a family); none: no ASN data, which `asn` rules need.
    pub asn_database: Vec<String>,
    /// The lists the config reads from files, which the caller reads (with
    /// [`crate::feed::parse`]) and adds to `builder` under their names before building.
    pub feeds: Vec<FeedSource>,
    /// The per-source thresholds of `[behaviour]`, if the config sets them: the caller keeps
    /// a [`crate::behaviour::Tracker`] of `max_sources` and hands it the requests the policy
    /// accepts from untrusted sources.
    pub behaviour: Option<Behaviour>,
    /// The rules, lists and verdicts.
    pub builder: PolicyBuilder,
    /// Things that are legal but almost certainly not what was meant.
    pub warnings: Vec<ConfigWarning>,
}

impl PolicyConfig {
    /// Builds the policy, which looks countries up in `db`.
    pub fn build(self, db: Arc<dyn CountryDb>) -> Result<Policy, PolicyError> {
        self.builder.build(db)
    }

    /// Builds the policy, which looks countries up in `db` and autonomous systems in `asn`.
    pub fn build_with_asn(self, db: Arc<dyn CountryDb>, asn: Arc<crate::AsnTable>) -> Result<Policy, PolicyError> {
        self.builder.asn_database(asn).build(db)
    }
}

/// The `[behaviour]` table: thresholds on what one source does, and the table's size.
///
/// ```toml
/// [behaviour]
/// window = "10s"       # what a source did in the last 10 s counts (a sliding window)
/// max_requests = 50    # SIP requests a source may send in a window
/// max_targets = 8      # distinct To users it may ask (extension enumeration); at most 32
/// watched_methods = ["REGISTER"]  # and requests of these methods
/// max_watched = 20     #   it may send (password guessing is REGISTER after REGISTER)
/// max_failures = 20    # the server's 401/403/404/407 answers to it (queued on OUTPUT)
/// penalty = "10m"      # a source over any of these is dropped this long
/// ban = true           # and banned in the kernel for it, on every port (default false)
/// max_sources = 65536  # sources remembered (64 bytes each); the table's fixed size
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Behaviour {
    /// The thresholds.
    pub limits: crate::behaviour::Limits,
    /// Whether a source over a threshold is also banned in the kernel for the penalty.
    pub ban: bool,
    /// How many sources the table holds.
    pub max_sources: usize,
}

/// A list read from files (`[feeds]`): a blocklist in one of [`crate::feed`]'s formats.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FeedSource {
    /// The list's name, which rules use in `source`.
    pub name: String,
    /// The files, as written in the config; the list holds the networks of all of them.
    pub files: Vec<String>,
    /// Whether a reload may bring less than half the networks the running list holds (off:
    /// a feed that shrank that far was more likely cut short than cleaned).
    pub may_shrink: bool,
}

/// The policy settings of a table in an embedder's own TOML file, as serde reads them: the
/// same keys as a geofence config's policy part (`default`, `malformed`, `database`, `lists`,
/// `rule`). [`PolicyTable::check`] turns it into a [`PolicyConfig`], with errors that point at
/// the lines of that file. Read it with the `toml` crate, whose spans it keeps.
///
/// ```
/// use std::sync::Arc;
/// use geofence_core::{config::PolicyTable, db::parse_range_csv, Protocol, Verdict};
///
/// #[derive(serde::Deserialize)]
/// struct MyFirewall {
///     listen: String,
///     geofence: PolicyTable,
/// }
///
/// let text = r#"
/// listen = "[::]:5060"
///
/// [geofence]
/// default = "drop"
///
/// [[geofence.rule]]
/// name = "uk-sip"
/// ports = [5060]
/// country = ["GB"]
/// action = "accept"
/// "#;
/// let mine: MyFirewall = toml::from_str(text)?;
/// let policy = mine.geofence.check(text)?.build(Arc::new(parse_range_csv("192.0.2.0,192.0.2.255,GB\n")?))?;
/// assert_eq!(policy.decide_flow("192.0.2.9".parse()?, Protocol::UDP, Some(5060)), Verdict::Accept);
///
/// // Errors point into the embedder's file.
/// let typo = "listen = \"x\"\n[geofence]\ndefault = \"drop\"\n[[geofence.rule]]\ncountry = [\"UK\"]\naction = \"accept\"\n";
/// let mine: MyFirewall = toml::from_str(typo)?;
/// let error = mine.geofence.check(typo).unwrap_err();
/// assert_eq!(error.to_string(), "line 5, column 12: unknown country `UK` (did you mean `GB`?)");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Deserialize)]
#[serde(transparent)]
pub struct PolicyTable(Spanned<RawPolicy>);

impl PolicyTable {
    /// Checks the table's settings; `text` is the whole file it was read from, for the lines
    /// and columns of errors.
    pub fn check(self, text: &str) -> Result<PolicyConfig, ConfigError> {
        let at = Locator { text };
        if let Some(key) = self.0.get_ref().other.keys().next() {
            return Err(at.at(&self.0, format!("unknown policy setting `{key}`"), suggestion(key, POLICY_KEYS)));
        }
        policy_config(&at, self.0.into_inner())
    }
}

impl fmt::Debug for PolicyTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyTable").finish_non_exhaustive()
    }
}

/// A rule that can never match, with where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigWarning {
    /// 1-based line of the rule.
    pub line: usize,
    /// The rule's name.
    pub rule: String,
    /// Why it can never match.
    pub reason: String,
}

impl std::fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: rule `{}` can never match: {}", self.line, self.rule, self.reason)
    }
}

/// Why a configuration was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[error("line {line}, column {column}: {problem}{}", hint(help))]
pub struct ConfigError {
    /// 1-based line of the offending text.
    pub line: usize,
    /// 1-based column (in characters) of the offending text.
    pub column: usize,
    /// What is wrong.
    pub problem: String,
    /// The likely fix, when there is one.
    pub help: Option<String>,
}

fn hint(help: &Option<String>) -> String {
    help.as_ref().map(|h| format!(" ({h})")).unwrap_or_default()
}

/// The keys of the policy part, as [`RawPolicy`] reads them.
const POLICY_KEYS: &[&str] = &[
    "database",
    "database_may_shrink",
    "asn_database",
    "asn_groups",
    "default",
    "malformed",
    "lists",
    "feeds",
    "sip_patterns",
    "behaviour",
    "rule",
];
/// The keys of the deployment part, as [`RawDeployment`] reads them.
const DEPLOYMENT_KEYS: &[&str] = &[
    "queue",
    "fail_open",
    "queue_length",
    "copy_range",
    "hashlimit_rate",
    "hashlimit_burst",
    "flow_mark",
    "examined_mark",
    "metrics",
    "summary_seconds",
    "bans",
    "update",
];

/// The policy part of a file or table. Other keys are collected, not refused, so that the same
/// text can also be read for its deployment part; the caller decides what else may be there.
#[derive(Deserialize)]
struct RawPolicy {
    database: Option<String>,
    #[serde(default)]
    database_may_shrink: bool,
    #[serde(default)]
    asn_database: OneOrMany,
    #[serde(default)]
    asn_groups: asn::Groups,
    default: Spanned<String>,
    malformed: Option<Spanned<String>>,
    #[serde(default)]
    lists: BTreeMap<String, Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    feeds: BTreeMap<String, Spanned<RawFeed>>,
    #[serde(default)]
    sip_patterns: sip::PatternLists,
    behaviour: Option<Spanned<RawBehaviour>>,
    #[serde(default, rename = "rule")]
    rules: Vec<Spanned<RawRule>>,
    #[serde(flatten)]
    other: BTreeMap<String, toml::Value>,
}

/// The deployment part of a file: the same text read again, for these keys only.
#[derive(Deserialize)]
struct RawDeployment {
    #[serde(default)]
    queue: Option<Spanned<QueueSpec>>,
    #[serde(default)]
    fail_open: bool,
    queue_length: Option<Spanned<u32>>,
    copy_range: Option<Spanned<u16>>,
    #[serde(default = "default_hashlimit_rate")]
    hashlimit_rate: u32,
    #[serde(default = "default_hashlimit_burst")]
    hashlimit_burst: u32,
    #[serde(default = "default_flow_mark")]
    flow_mark: u32,
    #[serde(default = "default_examined_mark")]
    examined_mark: Spanned<u32>,
    metrics: Option<Spanned<String>>,
    #[serde(default = "default_summary_seconds")]
    summary_seconds: u64,
    bans: Option<Spanned<RawBans>>,
    update: Option<update::RawUpdate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBans {
    max_entries: Option<Spanned<u32>>,
    max_duration: Option<Spanned<String>>,
    state: Option<String>,
    sets: Option<Spanned<String>>,
    #[serde(default)]
    ports: Vec<Spanned<port::Raw>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBehaviour {
    window: Spanned<String>,
    #[serde(default = "unlimited")]
    max_requests: u32,
    #[serde(default = "unlimited")]
    max_targets: u32,
    penalty: Spanned<String>,
    #[serde(default)]
    ban: bool,
    #[serde(default)]
    watched_methods: Vec<Spanned<String>>,
    #[serde(default = "unlimited")]
    max_watched: u32,
    #[serde(default = "unlimited")]
    max_failures: u32,
    #[serde(default = "default_max_sources")]
    max_sources: Spanned<u32>,
}

fn unlimited() -> u32 {
    u32::MAX
}

fn default_max_sources() -> Spanned<u32> {
    Spanned::new(0..0, 65_536)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFeed {
    files: Vec<Spanned<String>>,
    #[serde(default)]
    may_shrink: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<Spanned<String>>,
    #[serde(default)]
    source: Vec<Spanned<String>>,
    country: Option<Vec<Spanned<String>>>,
    continent: Option<Vec<Spanned<String>>>,
    not_country: Option<Vec<Spanned<String>>>,
    not_continent: Option<Vec<Spanned<String>>>,
    asn: Option<Vec<Spanned<asn::Raw>>>,
    not_asn: Option<Vec<Spanned<asn::Raw>>>,
    as_organisation: Option<Vec<Spanned<String>>>,
    protocol: Option<Spanned<protocol::Raw>>,
    #[serde(default)]
    ports: Vec<Spanned<port::Raw>>,
    sip: Option<Spanned<sip::RawKinds>>,
    sip_method: Option<Vec<Spanned<String>>>,
    user_agent: Option<Vec<Spanned<String>>>,
    not_user_agent: Option<Vec<Spanned<String>>>,
    request_host: Option<Vec<Spanned<String>>>,
    not_request_host: Option<Vec<Spanned<String>>>,
    request_user: Option<Vec<Spanned<String>>>,
    from_user: Option<Vec<Spanned<String>>>,
    to_user: Option<Vec<Spanned<String>>>,
    action: Spanned<String>,
    mark: Option<Spanned<u32>>,
    ban: Option<Spanned<String>>,
    ban_prefix: Option<Spanned<u8>>,
    ban_prefix6: Option<Spanned<u8>>,
}

fn default_hashlimit_rate() -> u32 {
    2
}

fn default_hashlimit_burst() -> u32 {
    5
}

fn default_flow_mark() -> u32 {
    0x4000_0000
}

fn default_examined_mark() -> Spanned<u32> {
    Spanned::new(0..0, 0x2000_0000)
}

fn default_summary_seconds() -> u64 {
    10
}

/// A file or a list of files.
#[derive(Default, Deserialize)]
#[serde(untagged, expecting = "a file name, or a list of file names")]
enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::None => Vec::new(),
            OneOrMany::One(file) => vec![file],
            OneOrMany::Many(files) => files,
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum QueueSpec {
    One(i64),
    Range(String),
}

impl Config {
    /// Parses and checks a configuration.
    ///
    /// ```
    /// let config = geofence_core::Config::parse("default = \"drop\"\n[[rule]]\ncountry = [\"UK\"]\naction = \"accept\"\n");
    /// assert_eq!(
    ///     config.unwrap_err().to_string(),
    ///     "line 3, column 12: unknown country `UK` (did you mean `GB`?)"
    /// );
    /// ```
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let at = Locator { text };
        let raw: RawPolicy = toml::from_str(text).map_err(|e| at.syntax(e))?;
        if let Some(key) = raw.other.keys().find(|key| !DEPLOYMENT_KEYS.contains(&key.as_str())) {
            return Err(unknown_setting(&at, key));
        }
        let deployment: RawDeployment = toml::from_str(text).map_err(|e| at.syntax(e))?;
        Ok(Config { deployment: deployment_of(&at, deployment)?, policy: policy_config(&at, raw)? })
    }
}

/// The error for a top-level key that is neither a policy nor a deployment setting, at its
/// value (the text is read once more, as keys and spans, only on this path).
fn unknown_setting(at: &Locator, key: &str) -> ConfigError {
    let known: Vec<&str> = POLICY_KEYS.iter().chain(DEPLOYMENT_KEYS).copied().collect();
    let problem = format!("unknown setting `{key}`");
    match toml::from_str::<BTreeMap<String, Spanned<toml::Value>>>(at.text) {
        Ok(values) if values.contains_key(key) => at.at(&values[key], problem, suggestion(key, &known)),
        _ => at.error(0, problem, suggestion(key, &known)),
    }
}

/// "did you mean …?" for a misspelt key, or the keys that are known.
fn suggestion(key: &str, known: &[&str]) -> Option<String> {
    let closest = known.iter().map(|candidate| (strsim::levenshtein(key, candidate), *candidate)).min();
    Some(match closest {
        Some((distance, candidate)) if distance <= 2 => format!("did you mean `{candidate}`?"),
        _ => format!("expected one of {}", known.join(", ")),
    })
}

fn deployment_of(at: &Locator, raw: RawDeployment) -> Result<Deployment, ConfigError> {
    Ok(Deployment {
        queues: match &raw.queue {
            None => (0, 0),
            Some(spec) => queue_range(at, spec)?,
        },
        fail_open: raw.fail_open,
        queue_length: raw.queue_length.as_ref().map(|length| queue_length(at, length)).transpose()?,
        copy_range: raw.copy_range.as_ref().map(|range| copy_range(at, range)).transpose()?,
        hashlimit_rate: raw.hashlimit_rate,
        hashlimit_burst: raw.hashlimit_burst,
        flow_mark: raw.flow_mark,
        examined_mark: examined_mark(at, &raw.examined_mark, raw.flow_mark)?,
        metrics: raw.metrics.as_ref().map(|address| metrics_address(at, address)).transpose()?,
        summary_seconds: raw.summary_seconds,
        bans: match &raw.bans {
            Some(bans) => BanSettings {
                limits: ban_limits(at, bans.get_ref())?,
                state: bans.get_ref().state.clone(),
                sets: set_kind(at, bans.get_ref().sets.as_ref())?,
                ports: PortCondition::from_config(at, &bans.get_ref().ports)?.ranges,
            },
            None => BanSettings::default(),
        },
        update: update::settings(at, raw.update.as_ref())?,
    })
}

fn set_kind(at: &Locator, text: Option<&Spanned<String>>) -> Result<SetKind, ConfigError> {
    let Some(text) = text else { return Ok(SetKind::Ipset) };
    match text.get_ref().as_str() {
        "ipset" => Ok(SetKind::Ipset),
        "nft" => Ok(SetKind::Nft),
        other => Err(at.at(
            text,
            format!("unknown kind of set `{other}`"),
            Some("expected `ipset` (the iptables backend) or `nft`".into()),
        )),
    }
}

/// `[bans]`: the kernel sets' size (ipset's `maxelem`, at most 2^24 here: a set's memory is
/// the kernel's) and the cap on a repeat offender's ban.
fn ban_limits(at: &Locator, raw: &RawBans) -> Result<BanLimits, ConfigError> {
    let mut limits = BanLimits::default();
    if let Some(entries) = &raw.max_entries {
        limits.max_entries = table_size(at, "max_entries", entries)?;
    }
    if let Some(text) = &raw.max_duration {
        limits.max_duration_ms = set_duration_ms(at, "max_duration", text)?;
    }
    Ok(limits)
}

/// A fixed table's size: 1 to 2^24 entries.
fn table_size(at: &Locator, key: &str, value: &Spanned<u32>) -> Result<usize, ConfigError> {
    match *value.get_ref() {
        size @ 1..=16_777_216 => Ok(size as usize),
        size => Err(at.at(value, format!("{key} = {size} is not 1 to 16777216"), None)),
    }
}

/// A duration a kernel set's entry can last: at most 24 days, the longest ipset timeout.
fn set_duration_ms(at: &Locator, key: &str, text: &Spanned<String>) -> Result<u64, ConfigError> {
    match duration_ms(at, text)? {
        too_long if too_long > MAX_DURATION_MS => Err(at.at(
            text,
            format!("{key} = {} is longer than the kernel's sets keep an entry (24 days)", BanDuration(too_long)),
            Some("at most \"24d\"".into()),
        )),
        duration => Ok(duration),
    }
}

/// A queue of no packets would decide nothing: fail-closed it drops every flow, fail-open it
/// lets every flow pass unexamined.
fn queue_length(at: &Locator, length: &Spanned<u32>) -> Result<u32, ConfigError> {
    match *length.get_ref() {
        0 => Err(at.at(
            length,
            "queue_length 0 leaves no room for a packet to wait for its verdict: every flow would be \
             dropped (or, with fail_open, pass unexamined)"
                .into(),
            Some("leave it out for the default of 8192".into()),
        )),
        length => Ok(length),
    }
}

/// The examined mark must keep clear of the flow mark: a bit of both would be saved to the
/// connection with every one-by-one accept and give the flow the bypass.
fn examined_mark(at: &Locator, mark: &Spanned<u32>, flow_mark: u32) -> Result<u32, ConfigError> {
    match *mark.get_ref() {
        shared if shared & flow_mark != 0 => Err(at.at(
            mark,
            format!("examined_mark {shared:#x} shares bits with flow_mark {flow_mark:#x}"),
            Some("give it a bit of its own, or 0 to turn it off".into()),
        )),
        mark => Ok(mark),
    }
}

/// Fewer bytes than the headers take would make every packet malformed.
fn copy_range(at: &Locator, range: &Spanned<u16>) -> Result<u16, ConfigError> {
    match *range.get_ref() {
        short if short < Deployment::MIN_COPY_RANGE => Err(at.at(
            range,
            format!(
                "copy_range {short} is shorter than a packet's headers: every packet would be decided \
                 as malformed"
            ),
            Some(format!("use at least {}, or leave it out for the default of 256", Deployment::MIN_COPY_RANGE)),
        )),
        range => Ok(range),
    }
}

/// An address and port to listen on, taken literally: a firewall's start must not wait on a
/// name lookup.
fn metrics_address(at: &Locator, text: &Spanned<String>) -> Result<SocketAddr, ConfigError> {
    text.get_ref().parse().map_err(|_| {
        at.at(
            text,
            format!("`{}` is not an address and port to serve metrics on", text.get_ref()),
            Some("write an IP address and a port, such as \"127.0.0.1:9477\" or \"[::1]:9477\"".into()),
        )
    })
}

fn policy_config(at: &Locator, raw: RawPolicy) -> Result<PolicyConfig, ConfigError> {
    let mut policy = PolicyBuilder::new(verdict(at, &raw.default)?);
    if let Some(malformed) = &raw.malformed {
        policy = policy.on_malformed(verdict(at, malformed)?);
    }
    for (name, networks) in &raw.lists {
        refuse_built_in_name(at, name, networks)?;
        policy = policy.list(name.clone(), prefix_list(at, networks.get_ref())?);
    }
    let feeds = feed_sources(at, &raw)?;
    let defined: BTreeMap<&str, ()> =
        raw.lists.keys().chain(raw.feeds.keys()).map(|name| (name.as_str(), ())).collect();
    let mut names: Vec<String> = Vec::new();
    let mut lines = Vec::new();
    for (index, raw_rule) in raw.rules.iter().enumerate() {
        let rule = rule(at, index, raw_rule.get_ref(), &defined, &raw.asn_groups, &raw.sip_patterns)?;
        if names.iter().any(|name| name == rule.name()) {
            return Err(at.error(raw_rule.span().start, format!("rule name `{}` is used twice", rule.name()), None));
        }
        names.push(rule.name().to_owned());
        lines.push(at.line_column(raw_rule.span().start).0);
        policy = policy.rule(rule);
    }
    let warnings = policy
        .unreachable_rules()
        .into_iter()
        .map(|u| ConfigWarning { line: lines[u.index], rule: names[u.index].clone(), reason: u.reason })
        .collect();
    let behaviour = raw.behaviour.as_ref().map(|raw| behaviour(at, raw)).transpose()?;
    if behaviour.is_some() && !policy.reads_payload() {
        let raw = raw.behaviour.as_ref().map_or(0, |raw| raw.span().start);
        return Err(at.error(
            raw,
            "[behaviour] counts SIP requests, but no rule reads SIP".into(),
            Some("add a SIP rule (user_agent, sip_method, …) before the rules it should guard".into()),
        ));
    }
    Ok(PolicyConfig {
        behaviour,
        database: raw.database,
        database_may_shrink: raw.database_may_shrink,
        asn_database: raw.asn_database.into_vec(),
        feeds,
        builder: policy,
        warnings,
    })
}

fn refuse_built_in_name<T>(at: &Locator, name: &str, value: &Spanned<T>) -> Result<(), ConfigError> {
    match prefix::is_built_in(name) {
        true => Err(at.at(
            value,
            format!("list `{name}` has the name of a built-in list"),
            Some("choose another name".into()),
        )),
        false => Ok(()),
    }
}

/// The `[feeds]`: each a name no other list has, and at least one file.
fn feed_sources(at: &Locator, raw: &RawPolicy) -> Result<Vec<FeedSource>, ConfigError> {
    let mut feeds = Vec::new();
    for (name, feed) in &raw.feeds {
        refuse_built_in_name(at, name, feed)?;
        if raw.lists.contains_key(name) {
            return Err(at.at(
                feed,
                format!("feed `{name}` has the name of a list under [lists]"),
                Some("a rule names either; choose another name".into()),
            ));
        }
        if feed.get_ref().files.is_empty() {
            return Err(at.at(
                feed,
                format!("feed `{name}` names no file"),
                Some("files = [\"blocklist.txt\"]".into()),
            ));
        }
        let files = feed.get_ref().files.iter().map(|file| file.get_ref().clone()).collect();
        feeds.push(FeedSource { name: name.clone(), files, may_shrink: feed.get_ref().may_shrink });
    }
    Ok(feeds)
}

fn behaviour(at: &Locator, raw: &Spanned<RawBehaviour>) -> Result<Behaviour, ConfigError> {
    let table = raw.get_ref();
    if table.max_targets > 32 && table.max_targets != unlimited() {
        return Err(at.at(
            raw,
            format!("max_targets = {} is more than geofence counts (32)", table.max_targets),
            Some("enumeration shows within a few users: 5 to 20".into()),
        ));
    }
    let counted = [
        ("max_requests", table.max_requests),
        ("max_watched", table.max_watched),
        ("max_failures", table.max_failures),
    ];
    for (key, value) in counted {
        if value > u32::from(u16::MAX) && value != unlimited() {
            return Err(at.at(raw, format!("{key} = {value} is more than geofence counts (65535)"), None));
        }
    }
    let watched = table.watched_methods.iter().map(|name| sip::method(at, name)).collect::<Result<Vec<_>, _>>()?;
    let max_sources = table_size(at, "max_sources", &table.max_sources)?;
    let limits = crate::behaviour::Limits {
        window_ms: duration_ms(at, &table.window)?,
        max_requests: table.max_requests,
        max_targets: table.max_targets,
        penalty_ms: duration_ms(at, &table.penalty)?,
        watched: crate::behaviour::Methods::of(watched),
        max_watched: table.max_watched,
        max_failures: table.max_failures,
    };
    Ok(Behaviour { limits, ban: table.ban, max_sources })
}

/// A duration as the config writes it, `"500ms"`, `"10s"`, `"10m"`, `"2h"` or `"1d"`, in
/// milliseconds; `None` for anything else, nothing included.
///
/// ```
/// assert_eq!(geofence_core::config::parse_duration("90s"), Some(90_000));
/// assert_eq!(geofence_core::config::parse_duration("0h"), None);
/// ```
pub fn parse_duration(text: &str) -> Option<u64> {
    let written = text.trim();
    let split = written.find(|c: char| !c.is_ascii_digit()).unwrap_or(written.len());
    let (digits, unit) = written.split_at(split);
    let scale = match unit.trim() {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    digits.parse::<u64>().ok().filter(|n| *n > 0)?.checked_mul(scale)
}

/// What [`parse_duration`] reads, with an error at its place.
fn duration_ms(at: &Locator, text: &Spanned<String>) -> Result<u64, ConfigError> {
    parse_duration(text.get_ref()).ok_or_else(|| {
        at.at(
            text,
            format!("`{}` is not a duration", text.get_ref().trim()),
            Some("write a number and a unit: 500ms, 10s, 10m, 2h".into()),
        )
    })
}

/// Turns byte offsets into the line and column a person finds in an editor.
pub(crate) struct Locator<'a> {
    text: &'a str,
}

impl Locator<'_> {
    fn line_column(&self, offset: usize) -> (usize, usize) {
        let before = self.text.get(..offset).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().unwrap_or_default().chars().count() + 1;
        (line, column)
    }

    /// A TOML syntax or schema error, at its place.
    fn syntax(&self, error: toml::de::Error) -> ConfigError {
        let start = error.span().map_or(0, |span| span.start);
        self.error(start, error.message().trim_end().to_owned(), None)
    }

    pub(crate) fn error(&self, offset: usize, problem: String, help: Option<String>) -> ConfigError {
        let (line, column) = self.line_column(offset);
        ConfigError { line, column, problem, help }
    }

    pub(crate) fn at<T>(&self, value: &Spanned<T>, problem: String, help: Option<String>) -> ConfigError {
        self.error(value.span().start, problem, help)
    }
}

fn verdict(at: &Locator, text: &Spanned<String>) -> Result<Verdict, ConfigError> {
    match text.get_ref().as_str() {
        "accept" => Ok(Verdict::Accept),
        "drop" => Ok(Verdict::Drop),
        "ban" => Err(at.at(
            text,
            "only a rule can ban".into(),
            Some("a default or malformed verdict is `accept` or `drop`".into()),
        )),
        other => Err(at.at(text, format!("unknown action `{other}`"), Some("expected `accept` or `drop`".into()))),
    }
}

fn rule(
    at: &Locator,
    index: usize,
    raw: &RawRule,
    lists: &BTreeMap<&str, ()>,
    asn_groups: &asn::Groups,
    sip_patterns: &sip::PatternLists,
) -> Result<Rule, ConfigError> {
    let ban = ban_spec(at, raw)?;
    let mut verdict = match ban {
        Some(_) => Verdict::Drop,
        None => verdict(at, &raw.action)
            .map_err(|error| ConfigError { help: Some("expected `accept`, `drop` or `ban`".into()), ..error })?,
    };
    if let Some(mark) = &raw.mark {
        if verdict != Verdict::Accept {
            return Err(at.at(
                mark,
                "a mark is set only on accepted packets".into(),
                Some("use action = \"accept\"".into()),
            ));
        }
        verdict = Verdict::AcceptWithMark(*mark.get_ref());
    }
    let conditions = Conditions {
        protocol: ProtocolCondition::from_config(at, raw.protocol.as_ref())?,
        port: PortCondition::from_config(at, &raw.ports)?,
        source: SourceCondition::from_config(at, &raw.source, lists)?,
        country: CountryCondition::from_config(
            at,
            country::Raw {
                country: raw.country.as_deref(),
                continent: raw.continent.as_deref(),
                not_country: raw.not_country.as_deref(),
                not_continent: raw.not_continent.as_deref(),
            },
        )?,
        asn: AsnCondition::from_config(
            at,
            raw.asn.as_deref(),
            raw.not_asn.as_deref(),
            raw.as_organisation.as_deref(),
            asn_groups,
        )?,
        sip: SipCondition::from_config(
            at,
            sip::Raw {
                sip: raw.sip.as_ref(),
                sip_method: raw.sip_method.as_deref(),
                user_agent: raw.user_agent.as_deref(),
                not_user_agent: raw.not_user_agent.as_deref(),
                request_host: raw.request_host.as_deref(),
                not_request_host: raw.not_request_host.as_deref(),
                request_user: raw.request_user.as_deref(),
                from_user: raw.from_user.as_deref(),
                to_user: raw.to_user.as_deref(),
            },
            sip_patterns,
        )?,
    };
    let name = match &raw.name {
        Some(name) => printable_name(at, name)?,
        None => format!("rule {}", index + 1),
    };
    let rule = Rule::with_conditions(name, verdict, conditions);
    Ok(match ban {
        Some(spec) => rule.with_ban(spec),
        None => rule,
    })
}

/// A ban rule's `ban`, `ban_prefix` and `ban_prefix6`, which only a ban rule may have. The
/// prefixes stop at /16 and /32: a hurried `ban_prefix = 0` would ban the whole Internet.
fn ban_spec(at: &Locator, raw: &RawRule) -> Result<Option<BanSpec>, ConfigError> {
    if raw.action.get_ref() != "ban" {
        let stray = (raw.ban.as_ref().map(Spanned::span))
            .or_else(|| raw.ban_prefix.as_ref().map(Spanned::span))
            .or_else(|| raw.ban_prefix6.as_ref().map(Spanned::span));
        return match stray {
            Some(span) => Err(at.error(
                span.start,
                "ban, ban_prefix and ban_prefix6 belong to a ban rule".into(),
                Some("use action = \"ban\"".into()),
            )),
            None => Ok(None),
        };
    }
    let duration_ms = match &raw.ban {
        Some(text) => set_duration_ms(at, "ban", text)?,
        None => DEFAULT_BAN_MS,
    };
    let prefix = |value: &Option<Spanned<u8>>, family: &str, range: std::ops::RangeInclusive<u8>, single| {
        let Some(value) = value else { return Ok(single) };
        let length = *value.get_ref();
        if range.contains(&length) {
            return Ok(length);
        }
        Err(at.at(
            value,
            format!("a {family} ban prefix of /{length} is not /{} to /{}", range.start(), range.end()),
            Some("ban the source alone, or its /24 (IPv4) or /64 (IPv6)".into()),
        ))
    };
    Ok(Some(BanSpec {
        duration_ms,
        prefix_v4: prefix(&raw.ban_prefix, "IPv4", 16..=32, 32)?,
        prefix_v6: prefix(&raw.ban_prefix6, "IPv6", 32..=128, 128)?,
    }))
}

/// A ban rule's ban when it names none.
const DEFAULT_BAN_MS: u64 = 3_600_000;

/// A name goes into logs and metrics labels: a control character (a line feed, say) could
/// forge lines in either, so it is refused.
fn printable_name(at: &Locator, name: &Spanned<String>) -> Result<String, ConfigError> {
    match name.get_ref().chars().find(|c| c.is_control()) {
        Some(c) => Err(at.at(
            name,
            format!("the name {:?} holds the control character {:?}", name.get_ref(), c),
            Some("names are written in logs and metrics: use printable characters".into()),
        )),
        None => Ok(name.get_ref().clone()),
    }
}

fn prefix_list(at: &Locator, networks: &[Spanned<String>]) -> Result<PrefixList, ConfigError> {
    networks.iter().map(|text| network(at, text)).collect()
}

fn network(at: &Locator, text: &Spanned<String>) -> Result<IpNetwork, ConfigError> {
    prefix::parse_network(text.get_ref())
        .map_err(|bad| at.at(text, format!("`{}` is not an address or CIDR network", bad.written), bad.help))
}

fn queue_range(at: &Locator, spec: &Spanned<QueueSpec>) -> Result<(u16, u16), ConfigError> {
    let bad = |written: String| {
        at.at(
            spec,
            format!("`{written}` is not a queue number or range"),
            Some("write 0 or \"0-3\" (0 to 65535)".into()),
        )
    };
    let number = |text: &str| text.trim().parse::<u16>().map_err(|_| bad(text.to_owned()));
    match spec.get_ref() {
        QueueSpec::One(n) => u16::try_from(*n).map(|q| (q, q)).map_err(|_| bad(n.to_string())),
        QueueSpec::Range(text) => {
            let (first, last) = match text.split_once('-') {
                Some((first, last)) => (number(first)?, number(last)?),
                None => (number(text)?, number(text)?),
            };
            if first > last {
                return Err(bad(text.clone()));
            }
            let count = usize::from(last - first) + 1;
            if count > Deployment::MAX_QUEUES {
                return Err(at.at(
                    spec,
                    format!("`{text}` names {count} queues; geofence serves at most {}", Deployment::MAX_QUEUES),
                    Some("one queue a CPU is plenty: the rules balance flows over them".into()),
                ));
            }
            Ok((first, last))
        }
    }
}

mod update;
pub use update::{Api, UpdateSettings, UpdateSource};

#[cfg(test)]
mod tests;
