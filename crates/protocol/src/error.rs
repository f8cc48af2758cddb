//! The one error type of this crate, and the coarse classes a caller acts on.

use thiserror::Error;

/// Why a message could not be understood. Every variant is recoverable: the caller skips the
/// message (and may count the class to decide when a peer is abusive), nothing here panics.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The text is not JSON at all.
    #[error("message is not JSON: {0}")]
    NotJson(String),
    /// The text is the start of a JSON document that ends too early.
    #[error("message is truncated: {0}")]
    Truncated(String),
    /// Valid JSON, but a field has the wrong JSON type or the document has the wrong shape.
    #[error("message has the wrong shape: {0}")]
    Malformed(String),
    /// The `kind` names a message this side of the protocol does not know.
    #[error("unknown message kind `{0}`")]
    UnknownKind(String),
    /// A field the message cannot do without is absent or `null`.
    #[error("required field `{0}` is missing")]
    MissingField(&'static str),
    /// A field is present with the right JSON type but an impossible value.
    #[error("invalid `{field}`: {reason}")]
    InvalidField {
        /// The field, as spelled in the protocol documentation.
        field: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// The audio payload is not valid base64.
    #[error("audio payload is not valid base64: {0}")]
    InvalidBase64(String),
    /// The audio payload decodes to a byte count that is not a whole number of samples.
    #[error(
        "audio payload has {bytes} bytes, not a whole number of {bytes_per_sample}-byte samples"
    )]
    PartialSample {
        /// Decoded byte count.
        bytes: usize,
        /// Bytes per (multi-channel) sample frame the stream's format requires.
        bytes_per_sample: usize,
    },
}

/// The class of a [`ProtocolError`]: a closed set, cheap to count per call and to label metrics with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorClass {
    /// See [`ProtocolError::NotJson`].
    NotJson,
    /// See [`ProtocolError::Truncated`].
    Truncated,
    /// See [`ProtocolError::Malformed`].
    Malformed,
    /// See [`ProtocolError::UnknownKind`].
    UnknownKind,
    /// See [`ProtocolError::MissingField`].
    MissingField,
    /// See [`ProtocolError::InvalidField`].
    InvalidField,
    /// See [`ProtocolError::InvalidBase64`].
    InvalidBase64,
    /// See [`ProtocolError::PartialSample`].
    PartialSample,
}

impl ErrorClass {
    /// Every class, in a stable order (for reports and metrics).
    pub const ALL: [ErrorClass; 8] = [
        ErrorClass::NotJson,
        ErrorClass::Truncated,
        ErrorClass::Malformed,
        ErrorClass::UnknownKind,
        ErrorClass::MissingField,
        ErrorClass::InvalidField,
        ErrorClass::InvalidBase64,
        ErrorClass::PartialSample,
    ];

    /// A stable snake_case name, used as a JSON key and a metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorClass::NotJson => "not_json",
            ErrorClass::Truncated => "truncated",
            ErrorClass::Malformed => "malformed",
            ErrorClass::UnknownKind => "unknown_kind",
            ErrorClass::MissingField => "missing_field",
            ErrorClass::InvalidField => "invalid_field",
            ErrorClass::InvalidBase64 => "invalid_base64",
            ErrorClass::PartialSample => "partial_sample",
        }
    }
}

impl ProtocolError {
    /// The class of this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            ProtocolError::NotJson(_) => ErrorClass::NotJson,
            ProtocolError::Truncated(_) => ErrorClass::Truncated,
            ProtocolError::Malformed(_) => ErrorClass::Malformed,
            ProtocolError::UnknownKind(_) => ErrorClass::UnknownKind,
            ProtocolError::MissingField(_) => ErrorClass::MissingField,
            ProtocolError::InvalidField { .. } => ErrorClass::InvalidField,
            ProtocolError::InvalidBase64(_) => ErrorClass::InvalidBase64,
            ProtocolError::PartialSample { .. } => ErrorClass::PartialSample,
        }
    }

    pub(crate) fn from_json(err: &serde_json::Error) -> Self {
        use serde_json::error::Category;
        let text = err.to_string();
        match err.classify() {
            Category::Eof => ProtocolError::Truncated(text),
            Category::Syntax | Category::Io => ProtocolError::NotJson(text),
            Category::Data => ProtocolError::Malformed(text),
        }
    }
}
