//! Memory per session: the bytes the layer itself holds for each live session, counted by a
//! global allocator wrapper, at 100k and 1M sessions; next to the same count for the bare
//! structures of the baselines holding the same number of ids.
//!
//! Each measurement runs in a fresh child process (this binary, `--child VARIANT N`), so the
//! resident-set figure is not skewed by memory an earlier measurement freed. In each child:
//! the layer (or map) is built and a throwaway session is opened first (lazy statics, the
//! allocator's own setup), then the live heap is read, `N` sessions are opened through the
//! full service path (POST `initialize`, trivial factory, response dropped) and the live heap
//! is read again. The per-session service is zero-sized, so everything counted is the layer's:
//! the table slot, the entry (id, principal, last-seen clock, in-flight count, close flag), and
//! the id string. Figures:
//!
//! - requested: bytes asked of the allocator, as Rust sees them;
//! - with malloc overhead: the same allocations rounded to glibc malloc chunks
//!   (`max(32, round_up(size + 8, 16))`), what the process pays with the default allocator;
//! - RSS: growth of the resident set (`/proc/self/statm`), a cross-check.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, Ordering};

use common::*;
use dashmap::DashMap;
use tower::Layer;
use tower_mcp_session::{MakeSessionId, UuidV4};

struct Counting;

static BYTES: AtomicIsize = AtomicIsize::new(0);
static CHUNKS: AtomicIsize = AtomicIsize::new(0);
static BLOCKS: AtomicIsize = AtomicIsize::new(0);

/// Bytes glibc malloc takes for a request of `size` bytes on 64-bit Linux.
fn chunk(size: usize) -> isize {
    ((size + 8 + 15) & !15).max(32) as isize
}

fn account(size: usize, sign: isize) {
    BYTES.fetch_add(sign * size as isize, Ordering::Relaxed);
    CHUNKS.fetch_add(sign * chunk(size), Ordering::Relaxed);
    BLOCKS.fetch_add(sign, Ordering::Relaxed);
}

// SAFETY: forwards every call to `System` unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            account(layout.size(), 1);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            account(layout.size(), 1);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        account(layout.size(), -1);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            account(layout.size(), -1);
            account(new_size, 1);
        }
        new
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Clone, Copy)]
struct Snapshot {
    bytes: isize,
    chunks: isize,
    blocks: isize,
    rss: isize,
}

fn snapshot() -> Snapshot {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: isize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Snapshot {
        bytes: BYTES.load(Ordering::Relaxed),
        chunks: CHUNKS.load(Ordering::Relaxed),
        blocks: BLOCKS.load(Ordering::Relaxed),
        rss: pages * 4096,
    }
}

/// Runs one measurement in this process; prints `bytes chunks blocks rss` per session.
fn child(variant: &str, n: usize) {
    let (before, after) = match variant {
        "layer" => {
            let layer = mcp_layer(usize::MAX).build();
            let mut svc = layer.layer(Noop);
            // Warm up: lazy statics, the id generator, the allocator; then close that session.
            let warm = open_one(&mut svc);
            assert!(layer.sessions().close(&warm));
            let before = snapshot();
            for _ in 0..n {
                let response = block_on(tower::Service::call(&mut svc, init_request()));
                drop(response);
            }
            let after = snapshot();
            assert_eq!(layer.sessions().len(), n);
            (before, after)
        }
        "floor_dashmap" => {
            let map: DashMap<Arc<str>, Arc<Handle>, foldhash::fast::RandomState> =
                DashMap::with_hasher_and_shard_amount(Default::default(), 256);
            let before = snapshot();
            for _ in 0..n {
                let (id, handle) = Handle::new(&UuidV4.make_session_id());
                map.insert(id, handle);
            }
            let after = snapshot();
            assert_eq!(map.len(), n);
            (before, after)
        }
        "hashmap" => {
            let mut map: HashMap<Arc<str>, Arc<Handle>> = HashMap::new();
            let before = snapshot();
            for _ in 0..n {
                let (id, handle) = Handle::new(&UuidV4.make_session_id());
                map.insert(id, handle);
            }
            let after = snapshot();
            assert_eq!(map.len(), n);
            (before, after)
        }
        other => panic!("unknown variant {other}"),
    };
    let per = |a: isize, b: isize| (b - a) as f64 / n as f64;
    println!(
        "RESULT {} {} {} {}",
        per(before.bytes, after.bytes),
        per(before.chunks, after.chunks),
        per(before.blocks, after.blocks),
        per(before.rss, after.rss),
    );
}

fn measure(variant: &str, n: usize) -> Option<[f64; 4]> {
    let exe = std::env::current_exe().expect("current exe");
    let out = Command::new(exe)
        .args(["--child", variant, &n.to_string()])
        .output()
        .expect("run child");
    if !out.status.success() {
        eprintln!("{variant} {n}: {}", String::from_utf8_lossy(&out.stderr));
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("RESULT "))?;
    let v: Vec<f64> = line[7..]
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    v.try_into().ok()
}

fn size_label(n: usize) -> String {
    match n {
        n if n >= 1_000_000 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(&args[i + 1], args[i + 2].parse().expect("count"));
        return;
    }
    // `cargo bench -- FILTER`: run only when the filter (if any) names this bench.
    let mode = common::mode("memory");
    if mode == common::Mode::Skip {
        return;
    }

    let mut out = String::from(
        "### 3. Memory per session\n\n\
         | structure | sessions | requested B/session | with malloc overhead B/session | allocations/session | RSS B/session |\n\
         |---|---|---|---|---|---|\n",
    );
    let mut readings = String::new();
    let sizes: &[usize] = if mode == common::Mode::Bench {
        &[100_000, 1_000_000]
    } else {
        &[1_000]
    };
    for &n in sizes {
        let layer = measure("layer", n);
        let mut row = |name: &str, r: Option<[f64; 4]>| {
            let cells = match r {
                Some([b, c, k, rss]) => format!("{b:.0} | {c:.0} | {k:.2} | {rss:.0}"),
                None => "n/a | n/a | n/a | n/a".into(),
            };
            out.push_str(&format!("| {name} | {} | {cells} |\n", size_label(n)));
        };
        row("the layer (full path, zero-sized service)", layer);
        let floor = measure("floor_dashmap", n);
        row("floor: DashMap<Arc<str>, Arc<Handle>>", floor);
        let hashmap = measure("hashmap", n);
        row(
            "HashMap<Arc<str>, Arc<Handle>> (inside either RwLock)",
            hashmap,
        );
        let label = size_label(n);
        if let Some([b, c, ..]) = layer {
            readings.push_str(&format!(
                "- {label} sessions: the layer holds {b:.0} B/session requested ({c:.0} B with malloc overhead) = {} the 256 B target; {} the bare DashMap floor ({:.0} B), {} a bare HashMap ({:.0} B)\n",
                ratio(Some(b / 256.0)),
                ratio(floor.map(|f| b / f[0])),
                floor.map_or(0.0, |f| f[0]),
                ratio(hashmap.map(|h| b / h[0])),
                hashmap.map_or(0.0, |h| h[0]),
            ));
        }
    }
    out.push('\n');
    out.push_str(&readings);
    write_summary("3-memory", &out);
}
