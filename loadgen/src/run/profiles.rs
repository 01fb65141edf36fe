//! The profiling window (scenario 4): every service's CPU flamegraph and heap profiles taken
//! over it, written into `profiles/` as the results layout names them — the CPU flamegraph, the
//! heap's pprof file at the window's end, its in-use bytes at the start and at the end and its
//! growth over the window as flamegraphs — and the heaps summed by allocation site for the
//! summary.

use std::path::Path;

use crate::observe::heap::{HeapProfile, HeapSummary};
use crate::observe::profile::{ProfileWindow, Taken, take_profiles};
use crate::results::layout;

/// How many allocation sites a summary lists.
const SITES: usize = 8;

/// What the window gave: the heaps' summaries, and one note per profile that could not be
/// taken or written.
#[derive(Debug, Default)]
pub(super) struct Profiled {
    pub heap: Vec<HeapSummary>,
    pub notes: Vec<String>,
}

/// Profiles `services` (name, metrics URL) over `window` of a load that started at `started`,
/// writing into the results folder at `folder`.
pub(super) async fn profile(
    services: Vec<(String, String)>,
    started: tokio::time::Instant,
    window: ProfileWindow,
    folder: &Path,
    stop: tokio_util::sync::CancellationToken,
) -> Profiled {
    let taken = match take_profiles(services, started, window, stop).await {
        Ok(taken) => taken,
        Err(note) => return Profiled { heap: Vec::new(), notes: vec![note] },
    };
    if let Err(e) = std::fs::create_dir_all(folder.join(layout::PROFILES)) {
        return Profiled { heap: Vec::new(), notes: vec![format!("cannot create {}: {e}", layout::PROFILES)] };
    }
    let mut profiled = Profiled::default();
    for Taken { service, cpu, heap_start, heap_end } in taken {
        let mut note = |what: &str, e: String| profiled.notes.push(format!("{service}: {what}: {e}"));
        let write = |file: String, bytes: &[u8]| -> Result<(), String> {
            crate::atomic::write(&folder.join(&file), bytes).map_err(|e| e.to_string())
        };
        if let Err(e) = cpu.and_then(|svg| write(layout::profile_svg(&service), &svg)) {
            note("CPU profile", e);
        }
        let heaps = heap_start.and_then(|start| {
            let end = heap_end?;
            write(layout::heap_pprof(&service), &end)?;
            Ok((HeapProfile::decode(&start)?, HeapProfile::decode(&end)?))
        });
        let (start, end) = match heaps {
            Ok(heaps) => heaps,
            Err(e) => {
                note("heap profile", e);
                continue;
            }
        };
        let growth = end.growth_since(&start);
        let drawn = start
            .flamegraph(&format!("{service}: bytes in use at the window's start"))
            .and_then(|svg: Vec<u8>| write(layout::heap_start_svg(&service), &svg))
            .and_then(|()| end.flamegraph(&format!("{service}: bytes in use at the window's end")))
            .and_then(|svg: Vec<u8>| write(layout::heap_svg(&service), &svg))
            .and_then(|()| growth.flamegraph(&format!("{service}: bytes in use that grew over the window")))
            .and_then(|svg: Vec<u8>| write(layout::heap_growth_svg(&service), &svg));
        if let Err(e) = drawn {
            note("heap flamegraphs", e);
        }
        profiled.heap.push(HeapSummary {
            service: service.clone(),
            start_bytes: start.total(),
            end_bytes: end.total(),
            top_sites: end.top_sites(SITES),
            top_growth: growth.top_sites(SITES),
        });
    }
    profiled
}
