//! ferrite's heap: for what QEMU hands over without a bound (the e820 map, the
//! fw_cfg directory, the table-loader script, PCI's functions and BARs), and
//! for nothing else.
//!
//! The heap is `linked_list_allocator` over a region of ferrite's own RAM
//! (`.heap` in linker.ld), free RAM for Linux once it runs, like the rest of
//! that RAM: nothing on the heap outlives the handoff. A small VM never
//! touches it: each of those lists keeps a fixed inline array ([`SpillVec`])
//! and moves to the heap only when QEMU hands over more than that holds.
//!
//! Every allocation is fallible ([`OutOfHeap`], a distinct error status):
//! nothing here calls an infallible `Vec` growth, so an exhausted heap is one
//! error line, never Rust's allocation-failure panic.

use alloc::vec::Vec;
use core::alloc::{GlobalAlloc, Layout};
use core::mem::{MaybeUninit, size_of};
use core::ptr::{self, NonNull};

use linked_list_allocator::Heap;

/// The heap's size. Room for a fw_cfg directory of 4,000 files, or an e820
/// map or PCI list of several thousand entries, with the copies growth makes.
pub const HEAP_SIZE: usize = 256 * 1024;

/// A request the heap cannot satisfy: `bytes` asked for in all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfHeap {
    pub bytes: usize,
}

/// The global allocator: `linked_list_allocator`'s first-fit heap behind a
/// spin lock (ferrite runs on one CPU; the lock only makes the static `Sync`),
/// set up at the first allocation, so that a boot that allocates nothing
/// runs none of its code.
pub struct Arena {
    heap: spin::Mutex<Heap>,
    /// The heap's memory, taken once, at the first allocation.
    memory: fn() -> &'static mut [MaybeUninit<u8>],
}

impl Arena {
    /// An allocator over what `memory` returns; it is called once.
    pub const fn new(memory: fn() -> &'static mut [MaybeUninit<u8>]) -> Arena {
        Arena {
            heap: spin::Mutex::new(Heap::empty()),
            memory,
        }
    }

    /// Bytes in use.
    pub fn used(&self) -> usize {
        self.heap.lock().used()
    }
}

// SAFETY: `allocate_first_fit` returns blocks of at least `layout.size()` bytes
// at `layout.align()`, disjoint from every live block, or fails (null);
// `deallocate` gets back exactly what `alloc` handed out, with its layout.
unsafe impl GlobalAlloc for Arena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let mut heap = self.heap.lock();
        if heap.size() == 0 {
            heap.init_from_slice((self.memory)());
        }
        heap.allocate_first_fit(layout)
            .map_or(ptr::null_mut(), NonNull::as_ptr)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(p) = NonNull::new(ptr) {
            // SAFETY: the caller passes a block `alloc` returned, with its layout.
            unsafe { self.heap.lock().deallocate(p, layout) }
        }
    }
}

/// Makes room in `v` for `additional` more elements, or fails: beyond
/// [`HEAP_SIZE`] at once (the same answer on the host as in the firmware), or
/// when the allocator has no block that large.
pub fn reserve<T>(v: &mut Vec<T>, additional: usize) -> Result<(), OutOfHeap> {
    let fail = OutOfHeap {
        bytes: v
            .len()
            .saturating_add(additional)
            .saturating_mul(size_of::<T>()),
    };
    if fail.bytes > HEAP_SIZE {
        return Err(fail);
    }
    v.try_reserve(additional).map_err(|_| fail)
}

/// An empty `Vec` with room for `n` elements.
pub fn with_capacity<T>(n: usize) -> Result<Vec<T>, OutOfHeap> {
    let mut v = Vec::new();
    reserve(&mut v, n)?;
    Ok(v)
}

/// Appends `x` to `v`, growing it on the heap, or fails.
pub fn push<T>(v: &mut Vec<T>, x: T) -> Result<(), OutOfHeap> {
    if v.len() == v.capacity() {
        reserve(v, v.len().max(4))?;
    }
    v.push(x);
    Ok(())
}

/// A list that lives in a fixed array of `N` until it needs more, and then,
/// all of it, on the heap: a small VM costs no allocation (nor the
/// allocator's code, translated once under TCG), a large one is taken whole.
///
/// A `Vec` taken apart: the heap block's pointer is null while the list is
/// inline, so an empty list is all zeros (a `static` of one stays in `.bss`,
/// out of the ROM). Under TCG every branch ends a translated block, so the
/// accessors have none of their own: finding the elements is a select and the
/// capacity a sum, which leaves `push` one comparison and indexing its bounds
/// check.
pub struct SpillVec<T: Copy, const N: usize> {
    inline: [T; N],
    len: usize,
    /// The heap block holding every element once the list has outgrown
    /// `inline` (allocated as a `Vec<T>` of capacity `N + extra`), or null.
    heap: *mut T,
    /// The capacity beyond `N`: 0 while inline.
    extra: usize,
}

// SAFETY: a SpillVec owns its heap block as a Vec owns its buffer; nothing
// else points into it.
unsafe impl<T: Copy + Send, const N: usize> Send for SpillVec<T, N> {}
// SAFETY: as above; shared references only read.
unsafe impl<T: Copy + Sync, const N: usize> Sync for SpillVec<T, N> {}

impl<T: Copy, const N: usize> SpillVec<T, N> {
    /// An empty list; `fill` only initialises the inline array.
    pub const fn new(fill: T) -> Self {
        SpillVec {
            inline: [fill; N],
            len: 0,
            heap: ptr::null_mut(),
            extra: 0,
        }
    }

    fn capacity(&self) -> usize {
        N + self.extra
    }

    // `select_unpredictable`: LLVM would otherwise turn the select back into a
    // branch inside loops.
    fn base(&self) -> *const T {
        core::hint::select_unpredictable(self.heap.is_null(), self.inline.as_ptr(), self.heap)
    }

    fn base_mut(&mut self) -> *mut T {
        let inline = self.inline.as_mut_ptr();
        core::hint::select_unpredictable(self.heap.is_null(), inline, self.heap)
    }

    pub fn as_slice(&self) -> &[T] {
        // SAFETY: the first `len` elements of the storage in use are
        // initialised (the inline array wholly, the heap block by `push`).
        unsafe { core::slice::from_raw_parts(self.base(), self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: as in as_slice, and `&mut self` makes the borrow unique.
        unsafe { core::slice::from_raw_parts_mut(self.base_mut(), self.len) }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether the list lives on the heap.
    pub fn on_heap(&self) -> bool {
        !self.heap.is_null()
    }

    pub fn push(&mut self, x: T) -> Result<(), OutOfHeap> {
        if self.len == self.capacity() {
            return self.grow(x);
        }
        // SAFETY: `len` < the capacity of the storage in use.
        unsafe { self.base_mut().add(self.len).write(x) };
        self.len += 1;
        Ok(())
    }

    /// Appends every element of `s`: one copy while the list stays inline,
    /// else one `push` each (under TCG a loop of pushes is blocks of its own
    /// and a call per element).
    pub fn extend_from_slice(&mut self, s: &[T]) -> Result<(), OutOfHeap> {
        let len = self.len;
        let end = len.saturating_add(s.len());
        // `&`: one test for both (TCG).
        if self.heap.is_null() & (end <= N) {
            self.inline[len..end].copy_from_slice(s);
            self.len = end;
            return Ok(());
        }
        for &x in s {
            self.push(x)?;
        }
        Ok(())
    }

    /// Lengthens the list by `n` elements of unspecified value, for a caller
    /// that writes them before it reads them: while the list stays inline,
    /// what its array holds already (one test, no write); else `fill`,
    /// pushed.
    pub fn extend_unwritten(&mut self, n: usize, fill: T) -> Result<(), OutOfHeap> {
        let end = self.len.saturating_add(n);
        // `&`: one test for both (TCG).
        if self.heap.is_null() & (end <= N) {
            self.len = end;
            return Ok(());
        }
        for _ in 0..n {
            self.push(fill)?;
        }
        Ok(())
    }

    /// The storage is full: everything moves to a heap block twice as large.
    #[cold]
    #[inline(never)]
    fn grow(&mut self, x: T) -> Result<(), OutOfHeap> {
        let mut v: Vec<T> = with_capacity(2 * self.capacity().max(4))?;
        v.extend_from_slice(self.as_slice());
        v.push(x);
        self.free();
        let mut v = core::mem::ManuallyDrop::new(v);
        self.heap = v.as_mut_ptr();
        self.extra = v.capacity() - N;
        self.len = v.len();
        Ok(())
    }

    /// Gives the heap block back, if any (the list is then inline and empty).
    fn free(&mut self) {
        if !self.heap.is_null() {
            // SAFETY: `heap` and `cap` are those of a Vec<T> taken apart in
            // `grow`; length 0, as T is Copy and needs no drop.
            drop(unsafe { Vec::from_raw_parts(self.heap, 0, self.capacity()) });
            self.heap = ptr::null_mut();
            self.extra = 0;
            self.len = 0;
        }
    }

    /// Keeps the first `n` elements.
    pub fn truncate(&mut self, n: usize) {
        self.len = self.len.min(n);
    }

    /// Removes element `i`, moving the last one into its place.
    pub fn swap_remove(&mut self, i: usize) -> T {
        let s = self.as_mut_slice();
        let x = s[i];
        s[i] = s[s.len() - 1];
        self.len -= 1;
        x
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }
}

impl<T: Copy, const N: usize> Drop for SpillVec<T, N> {
    fn drop(&mut self) {
        self.free();
    }
}

impl<T: Copy, const N: usize> core::ops::Index<usize> for SpillVec<T, N> {
    type Output = T;
    fn index(&self, i: usize) -> &T {
        &self.as_slice()[i]
    }
}

impl<T: Copy, const N: usize> core::ops::IndexMut<usize> for SpillVec<T, N> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.as_mut_slice()[i]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_unwritten_lengthens_inline_then_fills_on_the_heap() {
        let mut v: SpillVec<u32, 4> = SpillVec::new(7);
        v.push(1).unwrap();
        v.extend_unwritten(3, 9).unwrap();
        // Inline: what the array held.
        assert!(!v.on_heap());
        assert_eq!(v.as_slice(), [1, 7, 7, 7]);
        // Beyond the array: the whole list moves, the new ones `fill`.
        v.extend_unwritten(3, 9).unwrap();
        assert!(v.on_heap());
        assert_eq!(v.as_slice(), [1, 7, 7, 7, 9, 9, 9]);
        v.extend_unwritten(2, 5).unwrap();
        assert_eq!(v.as_slice(), [1, 7, 7, 7, 9, 9, 9, 5, 5]);
    }

    #[test]
    fn spill_vec_stays_inline_then_moves_whole_to_the_heap() {
        let mut v: SpillVec<u32, 4> = SpillVec::new(0);
        for i in 0..4 {
            v.push(i).unwrap();
        }
        assert!(!v.on_heap());
        assert_eq!(v.as_slice(), [0, 1, 2, 3]);
        v.push(4).unwrap();
        assert!(v.on_heap());
        for i in 5..100 {
            v.push(i).unwrap();
        }
        assert_eq!(v.len(), 100);
        assert!(v.as_slice().iter().copied().eq(0..100));
        assert_eq!(v.swap_remove(0), 0);
        assert_eq!(v.as_slice()[0], 99);
        v.truncate(3);
        assert_eq!(v.as_slice(), [99, 1, 2]);
        v.clear();
        assert!(v.is_empty());
        // inline swap_remove and truncate
        let mut w: SpillVec<u8, 8> = SpillVec::new(0);
        for i in 0..5 {
            w.push(i).unwrap();
        }
        assert_eq!(w.swap_remove(1), 1);
        assert_eq!(w.as_slice(), [0, 4, 2, 3]);
        w.as_mut_slice()[0] = 7;
        w.truncate(2);
        assert_eq!(w.as_slice(), [7, 4]);
    }

    #[test]
    fn extend_from_slice_copies_inline_and_spills_whole() {
        let mut v: SpillVec<u32, 4> = SpillVec::new(0);
        v.extend_from_slice(&[1, 2]).unwrap();
        v.extend_from_slice(&[3, 4]).unwrap();
        assert!(!v.on_heap());
        assert_eq!(v.as_slice(), [1, 2, 3, 4]);
        // beyond the inline array: to the heap, every element kept in order
        v.extend_from_slice(&[5, 6, 7]).unwrap();
        assert!(v.on_heap());
        assert_eq!(v.as_slice(), [1, 2, 3, 4, 5, 6, 7]);
        // on the heap: pushed one by one
        v.extend_from_slice(&[8]).unwrap();
        v.extend_from_slice(&[]).unwrap();
        assert_eq!(v.len(), 8);
        assert_eq!(v.as_slice()[7], 8);
        let mut w: SpillVec<u8, 2> = SpillVec::new(0);
        w.extend_from_slice(&[9, 9, 9]).unwrap();
        assert_eq!(w.as_slice(), [9, 9, 9]);
    }

    #[test]
    fn requests_beyond_the_heap_fail_cleanly() {
        let mut v: Vec<u64> = Vec::new();
        let n = HEAP_SIZE / 8 + 1;
        assert_eq!(reserve(&mut v, n), Err(OutOfHeap { bytes: n * 8 }));
        assert_eq!(
            with_capacity::<u8>(usize::MAX).err(),
            Some(OutOfHeap { bytes: usize::MAX })
        );
        // a list that outgrows the heap stops with an error, keeping its elements
        let mut s: SpillVec<[u8; 1024], 8> = SpillVec::new([0; 1024]);
        let err = (0..HEAP_SIZE / 1024 + 1)
            .map(|_| s.push([1; 1024]))
            .find_map(Result::err);
        assert!(err.is_some());
        assert!(s.len() <= HEAP_SIZE / 1024);
        assert!(s.as_slice().iter().all(|b| b[0] == 1));
    }

    #[test]
    fn the_arena_allocates_frees_and_reports_exhaustion_as_null() {
        fn memory() -> &'static mut [MaybeUninit<u8>] {
            std::boxed::Box::leak(std::vec![MaybeUninit::uninit(); 4096].into_boxed_slice())
        }
        let arena = Arena::new(memory);
        assert_eq!(arena.used(), 0);
        let layout = Layout::from_size_align(1024, 16).unwrap();
        // SAFETY: the arena owns its memory; every block is freed with its layout.
        unsafe {
            let a = arena.alloc(layout);
            assert!(!a.is_null() && (a as usize).is_multiple_of(16));
            let b = arena.alloc(layout);
            assert!(!b.is_null() && b != a);
            assert!(
                arena
                    .alloc(Layout::from_size_align(4096, 8).unwrap())
                    .is_null()
            );
            assert!(arena.used() >= 2048);
            arena.dealloc(a, layout);
            arena.dealloc(b, layout);
            assert_eq!(arena.used(), 0);
            let c = arena.alloc(Layout::from_size_align(3072, 8).unwrap());
            assert!(!c.is_null());
            arena.dealloc(c, Layout::from_size_align(3072, 8).unwrap());
        }
    }
}
