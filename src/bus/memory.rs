//! [`MemoryBus`]: a bus between the session tables of one process.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::bus::{BusConnection, BusEvent, BusFuture, Deliver, SessionBus};
use crate::id::SessionId;
use crate::sync::lock;

/// A bus between the session tables (nodes) of one process; clones share it.
///
/// A layer without [`bus`](crate::Cluster::bus) delivers
/// [published](crate::Session::publish) messages to its own subscribers directly, without any
/// bus. Given to several layers (with one shared [`MemoryStore`](crate::store::MemoryStore)),
/// a `MemoryBus` carries messages and closes between them as
/// [`RedisBus`](crate::bus::RedisBus) does between processes: the tests of the multi-node
/// logic run on it. Delivery is synchronous, on the publisher's task.
#[derive(Clone, Default)]
pub struct MemoryBus {
    hub: Arc<Hub>,
}

#[derive(Default)]
struct Hub {
    next_node: AtomicU64,
    nodes: Mutex<Nodes>,
}

#[derive(Default)]
struct Nodes {
    deliver: HashMap<u64, Deliver>,
    /// Which nodes listen to each session.
    listeners: HashMap<SessionId, Vec<u64>>,
}

impl Hub {
    fn nodes(&self) -> MutexGuard<'_, Nodes> {
        lock(&self.nodes)
    }
}

impl std::fmt::Debug for MemoryBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nodes = self.hub.nodes();
        f.debug_struct("MemoryBus")
            .field("nodes", &nodes.deliver.len())
            .field("sessions", &nodes.listeners.len())
            .finish()
    }
}

impl MemoryBus {
    /// A bus with no node on it.
    pub fn new() -> Self {
        Self::default()
    }
}

impl SessionBus for MemoryBus {
    fn connect(&self, deliver: Deliver) -> Arc<dyn BusConnection> {
        let node = self.hub.next_node.fetch_add(1, Ordering::Relaxed);
        self.hub.nodes().deliver.insert(node, deliver);
        Arc::new(MemoryConnection {
            hub: Arc::clone(&self.hub),
            node,
        })
    }
}

/// One node's connection to a [`MemoryBus`].
struct MemoryConnection {
    /// Held strongly: the bus lives while a node is connected, also once every `MemoryBus`
    /// handle is gone (the hub holds the nodes' deliveries, which hold their links weakly).
    hub: Arc<Hub>,
    node: u64,
}

impl BusConnection for MemoryConnection {
    fn listen(&self, id: &SessionId) {
        {
            let mut nodes = self.hub.nodes();
            let listeners = nodes.listeners.entry(id.clone()).or_default();
            if !listeners.contains(&self.node) {
                listeners.push(self.node);
            }
        }
    }

    fn unlisten(&self, id: &SessionId) {
        {
            let mut nodes = self.hub.nodes();
            if let Some(listeners) = nodes.listeners.get_mut(id) {
                listeners.retain(|node| *node != self.node);
                if listeners.is_empty() {
                    nodes.listeners.remove(id);
                }
            }
        }
    }

    fn publish<'a>(&'a self, id: &'a SessionId, event: BusEvent) -> BusFuture<'a, ()> {
        let targets: Vec<Deliver> = {
            let nodes = self.hub.nodes();
            nodes
                .listeners
                .get(id)
                .into_iter()
                .flatten()
                .filter_map(|node| nodes.deliver.get(node).cloned())
                .collect()
        };
        // Outside the lock: a delivery may close a session, which unlistens.
        for deliver in targets {
            deliver(id, event.clone());
        }
        Box::pin(std::future::ready(Ok(())))
    }
}

impl Drop for MemoryConnection {
    fn drop(&mut self) {
        let mut nodes = self.hub.nodes();
        nodes.deliver.remove(&self.node);
        let node = self.node;
        nodes.listeners.retain(|_, listeners| {
            listeners.retain(|n| *n != node);
            !listeners.is_empty()
        });
    }
}
