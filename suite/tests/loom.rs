//! The two handshakes of a session's entry, checked by loom over every interleaving and
//! every memory ordering outcome the C11 model allows (within loom's limits: SeqCst accesses
//! are modelled as AcqRel, SeqCst fences as SeqCst, which makes these checks stricter, not
//! laxer).
//!
//! The library's own source file is compiled here (`src/table/handshake.rs`), with loom's
//! atomics behind `crate::sync::atomic`: what is checked is the code that runs, not a copy.

#[path = "../../src/close.rs"]
#[allow(dead_code)]
mod close;
#[path = "../../src/table/handshake.rs"]
mod handshake;

/// What `handshake.rs` imports as `crate::sync::atomic`.
mod sync {
    pub mod atomic {
        pub use loom::sync::atomic::{AtomicBool, AtomicU8, Ordering, fence};
    }
}

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::{Arc, Mutex};
use loom::thread;

use close::CloseReason;
use handshake::{CloseFlag, HookState};

/// A response body waits on a closing session: whatever the interleaving, it either sees the
/// close itself or is woken by it. The waiter "registers" as the library's does: it publishes
/// its `Notify` through a `OnceLock` (a release store); the closer looks for it (an acquire
/// load) after setting the flag.
#[test]
fn close_wakes_a_waiting_body() {
    loom::model(|| {
        let flag = Arc::new(CloseFlag::default());
        let registered = Arc::new(AtomicBool::new(false));
        let woken = Arc::new(AtomicBool::new(false));
        let closer = {
            let (flag, registered, woken) = (flag.clone(), registered.clone(), woken.clone());
            thread::spawn(move || {
                flag.set_then(|| {
                    if registered.load(Ordering::Acquire) {
                        woken.store(true, Ordering::Release);
                    }
                })
            })
        };
        let saw_closed = flag.register_then_check(|| registered.store(true, Ordering::Release));
        closer.join().unwrap();
        assert!(
            saw_closed || woken.load(Ordering::Acquire),
            "the body neither saw the close nor was woken: it would wait forever"
        );
    });
}

/// An opener running `on_open` and a closer racing it: exactly one `on_close`, after the
/// `on_open`, with the closer's reason.
#[test]
fn hooks_pair_up() {
    loom::model(|| {
        let state = Arc::new(HookState::default());
        let log = Arc::new(Mutex::new(Vec::new()));
        let closer = {
            let (state, log) = (state.clone(), log.clone());
            thread::spawn(move || {
                if state.closed(CloseReason::Evicted) {
                    log.lock().unwrap().push("on_close(evicted)");
                }
            })
        };
        log.lock().unwrap().push("on_open");
        if let Err(reason) = state.opened() {
            assert_eq!(reason, CloseReason::Evicted);
            log.lock().unwrap().push("on_close(evicted)");
        }
        closer.join().unwrap();
        assert_eq!(*log.lock().unwrap(), ["on_open", "on_close(evicted)"]);
    });
}
