//! What users hold: [`Session`] (a request's session), [`Sessions`] (a table's handle),
//! [`SessionSnapshot`], and, with the `axum` feature, the extractors.

#[cfg(feature = "axum")]
pub(crate) mod extract;
pub(crate) mod session;
pub(crate) mod sessions;
pub(crate) mod snapshot;
