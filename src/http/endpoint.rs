//! [`Endpoint`]: what every service of one layer shares.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::cluster::{Link, SessionTable};
use crate::handle::sessions::Sessions;
use crate::http::config::Config;
use crate::http::peek::PeekBudget;

/// What every service of one layer shares: the settings, the table, its link, the peek budget.
pub(crate) struct Endpoint {
    pub(crate) config: Config,
    pub(crate) table: Arc<SessionTable>,
    pub(crate) link: Arc<Link>,
    pub(crate) peek: PeekBudget,
    /// Whether the link has a store (checked on every request: kept inline here).
    pub(crate) clustered: bool,
    /// Whether the background tasks were started (checked on every request).
    started: AtomicBool,
}

impl Endpoint {
    pub(crate) fn new(config: Config, table: Arc<SessionTable>, link: Arc<Link>) -> Self {
        Self {
            peek: PeekBudget::new(config.peek_budget, config.metrics.clone()),
            clustered: link.is_clustered(),
            config,
            table,
            link,
            started: AtomicBool::new(false),
        }
    }

    /// Starts the sweeper and the refresher on the current runtime, once.
    pub(crate) fn ensure_started(&self) {
        if self.started.load(Ordering::Relaxed) {
            return;
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        self.started.store(true, Ordering::Relaxed);
        self.table.ensure_sweeper();
        self.link.ensure_refresher();
    }

    /// A handle to the table.
    pub(crate) fn sessions(&self) -> Sessions {
        Sessions {
            table: Arc::clone(&self.table),
            link: Arc::clone(&self.link),
        }
    }
}
