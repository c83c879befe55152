//! The global allocator: [`ferrite::heap::Arena`] over the `.heap` section of
//! ferrite's RAM (linker.ld), below the EBDA and clear of the stack and of
//! `.noinit`. Only the lists QEMU may make arbitrarily long use it
//! (`ferrite::heap`); an ordinary VM allocates nothing.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;

use ferrite::heap::{Arena, HEAP_SIZE};

#[global_allocator]
static ALLOCATOR: Arena = Arena::new(memory);

struct Memory(UnsafeCell<[MaybeUninit<u8>; HEAP_SIZE]>);
// SAFETY: only `init` touches it, once, on the one CPU ferrite runs on; the
// allocator owns it from then on.
unsafe impl Sync for Memory {}

/// Not cleared at start-up: the allocator writes its own bookkeeping.
#[unsafe(link_section = ".heap")]
static MEMORY: Memory = Memory(UnsafeCell::new([MaybeUninit::uninit(); HEAP_SIZE]));

/// The heap's memory, for the allocator, which asks once (at the first
/// allocation, which an ordinary VM never makes).
fn memory() -> &'static mut [MaybeUninit<u8>] {
    // SAFETY: only the allocator calls this, and only once (it keeps the
    // slice), so this is the only reference to MEMORY there will ever be.
    unsafe { &mut *MEMORY.0.get() }
}
