//! Reading a whole hash map a few thousand entries per system call (`BPF_MAP_LOOKUP_BATCH`,
//! Linux 5.6), where aya's iterator makes two calls per entry: at a million connections the
//! sweep took seconds a pass that way, holding the data plane's lock all along.

use std::{
    io,
    mem::size_of,
    os::fd::{AsRawFd as _, BorrowedFd},
};

use aya::Pod;

/// `BPF_MAP_LOOKUP_BATCH` (linux/bpf.h `enum bpf_cmd`).
const BPF_MAP_LOOKUP_BATCH: libc::c_int = 24;
/// Entries per call to begin with; doubled when one hash bucket holds more.
const BATCH: usize = 4096;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Calls `f` with every entry of the hash map behind `fd`, whose keys are `K` and values `V`
/// (not a per-CPU map). Entries added or removed meanwhile may or may not be seen.
///
/// # Errors
/// The kernel refuses the batch read.
pub fn for_each<K: Pod, V: Pod>(fd: BorrowedFd<'_>, mut f: impl FnMut(&K, &V)) -> io::Result<()> {
    let mut capacity = BATCH;
    // SAFETY: Pod types are plain data for which any bit pattern, zeroes included, is valid.
    let zeroed = || unsafe { std::mem::zeroed::<K>() };
    // SAFETY: as above.
    let zeroed_value = || unsafe { std::mem::zeroed::<V>() };
    let mut keys: Vec<K> = (0..capacity).map(|_| zeroed()).collect();
    let mut values: Vec<V> = (0..capacity).map(|_| zeroed_value()).collect();
    // The kernel's position in the table: a bucket number for hash maps.
    let (mut position, mut next) = (0u64, 0u64);
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                (&raw const position) as u64
            },
            out_batch: (&raw mut next) as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: u32::try_from(capacity).unwrap_or(u32::MAX),
            map_fd: u32::try_from(fd.as_raw_fd()).unwrap_or(u32::MAX),
            ..BatchAttr::default()
        };
        // SAFETY: `attr` describes buffers of `capacity` keys and values and two batch
        // positions, all alive and writable for the call.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &raw mut attr,
                size_of::<BatchAttr>(),
            )
        };
        let error = (rc < 0).then(io::Error::last_os_error);
        match error.as_ref().and_then(io::Error::raw_os_error) {
            // A bucket holds more entries than fit: the same position again, with more room.
            Some(libc::ENOSPC) => {
                capacity *= 2;
                keys.resize_with(capacity, zeroed);
                values.resize_with(capacity, zeroed_value);
                continue;
            }
            None | Some(libc::ENOENT) => {}
            Some(_) => return Err(error.unwrap_or_else(io::Error::last_os_error)),
        }
        let read = (attr.count as usize).min(capacity);
        for (k, v) in keys[..read].iter().zip(&values[..read]) {
            f(k, v);
        }
        // ENOENT: the walk reached the end (with its last entries, if any, just read).
        if error.is_some() {
            return Ok(());
        }
        first = false;
        position = next;
    }
}
