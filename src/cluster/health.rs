//! One log line when the store or the bus goes away, and one when it is back.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::bus::BusError;
use crate::store::StoreError;

/// Whether the store and the bus answered their last operation.
#[derive(Default)]
pub(crate) struct Health {
    store_down: AtomicBool,
    bus_down: AtomicBool,
}

impl Health {
    /// Logs the first failure of the store and the first success after it, once each.
    pub(crate) fn store<T>(&self, result: &Result<T, StoreError>) {
        match result {
            Err(error) => {
                if !self.store_down.swap(true, Ordering::AcqRel) {
                    tracing::warn!(
                        %error,
                        "session store unreachable: opening and restoring sessions answer 503 \
                         until it is back; sessions live on this node keep working"
                    );
                }
            }
            Ok(_) => {
                if self.store_down.swap(false, Ordering::AcqRel) {
                    tracing::info!("session store reachable again");
                }
            }
        }
    }

    /// Logs the first failure of the bus and the first success after it, once each.
    pub(crate) fn bus<T>(&self, result: &Result<T, BusError>) {
        match result {
            Err(error) => {
                if !self.bus_down.swap(true, Ordering::AcqRel) {
                    tracing::warn!(%error, "session bus unreachable: messages to other nodes are lost until it is back");
                }
            }
            Ok(_) => {
                if self.bus_down.swap(false, Ordering::AcqRel) {
                    tracing::info!("session bus reachable again");
                }
            }
        }
    }
}
