//! Prints what the live Windows source sees of one process (identity, notes, region counts,
//! modules, threads with start address, suspend count and context), for measuring what a
//! Windows (or Wine) host provides: `describe.exe <pid>` (`--all` for every process).

#[cfg(windows)]
fn main() {
    use preentry_memory::{ProcessMemory, RegionKind};
    let args: Vec<String> = std::env::args().skip(1).collect();
    let pids: Vec<u32> = if args.iter().any(|a| a == "--all") {
        match preentry_memory_windows::list_processes() {
            Ok(v) => v.into_iter().map(|p| p.pid).collect(),
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(2);
            }
        }
    } else {
        args.iter().filter_map(|a| a.parse().ok()).collect()
    };
    for pid in pids {
        let p = match preentry_memory_windows::open(pid) {
            Ok(p) => p,
            Err(e) => {
                println!("pid {pid}: error: {e}");
                continue;
            }
        };
        let id = p.identity();
        println!("== {} access {:#x}", p.describe(), p.access_mask());
        println!(
            "   image {:?} peb {:?} image base {:?} parent {:?} arch {:?}",
            id.image_path,
            id.peb_address.map(|a| format!("{a:#x}")),
            id.peb_image_base.map(|a| format!("{a:#x}")),
            id.parent_pid,
            id.arch
        );
        for n in &id.notes {
            println!("   note: {n}");
        }
        if let Some(rs) = p.regions().available() {
            let count = |k: RegionKind| rs.iter().filter(|r| r.kind == k).count();
            println!(
                "   regions {} (image {}, mapped {}, private {}); readable ranges {}",
                rs.len(),
                count(RegionKind::Image),
                count(RegionKind::Mapped),
                count(RegionKind::Private),
                p.memory_ranges().len()
            );
            let all = args.iter().any(|a| a == "--regions");
            for r in rs
                .iter()
                .filter(|r| all || r.kind == RegionKind::Image)
                .take(if all { usize::MAX } else { 3 })
            {
                println!(
                    "   region {:#x}+{:#x} {} {:?} {:?} alloc {:?} {:?}",
                    r.base,
                    r.size,
                    r.protection,
                    r.kind,
                    r.state,
                    r.allocation_base.map(|a| format!("{a:#x}")),
                    r.path
                );
            }
        }
        match p.modules() {
            preentry_memory::Availability::Available(m) => {
                println!("   modules {}", m.len());
                for m in m.iter().take(3) {
                    println!("   module {:#x}+{:#x} {}", m.base, m.size, m.path);
                }
            }
            preentry_memory::Availability::Unavailable { reason } => {
                println!("   modules unavailable: {reason}")
            }
        }
        let cc = p.module_cross_check();
        println!(
            "   cross-check compared={} images-not-in-ldr={} ldr-without-image={}",
            cc.compared,
            cc.images_not_in_loader_list.len(),
            cc.loader_entries_without_image.len()
        );
        for (base, path) in &cc.images_not_in_loader_list {
            println!("   image-not-in-ldr {base:#x} {path:?}");
        }
        for m in &cc.loader_entries_without_image {
            println!("   ldr-without-image {:#x} {}", m.base, m.path);
        }
        if let Some(ts) = p.threads().available() {
            for t in ts {
                println!(
                    "   thread {} teb {:?} start {:?} suspend {:?} rip {:?} ctx {:?}",
                    t.tid,
                    t.teb.map(|a| format!("{a:#x}")),
                    t.start_address.as_ref().map(|a| format!("{a:#x}")),
                    t.suspend_count,
                    t.instruction_pointer.as_ref().map(|a| format!("{a:#x}")),
                    t.context
                        .as_ref()
                        .map(|c| format!("rcx {:#x} rdx {:#x}", c.rcx, c.rdx)),
                );
            }
        }
    }
}

#[cfg(not(windows))]
fn main() {
    eprintln!("describe: Windows only (cross-build with --target x86_64-pc-windows-gnu)");
}
