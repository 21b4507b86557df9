//! `country = ["GB", "unknown"]` / `continent = ["OC"]` admit, `not_country` / `not_continent`
//! exclude: the source's country (or "unknown", when the database has none for it) must be in
//! the first set and not in the second. A lookup condition: the country is looked up only when a
//! rule that asks it could decide the packet.

use std::fmt;

use toml::Spanned;

use super::{Condition, Conditions, Facts, LookupCondition};
use crate::config::{ConfigError, Locator};
use crate::country::{Continent, CountryCode, CountrySet};

/// A rule's country sets; both `None`: any country.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct CountryCondition {
    /// The country (or "unknown") must be in this set.
    pub(crate) inside: Option<CountrySet>,
    /// The country (or "unknown") must not be in this set.
    pub(crate) outside: Option<CountrySet>,
}

/// The config keys, each a list of codes.
pub(crate) struct Raw<'a> {
    pub(crate) country: Option<&'a [Spanned<String>]>,
    pub(crate) continent: Option<&'a [Spanned<String>]>,
    pub(crate) not_country: Option<&'a [Spanned<String>]>,
    pub(crate) not_continent: Option<&'a [Spanned<String>]>,
}

impl CountryCondition {
    /// Reads the `country`, `continent`, `not_country` and `not_continent` keys.
    pub(crate) fn from_config(at: &Locator, raw: Raw) -> Result<CountryCondition, ConfigError> {
        Ok(CountryCondition {
            inside: country_set(at, raw.country, raw.continent)?,
            outside: country_set(at, raw.not_country, raw.not_continent)?,
        })
    }

    /// The answers admitted, as one set.
    fn admitted(&self) -> CountrySet {
        self.inside.unwrap_or_else(CountrySet::everything).without(&self.outside.unwrap_or_default())
    }
}

fn country_set(
    at: &Locator,
    countries: Option<&[Spanned<String>]>,
    continents: Option<&[Spanned<String>]>,
) -> Result<Option<CountrySet>, ConfigError> {
    if countries.is_none() && continents.is_none() {
        return Ok(None);
    }
    let mut set = CountrySet::new();
    for text in countries.unwrap_or_default() {
        match text.get_ref().as_str() {
            "unknown" => set.insert_unknown(),
            code => set.insert(country(at, text, code)?),
        }
    }
    for text in continents.unwrap_or_default() {
        let continent = text.get_ref().parse::<Continent>().map_err(|e| at.at(text, e.to_string(), None))?;
        set.insert_continent(continent);
    }
    Ok(Some(set))
}

fn country(at: &Locator, text: &Spanned<String>, code: &str) -> Result<CountryCode, ConfigError> {
    if let Some(known) = code.parse::<CountryCode>().ok().filter(|c| c.continent().is_some()) {
        return Ok(known);
    }
    let help = match code {
        "UK" => Some("did you mean `GB`?".to_owned()),
        "EL" => Some("did you mean `GR`?".to_owned()),
        _ if code.parse::<Continent>().is_ok() => Some(format!("`{code}` is a continent: list it in `continent`")),
        _ => code
            .to_ascii_uppercase()
            .parse::<CountryCode>()
            .ok()
            .filter(|c| c.continent().is_some())
            .map(|c| format!("did you mean `{c}`?")),
    };
    Err(at.at(text, format!("unknown country `{code}`"), help))
}

impl Condition for CountryCondition {
    fn is_any(&self) -> bool {
        self.inside.is_none() && self.outside.is_none()
    }

    fn holds(&self, facts: &dyn Facts) -> bool {
        if self.is_any() {
            return true;
        }
        let country = facts.country();
        self.inside.is_none_or(|set| set.contains(country)) && !self.outside.is_some_and(|set| set.contains(country))
    }

    fn never_holds(&self, _: &Conditions) -> Option<String> {
        if self.inside.is_some_and(|set| set.is_empty()) {
            return Some("its country set is empty".into());
        }
        match (self.inside, self.outside) {
            (Some(inside), Some(outside)) if inside.is_subset(&outside) => {
                Some("every country it requires is also one it excludes".into())
            }
            _ => None,
        }
    }

    fn describe(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(set) = &self.inside {
            write!(f, "country in {}", Members(set))?;
        }
        if let Some(set) = &self.outside {
            let and = if self.inside.is_some() { " and " } else { "" };
            write!(f, "{and}country not in {}", Members(set))?;
        }
        Ok(())
    }
}

impl LookupCondition for CountryCondition {
    type Answer = Option<CountryCode>;

    fn admits(&self, answer: Option<CountryCode>) -> bool {
        self.admitted().contains(answer)
    }
}

/// A set as `config check` prints it: `{GB US unknown}`.
struct Members<'a>(&'a CountrySet);

impl fmt::Display for Members<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (n, code) in self.0.countries().enumerate() {
            let space = if n > 0 { " " } else { "" };
            write!(f, "{space}{code}")?;
        }
        if self.0.contains_unknown() {
            let space = if self.0.countries().next().is_some() { " " } else { "" };
            write!(f, "{space}unknown")?;
        }
        f.write_str("}")
    }
}
