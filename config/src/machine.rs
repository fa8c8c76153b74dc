//! What the machine offers, for checking settings against it: the CPUs this process may run
//! on.

use std::collections::BTreeSet;

/// Most worker threads accepted whatever the machine (more is a typo, not a plan).
pub(crate) const MAX_WORKERS: usize = 1024;

/// The CPU ids this process may run on (its affinity mask), or `None` if it cannot be read.
pub(crate) fn allowed_cpus() -> Option<BTreeSet<usize>> {
    // SAFETY: `set` is a plain bit set that sched_getaffinity fills; the size passed is its
    // own, and CPU_ISSET reads only within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
        Some((0..max).filter(|&cpu| libc::CPU_ISSET(cpu, &set)).collect())
    }
}

/// A list of CPU ids in the compact form `0-3,6`.
pub(crate) fn cpu_list(cpus: &BTreeSet<usize>) -> String {
    let mut out = String::new();
    let mut iter = cpus.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        if !out.is_empty() {
            out.push(',');
        }
        if end == start {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}-{end}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_machine() {
        let cpus = allowed_cpus().expect("affinity");
        assert!(!cpus.is_empty());
    }

    #[test]
    fn compact_lists() {
        let set = |v: &[usize]| v.iter().copied().collect::<BTreeSet<_>>();
        assert_eq!(cpu_list(&set(&[0, 1, 2, 3, 6])), "0-3,6");
        assert_eq!(cpu_list(&set(&[1])), "1");
        assert_eq!(cpu_list(&set(&[0, 2, 3])), "0,2-3");
        assert_eq!(cpu_list(&set(&[])), "");
    }
}
