//! The `wineserver -f -d2` trace: one line per server request or reply,
//! `TTTT: request( args )` / `TTTT: request() = STATUS { reply }`, where TTTT
//! is the Windows thread id (hex); lines without that prefix continue the
//! previous one (registry traces, long data).

use std::collections::HashSet;

/// The trace without the requests of the Windows processes whose Linux PIDs
/// are `unix_pids` (e.g. `minidump.exe`, whose memory reads of the victim
/// would otherwise fill the trace).
///
/// A process's threads are recognised by `init_first_thread( unix_pid=P`
/// and by `new_thread( process=ffffffff` replies of its threads; a thread
/// leaves the set at its `*killed*` line (Wine reuses thread ids).
pub fn without_processes(text: &str, unix_pids: &[u32]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut dropped: HashSet<&str> = HashSet::new();
    let mut pending_new_thread: HashSet<&str> = HashSet::new();
    let mut dropping = false;
    for line in text.split_inclusive('\n') {
        let tid = thread_prefix(line);
        if let Some(tid) = tid {
            let body = &line[6..];
            if let Some(args) = body.strip_prefix("init_first_thread( unix_pid=") {
                let pid: String = args.chars().take_while(char::is_ascii_digit).collect();
                if pid.parse::<u32>().is_ok_and(|p| unix_pids.contains(&p)) {
                    dropped.insert(tid);
                }
            }
            dropping = dropped.contains(tid);
            if dropping {
                if body.starts_with("new_thread( process=ffffffff") {
                    pending_new_thread.insert(tid);
                } else if pending_new_thread.remove(tid)
                    && let Some(new) = body
                        .strip_prefix("new_thread() = 0 { tid=")
                        .and_then(|r| r.get(..4))
                {
                    dropped.insert(new);
                }
                if body.starts_with("*killed*") {
                    dropped.remove(tid);
                }
            }
        }
        if !dropping {
            out.push_str(line);
        }
    }
    out
}

/// The 4-hex-digit thread prefix of a trace line, if any.
fn thread_prefix(line: &str) -> Option<&str> {
    let p = line.get(..4)?;
    (line.get(4..6) == Some(": ") && p.bytes().all(|b| b.is_ascii_hexdigit())).then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_only_the_given_process() {
        let t = "0024: new_process( flags=4 )\n\
                 0030: init_first_thread( unix_pid=77, unix_tid=77 )\n\
                 0030: init_first_thread() = 0 { pid=002c, tid=0030 }\n\
                 0030: new_thread( process=ffffffff, access=1 )\n\
                 0030: new_thread() = 0 { tid=0038, handle=0004 }\n\
                 0038: read_process_memory( handle=0004, addr=1000 )\n\
                 0038: read_process_memory() = 0 { data={4d,5a,\n\
                 \x20 00,00} }\n\
                 0024: write_process_memory( handle=0038, addr=10 )\n\
                 0038: *killed* exit_code=0\n\
                 0030: *killed* exit_code=0\n\
                 0030: init_thread( unix_tid=99 )\n";
        let f = without_processes(t, &[77]);
        assert_eq!(
            f,
            "0024: new_process( flags=4 )\n\
             0024: write_process_memory( handle=0038, addr=10 )\n\
             0030: init_thread( unix_tid=99 )\n"
        );
        assert_eq!(without_processes(t, &[5]), t);
    }
}
