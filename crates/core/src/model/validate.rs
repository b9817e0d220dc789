//! Field validation shared by the request types.

/// A request field that breaks a rule; `field` names it the way the API does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid `{field}`: {message}")]
pub struct ValidationError {
    /// JSON path of the offending field, e.g. `argv[3]`.
    pub field: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl ValidationError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// Checks a byte length bound on an optional text field.
pub(crate) fn max_bytes(field: &str, value: Option<&str>, max: usize) -> Result<(), ValidationError> {
    match value {
        Some(v) if v.len() > max => {
            Err(ValidationError::new(field, format!("at most {max} bytes, got {}", v.len())))
        }
        _ => Ok(()),
    }
}

/// Checks a character-count range on a required text field.
pub(crate) fn chars_between(field: &str, value: &str, min: usize, max: usize) -> Result<(), ValidationError> {
    let n = value.chars().count();
    if (min..=max).contains(&n) {
        Ok(())
    } else {
        Err(ValidationError::new(field, format!("{min} to {max} characters, got {n}")))
    }
}
