//! Requests the close policy claims (MCP: DELETE): close the session, answer 204.
//!
//! Without a cluster the session is closed in this table. With one, wherever it lives: the
//! record is deleted first (no node can restore the session after that), then this node's
//! copy is closed and the close is published to every other node. So DELETE answers 204 for a
//! session live on any node, 404 if there is no such session (or it is another principal's),
//! and 503 if the store did not answer.

use std::sync::Arc;

use bytes::Bytes;
use http::Response;

use crate::close::CloseReason;
use crate::cluster::flight::Failure;
use crate::http::endpoint::Endpoint;
use crate::http::rejection::{Rejection, no_content};
use crate::id::SessionId;
use crate::info::Principal;
use crate::metrics::StoreOp;
use crate::table::Close;

/// Closes session `id` in this table: 204, or 404 if it is not live here or not
/// `principal`'s.
pub(crate) fn close_here(
    endpoint: &Endpoint,
    id: &str,
    principal: Option<&Principal>,
) -> Response<Bytes> {
    let config = &endpoint.config;
    let closed = match endpoint.table.get(id) {
        Some(entry) if config.owns(principal, entry.info.principal()) => {
            endpoint.table.close(id, CloseReason::Deleted)
        }
        _ => false,
    };
    if closed {
        no_content()
    } else {
        config.reject(Rejection::SessionNotFound)
    }
}

/// Closes session `id` on every node of the cluster (see the module docs).
pub(crate) async fn close_everywhere(
    endpoint: Arc<Endpoint>,
    id: SessionId,
    principal: Option<Principal>,
) -> Response<Bytes> {
    let (config, table, link) = (&endpoint.config, &endpoint.table, &endpoint.link);
    let (Some(restores), Some(store)) = (link.restores(), link.store()) else {
        return close_here(&endpoint, id.as_str(), principal.as_ref());
    };
    // The record cannot be deleted while the store is known to be down: 503 at once.
    if link.store_is_down() {
        return config.reject(Rejection::StoreUnavailable(config.retry_after));
    }
    let owned = |owner: Option<&Principal>| config.owns(principal.as_ref(), owner);
    // No restore of this id runs on this node meanwhile: none can bring back what this
    // deletes.
    let flight = restores.join(&id);
    let mut outcome = flight.lock().await;
    // Bounded like restores: made-up ids cost at most this many store reads in flight.
    let Some(_permit) = restores.permit() else {
        return config.reject(Rejection::TooManyRestores(config.retry_after));
    };
    let local = table.get(id.as_str());
    match &local {
        Some(entry) if !owned(entry.info.principal()) => {
            return config.reject(Rejection::SessionNotFound);
        }
        Some(_) => {}
        None => {
            let loaded = link.metrics.store(StoreOp::Load, store.load(&id)).await;
            link.store_health(&loaded);
            match loaded {
                Err(_) => return config.reject(Rejection::StoreUnavailable(config.retry_after)),
                Ok(None) => return config.reject(Rejection::SessionNotFound),
                Ok(Some(record)) if !owned(record.principal.as_ref()) => {
                    return config.reject(Rejection::SessionNotFound);
                }
                Ok(Some(_)) => {}
            }
        }
    }
    // The record first: once it is gone no node can restore the session, then the copies.
    let deleted = link.metrics.store(StoreOp::Delete, store.delete(&id)).await;
    link.store_health(&deleted);
    if deleted.is_err() {
        return config.reject(Rejection::StoreUnavailable(config.retry_after));
    }
    if let Some(entry) = &local {
        // Its record is gone and the other nodes are told below: this copy only.
        table.close_entry(entry, Close::this_copy(CloseReason::Deleted));
    }
    link.publish_closed(&id, CloseReason::Deleted).await;
    *outcome = Some(Failure::NotFound);
    no_content()
}
