//! Built-in processors, and the [`Registry`] that builds a call's pipeline from names in the
//! config.
//!
//! - [`Echo`] (`echo`): every inbound frame straight back into the call.
//!
//! ```
//! use mediagate_sinks::Registry;
//!
//! let registry = Registry::with_builtins();
//! assert!(registry.contains("echo"));
//! ```

mod echo;
mod registry;

pub use echo::Echo;
pub use registry::{BuildError, Constructor, Registry};
