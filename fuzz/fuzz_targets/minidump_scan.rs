//! Fuzz the minidump source and the scan over it: the input is a minidump (seed with
//! `../shared/corpus/minidump/**` and the gunzipped `samples/*/victim.dmp.gz`). Every fact the
//! source offers is read and the whole scan runs; nothing may panic, and a bad dump is an
//! error, not a crash.
#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use preentry_memory::dump::MinidumpSource;
use preentry_memory::{MemoryReader, ProcessMemory};
use preentry_scan::{DiskResolver, ScanOptions, scan_process};

fuzz_target!(|data: &[u8]| {
    let Ok(src) = MinidumpSource::from_bytes(PathBuf::from("fuzz.dmp"), data.to_vec()) else {
        return;
    };
    let _ = src.regions();
    let _ = src.threads();
    let _ = src.modules();
    if let Some(base) = src.identity().peb_image_base {
        let mut page = [0u8; 0x1000];
        let _ = src.read(base, &mut page);
    }
    let options = ScanOptions {
        resolver: DiskResolver {
            disk_root: None,
            wine_prefix: None,
        },
    };
    let _ = scan_process(&src, &options);
});
