//! Tocsin's alert rules language: alerts as code, checked like a compiler checks code,
//! unit-tested on a virtual clock, and compiled to MLRun's alert configs (with Tocsin's
//! extension fields where the language says more than MLRun can).
//!
//! The pipeline: [`parse`] (source to [`ast`], syntax errors as diagnostics) → [`check`]
//! (names, kinds, templates, every other error at once, and warnings) → compiled configs.
//! [`format`] prints the canonical layout; [`export`] goes from configs back to source;
//! [`testing`] runs rule test files.

pub mod ast;
pub mod check;
pub mod diagnostic;
pub mod export;
mod format;
mod parse;
#[cfg(feature = "testing")]
pub mod testing;

pub use check::{Checked, CompiledAlert, CompiledSilence, Resolver, check, check_source};
pub use diagnostic::{Diagnostic, Level};
pub use format::format;
pub use parse::parse;
#[doc(hidden)]
pub use parse::pest_only;
