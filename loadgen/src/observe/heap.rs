//! Heap profiles of the SUT services: each admin port's `GET /debug/pprof/heap` answers with the
//! bytes in use by call stack (pprof's gzipped protobuf, as `go tool pprof` reads it). Here a
//! profile is read into stacks of function names, two profiles give the growth between them, and
//! either is drawn as a flamegraph or summed by allocation site (the first frame, from the
//! allocation up, that is not the allocator or the standard library's containers).

use std::collections::BTreeMap;
use std::io::Read;

use serde::{Deserialize, Serialize};

/// The part of pprof's `profile.proto` a heap profile needs (field numbers as in the format).
mod format {
    /// A profile.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Profile {
        /// What each sample value measures.
        #[prost(message, repeated, tag = "1")]
        pub sample_type: Vec<ValueType>,
        /// The samples.
        #[prost(message, repeated, tag = "2")]
        pub sample: Vec<Sample>,
        /// Code locations.
        #[prost(message, repeated, tag = "4")]
        pub location: Vec<Location>,
        /// Functions.
        #[prost(message, repeated, tag = "5")]
        pub function: Vec<Function>,
        /// Every string, referred to by index.
        #[prost(string, repeated, tag = "6")]
        pub string_table: Vec<String>,
    }

    /// A sample value's type and unit (string indices).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueType {
        /// e.g. `inuse_space`.
        #[prost(int64, tag = "1")]
        pub r#type: i64,
        /// e.g. `bytes`.
        #[prost(int64, tag = "2")]
        pub unit: i64,
    }

    /// One stack and its values.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        /// Locations, the allocation's first.
        #[prost(uint64, repeated, tag = "1")]
        pub location_id: Vec<u64>,
        /// One value per sample type.
        #[prost(int64, repeated, tag = "2")]
        pub value: Vec<i64>,
    }

    /// A code address and the functions (inlined ones first) it is in.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Location {
        /// Its id.
        #[prost(uint64, tag = "1")]
        pub id: u64,
        /// Its address.
        #[prost(uint64, tag = "3")]
        pub address: u64,
        /// Its functions.
        #[prost(message, repeated, tag = "4")]
        pub line: Vec<Line>,
    }

    /// A function at a location.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Line {
        /// The function's id.
        #[prost(uint64, tag = "1")]
        pub function_id: u64,
    }

    /// A function.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Function {
        /// Its id.
        #[prost(uint64, tag = "1")]
        pub id: u64,
        /// Its name (a string index).
        #[prost(int64, tag = "2")]
        pub name: i64,
    }
}

/// Frames of the global allocator (Rust's entry points, jemalloc's prefixed symbols): the first of
/// them from the root and everything below it are cut from every stack.
const ALLOCATOR: [&str; 4] = ["__rust_alloc", "__rust_realloc", "_rjem_", "tikv_jemallocator::"];
/// The same entry points where they were inlined: a release build's line tables name inlined
/// functions without their path.
const ALLOCATOR_INLINED: [&str; 3] = ["alloc", "realloc", "alloc_zeroed"];

/// Frames (after any leading `<`) of the standard library's allocation and containers, passed
/// over when naming the site that asked for the memory.
const MACHINERY: [&str; 5] = ["alloc::", "core::", "std::", "hashbrown::", "__rust"];
/// The same, as a release build's line tables name them once inlined (no path; generic
/// arguments after `<` are ignored), with closures' and async bodies' anonymous frames.
const MACHINERY_INLINED: [&str; 49] = [
    "alloc_impl_runtime",
    "allocate_zeroed",
    "do_alloc",
    "alloc_impl",
    "allocate",
    "allocate_in",
    "try_allocate_in",
    "grow_impl_runtime",
    "grow_impl",
    "grow",
    "grow_amortized",
    "grow_exact",
    "grow_one",
    "finish_grow",
    "shrink_impl_runtime",
    "shrink_impl",
    "shrink",
    "shrink_unchecked",
    "shrink_to_fit",
    "into_boxed_slice",
    "reserve",
    "reserve_exact",
    "reserve_rehash",
    "reserve_inner",
    "do_reserve_and_handle",
    "try_reserve",
    "with_capacity",
    "with_capacity_in",
    "new_uninit",
    "new_uninit_in",
    "box_new_uninit",
    "new",
    "default",
    "from",
    "into",
    "clone",
    "to_vec",
    "to_vec_in",
    "to_owned",
    "to_string",
    "push",
    "push_mut",
    "extend",
    "extend_trusted",
    "extend_desugared",
    "spec_extend",
    "from_iter",
    "collect",
    "insert",
];

fn is_allocator(frame: &str) -> bool {
    ALLOCATOR.iter().any(|a| frame.contains(a)) || ALLOCATOR_INLINED.contains(&frame)
}

fn is_site(frame: &str) -> bool {
    let name = frame.trim_start_matches('<');
    // The name before any generic arguments: `finish_grow<alloc::alloc::Global>` is `finish_grow`.
    let base = name.split('<').next().unwrap_or_default();
    !(base.is_empty()
        || base.starts_with('{')
        || MACHINERY.iter().any(|m| name.starts_with(m))
        || MACHINERY_INLINED.contains(&base))
}

/// Bytes in use by call stack (frames from the outermost caller to the allocation).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeapProfile {
    /// In-use bytes per stack.
    pub stacks: BTreeMap<Vec<String>, i64>,
}

/// Bytes in use at one allocation site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Site {
    /// The function that asked for the memory.
    pub function: String,
    /// Bytes.
    pub bytes: i64,
}

/// A service's heap over the profiling window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeapSummary {
    /// The service.
    pub service: String,
    /// Sampled bytes in use when the window opened.
    pub start_bytes: i64,
    /// Sampled bytes in use when it closed.
    pub end_bytes: i64,
    /// The sites holding the most at the end.
    pub top_sites: Vec<Site>,
    /// The sites that grew the most over the window.
    pub top_growth: Vec<Site>,
}

impl HeapProfile {
    /// Reads a gzipped (or plain) pprof protobuf.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let raw = if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut raw = Vec::new();
            flate2::read::GzDecoder::new(bytes).read_to_end(&mut raw).map_err(|e| format!("not gzip: {e}"))?;
            raw
        } else {
            bytes.to_vec()
        };
        let profile = <format::Profile as prost::Message>::decode(raw.as_slice())
            .map_err(|e| format!("not a pprof profile: {e}"))?;
        let string = |i: i64| profile.string_table.get(usize::try_from(i).unwrap_or(usize::MAX)).cloned();
        let functions: BTreeMap<u64, String> =
            profile.function.iter().map(|f| (f.id, string(f.name).unwrap_or_default())).collect();
        let locations: BTreeMap<u64, &format::Location> = profile.location.iter().map(|l| (l.id, l)).collect();
        let mut stacks = BTreeMap::new();
        for sample in &profile.sample {
            let Some(&bytes) = sample.value.first() else { continue };
            // pprof lists the allocation's location first and, within a location, inlined
            // functions first: reversed, the stack reads from the outermost caller.
            let mut frames = Vec::new();
            for id in sample.location_id.iter().rev() {
                let Some(location) = locations.get(id) else { continue };
                if location.line.is_empty() {
                    frames.push(format!("{:#x}", location.address));
                }
                for line in location.line.iter().rev() {
                    frames.push(functions.get(&line.function_id).cloned().unwrap_or_else(|| "?".into()));
                }
            }
            if let Some(entry) = frames.iter().position(|f| is_allocator(f)) {
                frames.truncate(entry);
            }
            *stacks.entry(frames).or_insert(0) += bytes;
        }
        Ok(Self { stacks })
    }

    /// All bytes in use.
    pub fn total(&self) -> i64 {
        self.stacks.values().sum()
    }

    /// What grew since `earlier`: each stack's bytes now minus then, where that is positive.
    pub fn growth_since(&self, earlier: &HeapProfile) -> HeapProfile {
        let stacks = self
            .stacks
            .iter()
            .map(|(stack, bytes)| (stack.clone(), bytes - earlier.stacks.get(stack).copied().unwrap_or(0)))
            .filter(|(_, grown)| *grown > 0)
            .collect();
        HeapProfile { stacks }
    }

    /// The `n` sites holding the most bytes, largest first.
    pub fn top_sites(&self, n: usize) -> Vec<Site> {
        let mut sites: BTreeMap<&str, i64> = BTreeMap::new();
        for (stack, bytes) in &self.stacks {
            let site = stack
                .iter()
                .rev()
                .find(|frame| is_site(frame))
                .or_else(|| stack.last())
                .map_or("(no frames)", String::as_str);
            *sites.entry(site).or_insert(0) += bytes;
        }
        let mut sites: Vec<Site> =
            sites.into_iter().map(|(function, bytes)| Site { function: function.to_owned(), bytes }).collect();
        sites.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.function.cmp(&b.function)));
        sites.truncate(n);
        sites
    }

    /// A flamegraph SVG of the bytes by stack, titled `title`.
    pub fn flamegraph(&self, title: &str) -> Result<Vec<u8>, String> {
        let lines: Vec<String> = self
            .stacks
            .iter()
            .filter(|(_, bytes)| **bytes > 0)
            .map(|(stack, bytes)| {
                format!("{} {bytes}", stack.iter().map(|f| f.replace(';', ":")).collect::<Vec<_>>().join(";"))
            })
            .collect();
        let mut options = inferno::flamegraph::Options::default();
        options.title = title.to_owned();
        options.count_name = "bytes".into();
        if lines.is_empty() {
            // inferno refuses an empty graph; say so in one.
            return Ok(format!(
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"600\" height=\"40\"><text x=\"10\" y=\"25\" \
                 font-family=\"sans-serif\" font-size=\"14\">{title}: no sampled bytes</text></svg>\n"
            )
            .into_bytes());
        }
        let mut svg = Vec::new();
        inferno::flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), &mut svg)
            .map_err(|e| format!("drawing the flamegraph: {e}"))?;
        Ok(svg)
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::format::*;
    use super::*;

    /// A profile with `stacks` (leaf-first function names, bytes).
    fn encoded(stacks: &[(&[&str], i64)]) -> Vec<u8> {
        let mut strings = vec![String::new(), "inuse_space".into(), "bytes".into()];
        let mut functions: Vec<Function> = Vec::new();
        let mut locations: Vec<Location> = Vec::new();
        let mut samples = Vec::new();
        for (frames, bytes) in stacks {
            let mut ids = Vec::new();
            for frame in *frames {
                let function = match functions.iter().find(|f| strings[f.name as usize] == *frame) {
                    Some(f) => f.id,
                    None => {
                        strings.push((*frame).to_owned());
                        let id = functions.len() as u64 + 1;
                        functions.push(Function { id, name: strings.len() as i64 - 1 });
                        id
                    }
                };
                let id = locations.len() as u64 + 1;
                locations.push(Location { id, address: 0x1000 + id, line: vec![Line { function_id: function }] });
                ids.push(id);
            }
            samples.push(Sample { location_id: ids, value: vec![*bytes] });
        }
        Profile {
            sample_type: vec![ValueType { r#type: 1, unit: 2 }],
            sample: samples,
            location: locations,
            function: functions,
            string_table: strings,
        }
        .encode_to_vec()
    }

    fn gzipped(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    const KEEP: &[&str] = &[
        "prof_backtrace_impl",
        "imalloc",
        "_rjem_je_malloc_default",
        "__rustc::__rust_alloc",
        "<alloc::raw_vec::RawVec<u8>>::finish_grow",
        "sut::events::grpc::keep",
        "main",
    ];
    const BUFFER: &[&str] =
        &["__rust_realloc", "<<hashbrown::raw::RawTable>::reserve", "sut::events::buffer::record", "main"];

    #[test]
    fn a_profile_reads_into_stacks_from_the_outermost_caller() {
        let heap = HeapProfile::decode(&gzipped(&encoded(&[(KEEP, 1000), (BUFFER, 300), (KEEP, 24)]))).unwrap();
        let keep: Vec<String> = KEEP[4..].iter().rev().map(|s| (*s).to_owned()).collect();
        assert_eq!(heap.stacks.get(&keep), Some(&1024), "the same stack twice is summed, the allocator's frames cut");
        assert_eq!(heap.total(), 1324);
        let plain = HeapProfile::decode(&encoded(&[(KEEP, 5)])).unwrap();
        assert_eq!(plain.total(), 5, "an ungzipped profile reads too");
        let error = HeapProfile::decode(b"\x1f\x8bnot really").unwrap_err();
        assert!(error.contains("not gzip"), "{error}");
    }

    #[test]
    fn sites_skip_the_allocator_and_growth_keeps_what_grew() {
        let start = HeapProfile::decode(&encoded(&[(KEEP, 100), (BUFFER, 500)])).unwrap();
        let end = HeapProfile::decode(&encoded(&[(KEEP, 900), (BUFFER, 400)])).unwrap();
        let sites = end.top_sites(5);
        assert_eq!(
            sites,
            vec![
                Site { function: "sut::events::grpc::keep".into(), bytes: 900 },
                Site { function: "sut::events::buffer::record".into(), bytes: 400 },
            ]
        );
        // A release build's inlined frames have no path: the site is the first with a name of
        // its own, past the allocation's steps and anonymous closures.
        const RELEASE: &[&str] = &[
            "prof_alloc_prep",
            "alloc",
            "alloc_impl_runtime",
            "new<sqlx_postgres::message::Bind>",
            "{closure#1}<sqlx_postgres::message::Bind>",
            "write_msg<sqlx_postgres::message::bind::Bind>",
            "main",
        ];
        let release = HeapProfile::decode(&encoded(&[(RELEASE, 64)])).unwrap();
        assert_eq!(release.top_sites(1)[0].function, "write_msg<sqlx_postgres::message::bind::Bind>");
        let growth = end.growth_since(&start);
        assert_eq!(growth.total(), 800, "only the kept events grew");
        assert_eq!(growth.top_sites(1)[0].function, "sut::events::grpc::keep");
        let svg = String::from_utf8(growth.flamegraph("growth").unwrap()).unwrap();
        assert!(svg.contains("<svg") && svg.contains("sut::events::grpc::keep"), "{svg}");
        let empty = String::from_utf8(HeapProfile::default().flamegraph("empty").unwrap()).unwrap();
        assert!(empty.contains("no sampled bytes"), "{empty}");
    }
}
