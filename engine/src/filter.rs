//! Event-type filters of an endpoint: exact names (`order.created`) and
//! prefixes (`order.*`); `*` or an empty list matches every type.

/// A parsed list of filters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TypeFilter {
    patterns: Vec<Pattern>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    All,
    Exact(String),
    /// The prefix including its trailing dot: `order.` for `order.*`.
    Prefix(String),
}

/// Longest accepted filter, the same as the longest event type.
pub const MAX_FILTER_LEN: usize = 256;
/// Most filters on one endpoint.
pub const MAX_FILTERS: usize = 100;

impl TypeFilter {
    /// Parses filters; the error names the offending entry by index.
    pub fn parse(filters: &[String]) -> Result<TypeFilter, String> {
        if filters.len() > MAX_FILTERS {
            return Err(format!(
                "at most {MAX_FILTERS} filters, got {}",
                filters.len()
            ));
        }
        let mut patterns = Vec::with_capacity(filters.len());
        for (i, f) in filters.iter().enumerate() {
            let bad = |why: &str| Err(format!("[{i}] \"{f}\": {why}"));
            if f.is_empty() {
                return bad("must not be empty");
            }
            if f.len() > MAX_FILTER_LEN {
                return bad(&format!("longer than {MAX_FILTER_LEN} bytes"));
            }
            if f.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return bad("must not contain spaces or control characters");
            }
            patterns.push(if f == "*" {
                Pattern::All
            } else if let Some(prefix) = f.strip_suffix(".*") {
                if prefix.is_empty() || prefix.contains('*') {
                    return bad("a prefix filter is a name followed by \".*\", e.g. \"order.*\"");
                }
                Pattern::Prefix(format!("{prefix}."))
            } else if f.contains('*') {
                return bad("\"*\" is allowed only alone or as a final \".*\"");
            } else {
                Pattern::Exact(f.clone())
            });
        }
        Ok(TypeFilter { patterns })
    }

    /// Parses the JSON array text stored with an endpoint.
    pub fn from_json(text: &str) -> Result<TypeFilter, String> {
        let list: Vec<String> = serde_json::from_str(text).map_err(|e| e.to_string())?;
        TypeFilter::parse(&list)
    }

    /// Whether an event of this type goes to the endpoint.
    pub fn matches(&self, event_type: &str) -> bool {
        self.patterns.is_empty()
            || self.patterns.iter().any(|p| match p {
                Pattern::All => true,
                Pattern::Exact(name) => name == event_type,
                Pattern::Prefix(prefix) => event_type.starts_with(prefix.as_str()),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(list: &[&str]) -> TypeFilter {
        TypeFilter::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn exact_and_prefix() {
        let f = filter(&["invoice.paid", "order.*"]);
        assert!(f.matches("invoice.paid"));
        assert!(f.matches("order.created"));
        assert!(f.matches("order.item.added"));
        assert!(!f.matches("order"), "a prefix filter needs the dot");
        assert!(!f.matches("orders.created"));
        assert!(!f.matches("invoice.paid.late"));
        assert!(!f.matches("invoice.created"));
    }

    #[test]
    fn empty_and_star_match_everything() {
        assert!(filter(&[]).matches("anything"));
        assert!(filter(&["*"]).matches("anything"));
    }

    #[test]
    fn bad_filters_are_named() {
        for (bad, why) in [
            ("", "empty"),
            ("a*", "only alone"),
            (".*", "prefix"),
            ("a b", "spaces"),
        ] {
            let err = TypeFilter::parse(&["ok".into(), bad.into()]).unwrap_err();
            assert!(
                err.starts_with("[1]") && err.contains(why),
                "{bad:?} gave {err}"
            );
        }
    }
}
