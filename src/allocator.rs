//! Two settings of glibc's allocator that keep the server's resident memory
//! at what it uses (no-ops elsewhere).

/// glibc raises its mmap threshold to the size of the largest mapped block
/// freed (up to 32 MiB): after the first argon2id hash (7 MiB) every later
/// hash's memory would come from the heap and stay resident, tripling the RSS
/// of a busy server. A fixed threshold turns that adjustment off, so large
/// blocks are mapped and returned to the system when freed. Call it first
/// thing.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn keep_large_allocations_mapped() {
    // SAFETY: mallopt only sets an allocator parameter; glibc's own default
    // for this one is 128 KiB.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// Hands back to the system the pages that start-up freed: the OpenAPI
/// document's tree once it is JSON, the migrations' statements, the
/// descriptor sets' decoding. glibc keeps freed small blocks resident for
/// reuse, and returns only the top of a heap by itself; this releases every
/// whole free page of every arena, once, when the server is about to serve.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn return_freed_memory() {
    // SAFETY: malloc_trim only releases free pages of the allocator's own
    // arenas (madvise MADV_DONTNEED); no block in use moves or changes.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn keep_large_allocations_mapped() {}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn return_freed_memory() {}
