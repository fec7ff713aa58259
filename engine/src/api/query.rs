//! The query-string extractor the handlers use instead of axum's `Query`:
//! a malformed parameter (`?limit=abc`) is answered in the API's JSON error
//! shape, naming the parameter, rather than with axum's plain-text rejection.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::ApiError;
use crate::cloudevent::FieldError;

/// The query string deserialized into `T`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parse(parts.uri.query().unwrap_or_default()).map(Query)
    }
}

/// Parses a query string, naming the offending parameter on error.
pub fn parse<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path.is_empty() || path == "." {
            "query".to_owned()
        } else {
            path
        };
        let message = match e.inner().to_string() {
            m if m.contains("invalid digit") || m.contains("number too large") => {
                "must be an integer".to_owned()
            }
            m => m,
        };
        ApiError::BadQuery(FieldError { field, message })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Q {
        limit: Option<i64>,
        cursor: Option<String>,
    }

    #[test]
    fn a_bad_number_names_the_parameter() {
        let err = parse::<Q>("cursor=x&limit=abc").unwrap_err();
        let ApiError::BadQuery(e) = err else {
            panic!("expected BadQuery, got {err:?}")
        };
        assert_eq!(e.field, "limit");
        assert_eq!(e.message, "must be an integer");
    }

    #[test]
    fn good_and_empty_queries_parse() {
        let q = parse::<Q>("limit=7&cursor=msg_1").unwrap();
        assert_eq!((q.limit, q.cursor.as_deref()), (Some(7), Some("msg_1")));
        let q = parse::<Q>("").unwrap();
        assert_eq!((q.limit, q.cursor), (None, None));
    }
}
