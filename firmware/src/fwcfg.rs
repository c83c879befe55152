//! QEMU's firmware configuration device (docs/specs/fw_cfg.rst): the kernel, the
//! initrd, the command line, the memory map and the ACPI tables all come from it.
//!
//! Transfers use the DMA interface, one request per blob straight to its final
//! address; without DMA (`-global fw_cfg_io.dma_enabled=off`) they fall back to
//! `rep insb` on the data port.

use core::mem::{MaybeUninit, size_of};

use alloc::vec::Vec;
use bitflags::bitflags;

use crate::board::GuestMemory;
use crate::error::Error;
use crate::heap;
use crate::io::PortIo;

mod dma;

/// `FW_CFG_MAX_FILE_PATH`: a file name with its NUL padding.
pub const FILE_NAME_LEN: usize = 56;

pub const PORT_SELECTOR: u16 = 0x510;
pub const PORT_DATA: u16 = 0x511;
/// DMA address register: high 32 bits at 0x514, low 32 bits (the trigger) at 0x518.
pub const PORT_DMA_HIGH: u16 = 0x514;
pub const PORT_DMA_LOW: u16 = 0x518;

/// A selector QEMU gives no item: the last of the 14-bit key space, a file
/// slot only with some 16,000 files. A DMA read of it fills the destination
/// with zeros (QEMU's `docs/specs/fw_cfg.rst`: bytes past the end of an
/// item, or of no item, read as zero; `fw_cfg_dma_transfer`), which is how
/// ferrite clears memory ([`FwCfg::zero_guest`], and `.bss` in boot.s).
pub const ABSENT: u16 = 0x3FFF;

/// The control word, big-endian as the descriptor holds it, of a DMA read
/// of [`ABSENT`]: a request that zero-fills its destination (boot.s).
pub const ZERO_FILL_CONTROL_BE: u32 = read(ABSENT).swap_bytes();

/// "QEMU CFG" as read from the DMA address register (`FW_CFG_DMA_SIGNATURE`).
const DMA_SIGNATURE: u64 = 0x5145_4D55_2043_4647;

/// Well-known items (include/standard-headers/linux/qemu_fw_cfg.h).
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Item {
    Signature = 0x00,
    Id = 0x01,
    RamSize = 0x03,
    NbCpus = 0x05,
    KernelAddr = 0x07,
    KernelSize = 0x08,
    InitrdAddr = 0x0A,
    InitrdSize = 0x0B,
    KernelEntry = 0x10,
    KernelData = 0x11,
    InitrdData = 0x12,
    CmdlineSize = 0x14,
    CmdlineData = 0x15,
    SetupSize = 0x17,
    SetupData = 0x18,
    FileDir = 0x19,
    /// `FW_CFG_IRQ0_OVERRIDE` (`FW_CFG_ARCH_LOCAL + 2`, hw/i386/fw_cfg.c): LE32,
    /// non-zero when the PIT is wired to I/O APIC pin 2. A numbered item, not a
    /// file: SeaBIOS's `qemu_cfg_legacy()` only presents it under the name
    /// "etc/irq0-override".
    Irq0Override = 0x8002,
}

bitflags! {
    /// DMA `control` bits.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct DmaControl: u32 {
        const ERROR = 1 << 0;
        const READ = 1 << 1;
        const SKIP = 1 << 2;
        const SELECT = 1 << 3;
        const WRITE = 1 << 4;
    }
}

/// One file directory entry as fw_cfg stores it (`FWCfgFile`), 64 bytes.
#[repr(C)]
#[derive(Clone, Copy)]
struct RawFile {
    size: u32,   // 0x00, big-endian
    select: u16, // 0x04, big-endian
    _reserved: u16,
    name: [u8; 56], // 0x08, NUL-terminated
}
const _: () = assert!(size_of::<RawFile>() == 64);

/// Directory entries kept inline (QEMU's default is 32 slots); a larger
/// directory is read whole into the heap.
pub const INLINE_FILES: usize = 96;

/// The directory item as it starts: the count, then the entries, read with
/// DMA in one request (a directory shorter than the buffer reads as zeros
/// after its end).
#[repr(C)]
struct Directory {
    count: [u8; 4], // big-endian
    files: [MaybeUninit<RawFile>; INLINE_FILES],
}
const _: () = assert!(size_of::<Directory>() == 4 + INLINE_FILES * size_of::<RawFile>());
/// The most files a directory can list: selectors are 14 bits
/// (`FW_CFG_ENTRY_MASK`) and files start at `FW_CFG_FILE_FIRST` (0x20).
pub const MAX_FILES: usize = 0x4000 - 0x20;

/// A file in the directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct File {
    pub select: u16,
    pub size: u32,
}

/// Transfer counters, for the bench's cost breakdown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub dma_requests: u32,
    pub pio_bytes: u64,
}

pub struct FwCfg<IO: PortIo> {
    io: IO,
    dma: bool,
    dir: Directory,
    nfiles: usize,
    /// The whole directory when it has more than [`INLINE_FILES`] entries:
    /// on the heap for good (ferrite never gives it back; nothing to drop).
    spilled: &'static [RawFile],
    /// The selector of the first transfer that failed, if one has.
    failed: Option<u16>,
    pub stats: Stats,
}

impl<IO: PortIo> FwCfg<IO> {
    /// Finds the device, its features and its file directory.
    pub fn probe(io: IO) -> Result<FwCfg<IO>, Error> {
        let mut fw = FwCfg::unprobed(io);
        fw.probe_device()?;
        fw.check()?;
        Ok(fw)
    }

    /// The first transfer that failed, as an error.
    ///
    /// A transfer reports no failure of its own: the device records it and
    /// the boot checks once, before anything is handed over ([`verdict`]).
    /// Under TCG each test of a transfer's outcome was a translation block,
    /// a dozen in a boot, and a failed transfer is not a case the boot can
    /// work around. Until then the boot goes on with what the transfer left:
    /// a buffer of ferrite's keeps what it held (the reads that return
    /// bytes, [`FwCfg::read_prefix`] and [`FwCfg::read_file`], test the
    /// outcome, as their buffers start uninitialised), guest memory holds
    /// whatever it held; both are data the boot already checks as it would
    /// anything QEMU hands over.
    ///
    /// [`verdict`]: FwCfg::verdict
    pub fn check(&self) -> Result<(), Error> {
        match self.failed {
            Some(selector) => Err(Error::FwCfgDma { selector }),
            None => Ok(()),
        }
    }

    /// `result`, worked out from this device's transfers, unless one of them
    /// failed: then that failure, the cause of whatever followed from it.
    pub fn verdict<T>(&self, result: Result<T, Error>) -> Result<T, Error> {
        self.check()?;
        result
    }

    /// Records a failed transfer (the first one is kept).
    #[cold]
    #[inline(never)]
    fn fail(&mut self, selector: u16) {
        self.failed = self.failed.or(Some(selector));
    }

    /// A device not probed yet: [`probe_device`](Self::probe_device) comes
    /// next. The two steps let the boot probe it in place (returned in a
    /// `Result`, its kilobytes of directory were copied twice, a
    /// `rep movs` each: translation blocks of their own under TCG).
    pub fn unprobed(io: IO) -> FwCfg<IO> {
        FwCfg {
            io,
            dma: false,
            dir: Directory {
                count: [0; 4],
                files: [MaybeUninit::uninit(); INLINE_FILES],
            },
            nfiles: 0,
            spilled: &[],
            failed: None,
            stats: Stats::default(),
        }
    }

    /// Finds the device, whether it has DMA, and its file directory, for a
    /// [`unprobed`](Self::unprobed) one.
    ///
    /// The DMA register reads back "QEMU CFG" exactly when the device has
    /// the DMA interface (QEMU maps the register only then, and sets
    /// `FW_CFG_ID`'s DMA bit only then: `fw_cfg_io_realize`,
    /// `fw_cfg_common_realize`). So `FW_CFG_ID` is not read: its one
    /// feature that matters is known, and the read cost an exit.
    pub fn probe_device(&mut self) -> Result<(), Error> {
        let fw = self;
        // Two port reads instead of a selector write and four data reads.
        let sig = ((fw.io.inl(PORT_DMA_HIGH).swap_bytes() as u64) << 32)
            | fw.io.inl(PORT_DMA_LOW).swap_bytes() as u64;
        fw.dma = sig == DMA_SIGNATURE;
        if !fw.dma {
            let mut magic = [0u8; 4];
            fw.read_into(Item::Signature as u16, &mut magic);
            if &magic != b"QEMU" {
                return Err(Error::NoFwCfg);
            }
        }
        fw.read_directory()
    }

    pub fn has_dma(&self) -> bool {
        self.dma
    }

    /// With DMA, the count and the entries that fit inline come in one
    /// request; by port I/O, the count first and then exactly its entries.
    fn read_directory(&mut self) -> Result<(), Error> {
        let len = if self.dma { size_of::<Directory>() } else { 4 };
        // SAFETY: `len` bytes of our own directory buffer, only written, by the
        // device (DMA) or by `rep insb`, never read before the transfer fills
        // them; any bit pattern is a valid RawFile afterwards.
        let bytes =
            unsafe { core::slice::from_raw_parts_mut((&raw mut self.dir).cast::<u8>(), len) };
        self.transfer_into(read(Item::FileDir as u16), bytes);
        // After a failed transfer (recorded), no files: entries it did not
        // write are never read. (A select, not a branch.)
        let count = core::hint::select_unpredictable(
            self.failed.is_none(),
            u32::from_be_bytes(self.dir.count) as usize,
            0,
        );
        // One test for the usual case, DMA and a directory that fits inline
        // (as two conditions joined with `|`, LLVM made it two branches,
        // a translation block each under TCG). By port I/O only the count
        // was read: any entries are still to come.
        let read_inline = if self.dma { INLINE_FILES } else { 0 };
        if count > read_inline {
            return self.read_rest_of_directory(count);
        }
        self.nfiles = count;
        Ok(())
    }

    /// [`read_directory`](Self::read_directory) after the count for a
    /// directory too large to be inline, or without DMA.
    #[cold]
    #[inline(never)]
    fn read_rest_of_directory(&mut self, count: usize) -> Result<(), Error> {
        if count > INLINE_FILES {
            return self.read_large_directory(count);
        }
        // SAFETY: the first `count` entries are our own memory; the slice over
        // them (not yet initialised) is only written by `rep insb`, never read
        // before the transfer fills it; any bit pattern is a valid RawFile
        // afterwards.
        let bytes = unsafe {
            core::slice::from_raw_parts_mut(
                self.dir.files.as_mut_ptr().cast::<u8>(),
                count * size_of::<RawFile>(),
            )
        };
        // Continue the same item: the directory entries follow the count
        // (by port I/O, which does not fail).
        self.transfer_into(read_on(Item::FileDir as u16), bytes);
        self.nfiles = count;
        Ok(())
    }

    /// A directory of more than [`INLINE_FILES`] files, read whole into the heap.
    #[cold]
    #[inline(never)]
    fn read_large_directory(&mut self, count: usize) -> Result<(), Error> {
        if count > MAX_FILES {
            return Err(Error::BadFileDirectory { count });
        }
        let mut files: Vec<RawFile> =
            heap::with_capacity(count).map_err(Error::out_of_heap("the fw_cfg file directory"))?;
        let spare = &mut files.spare_capacity_mut()[..count];
        // SAFETY: `spare` is the Vec's own, unused capacity of `count` entries,
        // only written by the transfer (never read before it); any bit pattern
        // is a valid RawFile.
        let bytes = unsafe {
            core::slice::from_raw_parts_mut(
                spare.as_mut_ptr().cast::<u8>(),
                count * size_of::<RawFile>(),
            )
        };
        // From the start of the item again (DMA read past the count): the
        // count once more, then the entries.
        let mut again = [0u8; 4];
        self.read_into(Item::FileDir as u16, &mut again);
        self.transfer_into(read_on(Item::FileDir as u16), bytes);
        // Entries a failed transfer did not write are not to be read.
        self.check()?;
        // SAFETY: the transfer above wrote all `count` entries.
        unsafe { files.set_len(count) };
        self.spilled = files.leak();
        Ok(())
    }

    fn entries(&self) -> &[RawFile] {
        if !self.spilled.is_empty() {
            return self.spilled;
        }
        // SAFETY: the first `nfiles` entries were filled by read_directory.
        unsafe {
            core::slice::from_raw_parts(self.dir.files.as_ptr().cast::<RawFile>(), self.nfiles)
        }
    }

    /// How many files the directory lists (all of them are looked at).
    pub fn file_count(&self) -> usize {
        self.entries().len()
    }

    /// Looks a file up by name (selectors change between QEMU versions and
    /// machine types, names do not).
    pub fn find(&self, name: &[u8]) -> Option<File> {
        if name.len() >= FILE_NAME_LEN {
            return None;
        }
        self.find_padded(&padded_name(name))
    }

    /// [`FwCfg::find`] for a name already NUL-padded as the directory holds
    /// it: a constant's padded at compile time ([`padded_name`] in a `const`
    /// block), a table-loader name as it was parsed. (Padded at run time,
    /// each look-up cleared a buffer and called `memcpy`.)
    pub fn find_padded(&self, name: &[u8; FILE_NAME_LEN]) -> Option<File> {
        self.entries()
            .iter()
            .find(|f| names_equal(&f.name, name))
            .map(|f| File {
                select: u16::from_be(f.select),
                size: u32::from_be(f.size),
            })
    }

    /// Whether the PIT's IRQ 0 reaches the I/O APIC on pin 2 (the MP table's
    /// interrupt override). 0 from a QEMU that lacks the item. Inlined: a
    /// function of its own around `read_u32` was four more translation
    /// blocks under TCG.
    #[inline(always)]
    pub fn irq0_override(&mut self) -> bool {
        self.read_u32(Item::Irq0Override as u16) != 0
    }

    /// Reads a little-endian 32-bit item (0 if the transfer fails, which is
    /// recorded: see [`FwCfg::check`]).
    pub fn read_u32(&mut self, selector: u16) -> u32 {
        let mut v = [0u8; 4];
        self.read_into(selector, &mut v);
        u32::from_le_bytes(v)
    }

    /// Reads the start of an item into `buf` (bytes beyond the item read as
    /// 0; a failed transfer, recorded, leaves what `buf` held).
    pub fn read_into(&mut self, selector: u16, buf: &mut [u8]) {
        self.transfer_into(read(selector), buf)
    }

    /// Reads the first `len` bytes of an item to physical address `addr` (a
    /// failed transfer is recorded: see [`FwCfg::check`]).
    ///
    /// # Safety
    /// `[addr, addr + len)` must be RAM that nothing else uses (no Rust object
    /// lives there) and, without DMA, it must be identity-mapped.
    pub unsafe fn read_to_phys(&mut self, selector: u16, addr: u64, len: u32) {
        // SAFETY: the caller's guarantee is `transfer`'s.
        unsafe { self.transfer(read(selector), addr, len as usize) }
    }

    /// Zeroes `[at, at + len)` of guest memory: with DMA, one read of the
    /// item fw_cfg does not have ([`ABSENT`]), which QEMU answers by filling
    /// the destination with zeros, one exit; without DMA, by the CPU. Under
    /// TCG a loop of stores is a translated block run per 8 bytes: for the
    /// 64 KiB BIOS segment, 8,192 of them, about 0.3 million host
    /// instructions, against one request.
    pub fn zero_guest(
        &mut self,
        memory: &mut impl GuestMemory,
        at: u64,
        len: u32,
    ) -> Result<(), Error> {
        if !self.dma {
            crate::mem::zero(memory.bytes(at, len as usize)?);
            return Ok(());
        }
        let addr = memory.dma_address(at, len as usize)?;
        self.dma_request(read(ABSENT), len, addr);
        Ok(())
    }

    /// Reads the first `len` bytes of an item to guest memory at `at`, straight
    /// there by DMA: the kernel, the initrd, tables.
    #[inline]
    pub fn read_to_guest(
        &mut self,
        memory: &mut impl GuestMemory,
        selector: u16,
        at: u64,
        len: u32,
    ) -> Result<(), Error> {
        let addr = memory.dma_address(at, len as usize)?;
        // SAFETY: GuestMemory's contract: `addr` is where `[at, at + len)` is
        // written, memory no Rust object occupies.
        unsafe { self.read_to_phys(selector, addr, len) };
        Ok(())
    }

    /// Reads a whole file into `buf`, uninitialised (every byte is written by
    /// the transfer, none cleared first), and returns it. A file larger than
    /// `buf` is an error, never cut short: the caller asks for a prefix with
    /// [`FwCfg::read_prefix`]. (The prefix that fits is read before that is
    /// told: one test for it and for a failed transfer.)
    pub fn read_file<'b>(
        &mut self,
        name: &'static str,
        file: File,
        buf: &'b mut [MaybeUninit<u8>],
    ) -> Result<&'b [u8], Error> {
        let (len, too_large) = self.read_uninit(file, buf);
        if crate::mem::one_test(too_large | self.failed.is_some()) {
            return Err(self.file_error(name, file, buf.len()));
        }
        // SAFETY: the transfer, which did not fail, wrote all `len` bytes.
        Ok(unsafe { core::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), len) })
    }

    /// Why [`FwCfg::read_file`] failed: a failed transfer (now or before),
    /// else a file larger than the buffer.
    #[cold]
    #[inline(never)]
    fn file_error(&self, name: &'static str, file: File, room: usize) -> Error {
        match self.check() {
            Err(e) => e,
            Ok(()) => Error::FileTooLarge {
                name,
                size: file.size,
                max: room as u32,
            },
        }
    }

    /// The first `buf.len()` bytes of a file (all of it if shorter).
    pub fn read_prefix<'b>(
        &mut self,
        file: File,
        buf: &'b mut [MaybeUninit<u8>],
    ) -> Result<&'b [u8], Error> {
        let (len, _) = self.read_uninit(file, buf);
        // Uninitialised bytes are never handed out.
        self.check()?;
        // SAFETY: the transfer, which did not fail, wrote all `len` bytes.
        Ok(unsafe { core::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), len) })
    }

    /// Reads the first `buf.len()` bytes of a file into `buf`: how many,
    /// and whether the file is longer. The bytes are initialised only if
    /// no transfer has failed.
    #[inline(always)]
    fn read_uninit(&mut self, file: File, buf: &mut [MaybeUninit<u8>]) -> (usize, bool) {
        let len = (file.size as usize).min(buf.len());
        // SAFETY: `buf` is our own buffer of at least `len` bytes, used by nothing
        // else while the device writes it; the identity map (the host's own
        // addresses in tests) makes its address the one the device writes to.
        unsafe { self.read_to_phys(file.select, buf.as_mut_ptr() as u64, len as u32) };
        (len, file.size as usize > buf.len())
    }

    /// Writes `data` into a writable fw_cfg file at `offset` (needs DMA; a
    /// failed transfer is recorded: see [`FwCfg::check`]).
    pub fn write_file(&mut self, selector: u16, offset: u32, data: &[u8]) -> Result<(), Error> {
        if !self.dma {
            return Err(Error::FwCfgDma { selector });
        }
        self.dma_request(
            (DmaControl::SELECT | DmaControl::SKIP).bits() | (selector as u32) << 16,
            offset,
            0,
        );
        self.dma_request(
            DmaControl::WRITE.bits() | (selector as u32) << 16,
            data.len() as u32,
            data.as_ptr() as u64,
        );
        Ok(())
    }

    /// A read into `buf` ([`read`] or [`read_on`]; a failure is recorded:
    /// see [`FwCfg::check`]).
    fn transfer_into(&mut self, control: u32, buf: &mut [u8]) {
        // SAFETY: `buf` is our own memory, mapped, and nothing else uses it
        // while the transfer writes it.
        unsafe { self.transfer(control, buf.as_mut_ptr() as u64, buf.len()) }
    }

    /// Every read: `len` bytes to `addr` as `control` ([`read`] or
    /// [`read_on`]) says, by DMA when the device has it and a descriptor
    /// holds the length, else by port I/O (a failure is recorded: see
    /// [`FwCfg::check`]). One place that tells the two apart, for the reads
    /// into ferrite's buffers and those into guest memory alike. The
    /// request is one word, a constant at most call sites: an argument
    /// each for the selector and whether to select it were two more
    /// instructions to translate at every read.
    ///
    /// # Safety
    /// `[addr, addr + len)` must be memory that nothing else uses while it
    /// is written (no Rust object lives there, or one borrowed mutably for
    /// it) and, without DMA, identity-mapped.
    unsafe fn transfer(&mut self, control: u32, addr: u64, len: usize) {
        // One test for the usual case, DMA and a length the descriptor
        // holds: the two joined in one word, as conditions joined with `&`
        // LLVM splits into a branch each (a translation block each under TCG).
        if (len as u64 >> 32) | (!self.dma as u64) == 0 {
            self.dma_request(control, len as u32, addr)
        } else {
            // SAFETY: the caller's guarantee.
            unsafe { self.pio_transfer(control, addr, len) }
        }
    }

    /// [`transfer`](Self::transfer) without DMA (or longer than a DMA
    /// descriptor holds, a failed transfer either way).
    ///
    /// # Safety
    /// As for [`transfer`](Self::transfer).
    #[cold]
    #[inline(never)]
    unsafe fn pio_transfer(&mut self, control: u32, addr: u64, len: usize) {
        let Ok(len32) = u32::try_from(len) else {
            return self.fail(selector_of(control));
        };
        if control & DmaControl::SELECT.bits() != 0 {
            self.io.outw(PORT_SELECTOR, selector_of(control));
        }
        // SAFETY: the caller guarantees the range is mapped memory nothing
        // else uses meanwhile.
        let buf = unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, len) };
        self.io.read_bytes(PORT_DATA, buf);
        self.stats.pio_bytes += len32 as u64;
    }
}

/// A read of `selector`'s item from its start: the DMA control word,
/// selector in the top half (`FWCfgDmaAccess`), which the port I/O path
/// reads the same way.
pub(super) const fn read(selector: u16) -> u32 {
    (selector as u32) << 16 | DmaControl::READ.bits() | DmaControl::SELECT.bits()
}

/// A read that goes on where the last one on `selector` stopped: no select
/// (the selector rides along for a failure's report; the device looks at
/// it only with `SELECT`).
pub(super) const fn read_on(selector: u16) -> u32 {
    (selector as u32) << 16 | DmaControl::READ.bits()
}

/// The selector a request names (for a failure's report).
pub(super) const fn selector_of(control: u32) -> u16 {
    (control >> 16) as u16
}

/// A file name as fw_cfg stores it: NUL-padded to 56 bytes (cut there).
pub const fn padded_name(name: &[u8]) -> [u8; FILE_NAME_LEN] {
    let mut key = [0u8; FILE_NAME_LEN];
    let mut i = 0;
    while i < name.len() && i < FILE_NAME_LEN {
        key[i] = name[i];
        i += 1;
    }
    key
}

/// [`padded_name`] of a constant name, which must leave room for the NUL
/// (checked at compile time where it is a constant).
pub const fn file_key(name: &[u8]) -> [u8; FILE_NAME_LEN] {
    assert!(
        !name.is_empty() && name.len() < FILE_NAME_LEN,
        "not a fw_cfg file name"
    );
    padded_name(name)
}

/// Compares two NUL-padded names eight bytes at a time (most differ in the
/// first word).
pub fn names_equal(a: &[u8; FILE_NAME_LEN], b: &[u8; FILE_NAME_LEN]) -> bool {
    let word = |n: &[u8; FILE_NAME_LEN], i: usize| {
        u64::from_ne_bytes(n[i * 8..i * 8 + 8].try_into().unwrap())
    };
    (0..FILE_NAME_LEN / 8).all(|i| word(a, i) == word(b, i))
}

#[cfg(test)]
pub mod fake;

#[cfg(test)]
mod tests;
