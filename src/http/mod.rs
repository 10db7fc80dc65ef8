//! The tower layer: [`SessionLayerBuilder`](layer::SessionLayerBuilder) and
//! [`SessionLayer`](layer::SessionLayer), [`SessionService`](service::SessionService), its
//! response future and bodies, and the answers the layer gives itself.
//!
//! - [`layer`]: the builder and the built layer;
//! - [`service`], [`classify`]: where each request goes;
//! - [`route`]: the path to a live session, written once;
//! - [`open`], [`peek`]: opening a session, and reading its body within bounds;
//! - [`restore`], [`delete`]: the paths that reach the cluster's store;
//! - [`future`], [`body`]: the response future and the request and response bodies;
//! - [`trace`]: the span of each request (feature `spans`);
//! - [`rejection`], [`profile`], [`policy`], [`factory`], [`config`]: answers, rules, settings.

pub(crate) mod body;
mod classify;
mod config;
mod delete;
mod endpoint;
pub(crate) mod factory;
pub(crate) mod future;
pub(crate) mod layer;
mod open;
mod peek;
pub(crate) mod policy;
mod profile;
pub(crate) mod rejection;
mod restore;
mod route;
pub(crate) mod service;
mod trace;
