//! Settings for mimalloc, the allocator of the `pareil` binary and the
//! encoder bench (so the two measure the same thing). A library user with
//! another allocator is not affected: mimalloc ignores settings it is not
//! serving.
//!
//! Why: a batch's activations are tens of MB per layer, allocated and freed
//! every product. mimalloc by default *decommits* freed memory
//! (`MADV_DONTNEED`) a moment later, so the next layer's buffer faults in
//! fresh pages the kernel must zero first: 6–9 k page faults and 6 % of the
//! time in `clear_page` on 500 paragraphs. Resetting instead of
//! decommitting (`MADV_FREE`) leaves the pages in place unless the kernel
//! needs them: 3 k faults, and 5–7 % less CPU time for the same vectors
//! (BENCHMARKS.md). Memory is still returned when the system runs short.

/// `mi_option_purge_decommits` in mimalloc's `mi_option_e` (the same in
/// its v2 and v3); `libmimalloc-sys` leaves the constant out on purpose.
const PURGE_DECOMMITS: libmimalloc_sys::mi_option_t = 5;

/// Makes mimalloc reset freed memory instead of decommitting it. Call at
/// the start of `main`, before any thread exists (mimalloc's options are
/// not thread safe), and only where the model embeds in bulk: reset pages
/// stay in the process's resident set until the kernel takes them, so a
/// command that frees much else looks, and is accounted, larger (`dups` at
/// 100k synthetic passages: peak RSS 587 → 642 MB, findings identical).
pub fn keep_freed_pages() {
    // SAFETY: setting a documented option to a documented value; no other
    // thread runs yet (the caller's contract).
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DECOMMITS, 0) };
}
