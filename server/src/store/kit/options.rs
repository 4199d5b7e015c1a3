//! The options of a store URL, `?name=value&…`, read the same way for every
//! engine.
//!
//! An engine declares each option it accepts as a [`UrlOption`] (its name,
//! what a valid value looks like, how to read one, its default) and takes
//! it from the [`UrlQuery`]; [`UrlQuery::finish`] then refuses whatever was
//! not taken, naming the option and listing those the engine accepts, or
//! [`UrlQuery::into_rest`] hands it to a driver with options of its own.
//! Values are percent-decoded (`+` reads as a space, as in any query
//! string). An option the engine takes that is given twice is refused
//! rather than silently overridden. A value declared secret is never
//! repeated in an error.

use std::fmt;

/// An option an engine accepts in its URL's query.
#[derive(Debug)]
pub struct UrlOption<T: 'static> {
    pub name: &'static str,
    /// What a valid value is, completing "NAME must be …".
    pub expected: &'static str,
    /// The value a text stands for; `None` when it is not valid.
    pub parse: fn(&str) -> Option<T>,
    /// The value when the option is absent.
    pub default: fn() -> T,
    /// Never repeat the value (a password).
    pub secret: bool,
}

/// A store URL's query that does not fit what the engine accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlOptionError {
    #[error("{scheme}://: unknown option '{name}'; {scheme}:// accepts {accepted}")]
    Unknown {
        scheme: &'static str,
        name: String,
        accepted: Accepted,
    },
    #[error("{scheme}://: the option {name} is given more than once")]
    Repeated { scheme: &'static str, name: String },
    #[error("{scheme}://: {name} must be {expected}, got {value}")]
    Invalid {
        scheme: &'static str,
        name: &'static str,
        expected: &'static str,
        value: ShownValue,
    },
}

/// The options an engine accepts, for an error message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted(Vec<&'static str>);

impl fmt::Display for Accepted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [] => f.write_str("no options"),
            [one] => write!(f, "only the option {one}"),
            names => write!(f, "the options {}", names.join(", ")),
        }
    }
}

/// A value as an error shows it: quoted, or hidden when it is secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShownValue {
    Text(String),
    Secret,
}

impl fmt::Display for ShownValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(text) => write!(f, "'{text}'"),
            Self::Secret => f.write_str("a value that is not shown"),
        }
    }
}

/// One `name=value` of a query.
#[derive(Debug)]
struct Given {
    name: String,
    /// Percent-decoded.
    value: String,
    /// As written, for a driver that decodes options its own way.
    raw: String,
}

/// The options of one store URL, being taken by its engine.
#[derive(Debug)]
pub struct UrlQuery {
    scheme: &'static str,
    /// The options in the order given; taken ones are removed.
    given: Vec<Given>,
    /// The names the engine has taken so far: the ones it accepts.
    accepted: Vec<&'static str>,
}

impl UrlQuery {
    /// Reads `query`, the text after a URL's `?` (empty when there is
    /// none), of a URL of `scheme`.
    pub fn parse(scheme: &'static str, query: &str) -> Self {
        let given = query
            .split('&')
            .filter(|raw| !raw.is_empty())
            .map(|raw| {
                let (name, value) = url::form_urlencoded::parse(raw.as_bytes())
                    .next()
                    .unwrap_or_default();
                Given {
                    name: name.into_owned(),
                    value: value.into_owned(),
                    raw: raw.to_owned(),
                }
            })
            .collect();
        Self {
            scheme,
            given,
            accepted: Vec::new(),
        }
    }

    /// The value of `option`, or its default when the URL does not give it;
    /// an option given twice is refused rather than one of them ignored.
    pub fn take<T>(&mut self, option: &UrlOption<T>) -> Result<T, UrlOptionError> {
        self.accepted.push(option.name);
        let mut found = (self.given.iter().enumerate())
            .filter(|(_, given)| given.name == option.name)
            .map(|(at, _)| at);
        let at = match (found.next(), found.next()) {
            (None, _) => return Ok((option.default)()),
            (Some(at), None) => at,
            (Some(_), Some(_)) => {
                return Err(UrlOptionError::Repeated {
                    scheme: self.scheme,
                    name: option.name.to_owned(),
                });
            }
        };
        let value = self.given.remove(at).value;
        let parsed = (option.parse)(&value);
        parsed.ok_or(UrlOptionError::Invalid {
            scheme: self.scheme,
            name: option.name,
            expected: option.expected,
            value: if option.secret {
                ShownValue::Secret
            } else {
                ShownValue::Text(value)
            },
        })
    }

    /// Whether the URL gives an option of this name that no `take` has
    /// taken yet: for an engine that explains a retired option better than
    /// "unknown" would.
    pub fn has(&self, name: &str) -> bool {
        self.given.iter().any(|given| given.name == name)
    }

    /// Refuses any option the engine did not take.
    pub fn finish(self) -> Result<(), UrlOptionError> {
        match self.given.into_iter().next() {
            None => Ok(()),
            Some(given) => Err(UrlOptionError::Unknown {
                scheme: self.scheme,
                name: given.name,
                accepted: Accepted(self.accepted),
            }),
        }
    }

    /// The options the engine did not take, as they were written (`a=1&b=2`,
    /// empty when none), for a driver that reads options of its own and
    /// decodes them its own way (libpq's, for PostgreSQL).
    pub fn into_rest(self) -> String {
        let raw: Vec<String> = self.given.into_iter().map(|given| given.raw).collect();
        raw.join("&")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: UrlOption<u32> = UrlOption {
        name: "size",
        expected: "a whole number of at least 1",
        parse: |text| text.parse().ok().filter(|size| *size > 0),
        default: || 10,
        secret: false,
    };

    const PASSWORD: UrlOption<String> = UrlOption {
        name: "password",
        expected: "a non-empty text",
        parse: |text| (!text.is_empty()).then(|| text.to_owned()),
        default: String::new,
        secret: true,
    };

    fn size_of(query: &str) -> Result<u32, UrlOptionError> {
        let mut options = UrlQuery::parse("test", query);
        let size = options.take(&SIZE)?;
        options.finish()?;
        Ok(size)
    }

    #[test]
    fn options_are_typed_and_default_when_absent() {
        assert_eq!(size_of(""), Ok(10));
        assert_eq!(size_of("size=3"), Ok(3));
        assert_eq!(size_of("size=%33"), Ok(3));
    }

    #[test]
    fn errors_name_the_option_and_what_is_accepted() {
        for (query, expected) in [
            (
                "size=0",
                "test://: size must be a whole number of at least 1, got '0'",
            ),
            (
                "size=",
                "test://: size must be a whole number of at least 1, got ''",
            ),
            (
                "size",
                "test://: size must be a whole number of at least 1, got ''",
            ),
            (
                "size=1&size=2",
                "test://: the option size is given more than once",
            ),
            (
                "colour=red",
                "test://: unknown option 'colour'; test:// accepts only the option size",
            ),
        ] {
            assert_eq!(size_of(query).unwrap_err().to_string(), expected, "{query}");
        }
        let mut options = UrlQuery::parse("test", "colour=red");
        options.take(&SIZE).unwrap();
        options.take(&PASSWORD).unwrap();
        let err = options.finish().unwrap_err().to_string();
        assert!(err.ends_with("accepts the options size, password"), "{err}");
        let err = UrlQuery::parse("test", "x=1").finish().unwrap_err();
        assert!(err.to_string().ends_with("accepts no options"), "{err}");
    }

    #[test]
    fn secret_values_are_never_shown() {
        let mut options = UrlQuery::parse("test", "password=");
        let err = options.take(&PASSWORD).unwrap_err().to_string();
        assert_eq!(
            err,
            "test://: password must be a non-empty text, got a value that is not shown"
        );
    }

    #[test]
    fn options_left_over_go_to_the_driver_in_order() {
        let mut options = UrlQuery::parse("test", "a=1&size=2&b=x%20y+z&a=3");
        assert_eq!(options.take(&SIZE), Ok(2));
        assert_eq!(options.into_rest(), "a=1&b=x%20y+z&a=3");
    }
}
