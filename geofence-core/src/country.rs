//! Countries and continents: the names rules are written in and databases answer with.
//!
//! A [`CountryCode`] is any two upper-case ASCII letters (databases carry user-assigned codes such
//! as `XK` for Kosovo). A [`CountrySet`] is a fixed-size bitset over all 676 such codes plus
//! "unknown". The packet path never tests a set: a policy turns each rule's sets into masks
//! of the rules each lookup answer admits when it is built.

use std::fmt;
use std::str::FromStr;

/// An ISO 3166-1 alpha-2 style country code: exactly two upper-case ASCII letters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountryCode([u8; 2]);

/// Why a string is not a [`CountryCode`] or a [`Continent`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    /// The text is not two upper-case ASCII letters.
    #[error("`{0}` is not a country code: expected two upper-case letters such as `GB`")]
    NotACountryCode(String),
    /// The text is not one of the seven continent codes.
    #[error("`{0}` is not a continent: expected one of AF AN AS EU NA OC SA")]
    NotAContinent(String),
}

impl CountryCode {
    /// The number of distinct codes: every pair of letters.
    pub const COUNT: usize = 26 * 26;

    /// The code from two bytes, if both are upper-case ASCII letters.
    pub const fn from_bytes(bytes: [u8; 2]) -> Option<CountryCode> {
        if bytes[0].is_ascii_uppercase() && bytes[1].is_ascii_uppercase() {
            Some(CountryCode(bytes))
        } else {
            None
        }
    }

    /// The two letters.
    pub fn as_str(&self) -> &str {
        // Both bytes are ASCII letters by construction, so this never falls back.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }

    /// A dense index in `0..COUNT`, for tables keyed by country.
    pub fn index(self) -> usize {
        usize::from(self.0[0] - b'A') * 26 + usize::from(self.0[1] - b'A')
    }

    /// The code at a dense index, the inverse of [`CountryCode::index`].
    pub fn from_index(index: usize) -> Option<CountryCode> {
        if index >= Self::COUNT {
            return None;
        }
        // Both quotients are below 26, so the additions stay within the ASCII letters.
        Some(CountryCode([b'A' + (index / 26) as u8, b'A' + (index % 26) as u8]))
    }

    /// The continent this country belongs to, by geofence's table (see [`Continent`]).
    pub fn continent(self) -> Option<Continent> {
        CONTINENTS
            .iter()
            .find(|(_, members)| members.split(' ').any(|member| member.as_bytes() == self.0))
            .map(|(continent, _)| *continent)
    }
}

impl FromStr for CountryCode {
    type Err = CodeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bytes: [u8; 2] = text.as_bytes().try_into().map_err(|_| CodeError::NotACountryCode(text.to_owned()))?;
        CountryCode::from_bytes(bytes).ok_or_else(|| CodeError::NotACountryCode(text.to_owned()))
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CountryCode({})", self.as_str())
    }
}

/// The seven continents, by the two-letter codes GeoIP databases use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Continent {
    /// Africa.
    Africa,
    /// Antarctica.
    Antarctica,
    /// Asia.
    Asia,
    /// Europe.
    Europe,
    /// North America, Central America and the Caribbean.
    NorthAmerica,
    /// Oceania.
    Oceania,
    /// South America.
    SouthAmerica,
}

impl Continent {
    /// All seven, in code order.
    pub const ALL: [Continent; 7] = [
        Continent::Africa,
        Continent::Antarctica,
        Continent::Asia,
        Continent::Europe,
        Continent::NorthAmerica,
        Continent::Oceania,
        Continent::SouthAmerica,
    ];

    /// The two-letter code: AF AN AS EU NA OC SA.
    pub fn code(self) -> &'static str {
        match self {
            Continent::Africa => "AF",
            Continent::Antarctica => "AN",
            Continent::Asia => "AS",
            Continent::Europe => "EU",
            Continent::NorthAmerica => "NA",
            Continent::Oceania => "OC",
            Continent::SouthAmerica => "SA",
        }
    }

    /// The countries and territories on this continent.
    pub fn countries(self) -> impl Iterator<Item = CountryCode> {
        CONTINENTS
            .iter()
            .filter(move |(continent, _)| *continent == self)
            .flat_map(|(_, members)| members.split(' '))
            .filter_map(|code| code.parse().ok())
    }
}

impl FromStr for Continent {
    type Err = CodeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Continent::ALL
            .into_iter()
            .find(|continent| continent.code() == text)
            .ok_or_else(|| CodeError::NotAContinent(text.to_owned()))
    }
}

impl fmt::Display for Continent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Country → continent, one line a continent. Transcontinental countries follow the GeoIP
/// databases' convention (RU and CY in Europe; TR, GE, AM, AZ and TL in Asia), which is what an
/// admin sees when looking an address up; the tests pin where this differs from the published
/// reference mapping.
const CONTINENTS: [(Continent, &str); 7] = [
    (
        Continent::Africa,
        "AC AO BF BI BJ BW CD CF CG CI CM CV DJ DZ EG EH ER ET GA GH GM GN GQ GW KE KM LR LS LY MA MG \
         ML MR MU MW MZ NA NE NG RE RW SC SD SH SL SN SO SS ST SZ TA TD TG TN TZ UG YT ZA ZM ZW",
    ),
    (Continent::Antarctica, "AQ BV GS HM TF"),
    (
        Continent::Asia,
        "AE AF AM AZ BD BH BN BT CC CN CX GE HK ID IL IN IO IQ IR JO JP KG KH KP KR KW KZ LA LB LK \
         MM MN MO MV MY NP OM PH PK PS QA SA SG SY TH TJ TL TM TR TW UZ VN YE",
    ),
    (
        Continent::Europe,
        "AD AL AT AX BA BE BG BY CH CY CZ DE DK EE ES FI FO FR GB GG GI GR HR HU IE IM IS IT JE LI \
         LT LU LV MC MD ME MK MT NL NO PL PT RO RS RU SE SI SJ SK SM UA VA XK",
    ),
    (
        Continent::NorthAmerica,
        "AG AI AW BB BL BM BQ BS BZ CA CR CU CW DM DO GD GL GP GT HN HT JM KN KY LC MF MQ MS MX NI \
         PA PM PR SV SX TC TT US VC VG VI",
    ),
    (Continent::Oceania, "AS AU CK FJ FM GU KI MH MP NC NF NR NU NZ PF PG PN PW SB TK TO TV UM VU WF WS"),
    (Continent::SouthAmerica, "AR BO BR CL CO EC FK GF GY PE PY SR UY VE"),
];

/// A set of countries, plus whether an address with no known country belongs to it.
///
/// Copyable and fixed-size (88 bytes), so a rule holds it inline. "Unknown" is one more bit after
/// the 676 codes, so a membership test is the same shift and mask whatever the lookup found.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct CountrySet {
    bits: [u64; 11],
}

/// The bit of "no known country".
const UNKNOWN: usize = CountryCode::COUNT;

/// The position of a lookup result (`None`: unknown) among a set's bits.
#[inline]
pub(crate) fn position(country: Option<CountryCode>) -> usize {
    country.map_or(UNKNOWN, CountryCode::index)
}

impl CountrySet {
    /// The empty set.
    pub const fn new() -> CountrySet {
        CountrySet { bits: [0; 11] }
    }

    /// Adds a country.
    pub fn insert(&mut self, code: CountryCode) {
        self.set(code.index());
    }

    /// Adds every country of a continent.
    pub fn insert_continent(&mut self, continent: Continent) {
        continent.countries().for_each(|code| self.insert(code));
    }

    /// Makes "no known country" a member.
    pub fn insert_unknown(&mut self) {
        self.set(UNKNOWN);
    }

    /// Every country, and "unknown".
    pub(crate) fn everything() -> CountrySet {
        let mut set = CountrySet::new();
        (0..=UNKNOWN).for_each(|index| set.set(index));
        set
    }

    /// The members of `self` that are not in `other`.
    pub(crate) fn without(&self, other: &CountrySet) -> CountrySet {
        let mut bits = self.bits;
        bits.iter_mut().zip(&other.bits).for_each(|(word, removed)| *word &= !removed);
        CountrySet { bits }
    }

    fn set(&mut self, index: usize) {
        self.bits[index / 64] |= 1 << (index % 64);
    }

    /// Whether a lookup result (`None`: unknown) is in the set.
    #[inline]
    pub fn contains(&self, country: Option<CountryCode>) -> bool {
        let index = position(country);
        self.bits.get(index / 64).is_some_and(|word| word >> (index % 64) & 1 != 0)
    }

    /// Whether nothing, not even "unknown", is a member.
    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|word| *word == 0)
    }

    /// Whether every member of `self` is also in `other`.
    pub fn is_subset(&self, other: &CountrySet) -> bool {
        self.bits.iter().zip(&other.bits).all(|(a, b)| a & !b == 0)
    }

    /// The member countries, in code order.
    pub fn countries(&self) -> impl Iterator<Item = CountryCode> + '_ {
        (0..CountryCode::COUNT).filter_map(CountryCode::from_index).filter(|code| self.contains(Some(*code)))
    }

    /// Whether "no known country" is a member.
    pub fn contains_unknown(&self) -> bool {
        self.contains(None)
    }
}

impl fmt::Debug for CountrySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_set();
        list.entries(self.countries());
        if self.contains_unknown() {
            list.entry(&"unknown");
        }
        list.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn parses_and_displays_two_upper_case_letters() {
        let code: CountryCode = "GB".parse().unwrap();
        assert_eq!(code.to_string(), "GB");
        assert_eq!(format!("{code:?}"), "CountryCode(GB)");
    }

    #[test]
    fn rejects_lower_case_wrong_length_and_non_letters() {
        for bad in ["gb", "G", "GBR", "", "G1", "É", "\u{0}\u{0}"] {
            assert_eq!(bad.parse::<CountryCode>(), Err(CodeError::NotACountryCode(bad.to_owned())), "{bad:?}");
        }
    }

    #[test]
    fn index_round_trips_over_every_code() {
        for index in 0..CountryCode::COUNT {
            assert_eq!(CountryCode::from_index(index).unwrap().index(), index);
        }
        assert_eq!(CountryCode::from_index(CountryCode::COUNT), None);
    }

    #[test]
    fn continent_codes_round_trip() {
        for continent in Continent::ALL {
            assert_eq!(continent.code().parse::<Continent>(), Ok(continent));
        }
        assert!("XX".parse::<Continent>().is_err());
    }

    #[test]
    fn every_country_is_on_exactly_one_continent() {
        let mut seen = HashMap::new();
        for continent in Continent::ALL {
            for code in continent.countries() {
                assert_eq!(seen.insert(code, continent), None, "{code} is listed twice");
            }
        }
        assert_eq!(seen.len(), 252);
    }

    /// The published reference: the continent field of the countries-list npm package (see
    /// tests/data/countries-list-continents.LICENSE). It puts Russia in Asia and Timor-Leste in
    /// Oceania; GeoIP databases, and so geofence, put them in Europe and Asia.
    #[test]
    fn continent_table_agrees_with_the_published_mapping() {
        let reference = include_str!("../tests/data/countries-list-continents.csv");
        let deliberate = [("RU", "AS", "EU"), ("TL", "OC", "AS")];
        let mut compared = 0;
        for line in reference.lines().skip(1) {
            let (code, published) = line.split_once(',').unwrap();
            let ours = code.parse::<CountryCode>().unwrap().continent().map(|c| c.code());
            match deliberate.iter().find(|(c, _, _)| *c == code) {
                Some((_, theirs, mine)) => {
                    assert_eq!((published, ours), (*theirs, Some(*mine)), "{code}");
                }
                None => assert_eq!(ours, Some(published), "{code}"),
            }
            compared += 1;
        }
        assert_eq!(compared, 252);
    }

    #[test]
    fn set_membership_covers_countries_continents_and_unknown() {
        let mut set = CountrySet::new();
        assert!(set.is_empty());
        set.insert("GB".parse().unwrap());
        set.insert_continent(Continent::Oceania);
        assert!(set.contains(Some("GB".parse().unwrap())));
        assert!(set.contains(Some("NZ".parse().unwrap())));
        assert!(!set.contains(Some("FR".parse().unwrap())));
        assert!(!set.contains(None));
        set.insert_unknown();
        assert!(set.contains(None));
        assert!(!set.is_empty());
    }

    #[test]
    fn subset_accounts_for_unknown() {
        let mut small = CountrySet::new();
        small.insert("DE".parse().unwrap());
        let mut europe = CountrySet::new();
        europe.insert_continent(Continent::Europe);
        assert!(small.is_subset(&europe));
        assert!(!europe.is_subset(&small));
        small.insert_unknown();
        assert!(!small.is_subset(&europe));
    }
}
