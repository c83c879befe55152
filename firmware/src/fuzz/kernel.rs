//! Fuzz target `kernel`: the setup header and sizes, the kernel's and initrd's
//! placement.

use std::format;
use std::string::String;
use std::vec::Vec;

use proptest::prelude::*;

use super::{e820_strategy, frames, le64, unframe, value32, value64};
use crate::bootparams::{BootParams, SetupHeader};
use crate::e820::MemoryMap;
use crate::linux::{self, KernelInfo};
use crate::mem::Range;
use crate::mem::{self, HighZone};

pub(super) fn gen_kernel() -> BoxedStrategy<Vec<u8>> {
    let fields = (
        prop_oneof![
            Just(0x020Fu16),
            Just(0x0206),
            Just(0x020A),
            Just(0x020C),
            any::<u16>()
        ],
        prop_oneof![Just(1u8), Just(0x81), any::<u8>()],
        prop_oneof![Just(3u16), Just(1), Just(0), any::<u16>()],
        prop_oneof![Just(1u8), Just(0), any::<u8>()],
        prop_oneof![Just(0x20_0000u32), Just(0x100_0000), value32()],
        prop_oneof![Just(0x100_0000u64), Just(0x10_0000), value64()],
        prop_oneof![Just(0x200_0000u32), value32()],
        prop_oneof![Just(0x7FFF_FFFFu32), Just(0x37FF_FFFF), value32()],
        prop_oneof![Just(2047u32), value32()],
    );
    (
        fields,
        prop::collection::vec((0..0x290usize, any::<u8>()), 0..3),
        e820_strategy(12),
        (value32(), value32(), value32()),
    )
        .prop_map(|(f, noise, e820, sizes)| {
            let (version, loadflags, xlf, reloc, align, pref, init, initrd_max, cmdline) = f;
            let mut h = vec![0u8; 0x290];
            h[0x1F1] = 0x1B;
            h[0x1FE..0x200].copy_from_slice(&0xAA55u16.to_le_bytes());
            h[0x201] = 0x6A;
            h[0x202..0x206].copy_from_slice(b"HdrS");
            h[0x206..0x208].copy_from_slice(&version.to_le_bytes());
            h[0x211] = loadflags;
            h[0x22C..0x230].copy_from_slice(&initrd_max.to_le_bytes());
            h[0x230..0x234].copy_from_slice(&align.to_le_bytes());
            h[0x234] = reloc;
            h[0x236..0x238].copy_from_slice(&xlf.to_le_bytes());
            h[0x238..0x23C].copy_from_slice(&cmdline.to_le_bytes());
            h[0x258..0x260].copy_from_slice(&pref.to_le_bytes());
            h[0x260..0x264].copy_from_slice(&init.to_le_bytes());
            for (at, b) in noise {
                h[at] = b;
            }
            let mut s = Vec::new();
            for v in [sizes.0, sizes.1, sizes.2] {
                s.extend_from_slice(&v.to_le_bytes());
            }
            frames(&[&h, &e820, &s])
        })
        .boxed()
}

/// The reservations `main.rs` passes to the placement besides the high zone,
/// as on q35 (BIOS area, EBDA, MMCONFIG, RCBA, the ROM): the final map
/// reserves them, so the kernel and initrd must stay clear of them.
const FIXED_RESERVATIONS: [Range; 5] = [
    mem::BIOS_AREA,
    Range::new(0x9_FC00, 0xA_0000),
    crate::chipset::Q35_MMCONFIG,
    Range::new(0xFED1_C000, 0xFED2_0000),
    Range::new((1 << 32) - (128 << 10), 1 << 32),
];

pub(super) fn check_kernel(input: &[u8]) -> String {
    let [header, e820, sizes] = unframe::<3>(input);
    let mut zp = BootParams::zeroed();
    zp.copy_header_from(header);
    assert_eq!(zp.as_bytes()[0x1EF], 0, "the sentinel was copied");
    let Some(hdr) = SetupHeader::in_image(header) else {
        return "short".into();
    };
    let info = match KernelInfo::from_header(hdr) {
        Ok(i) => i,
        Err(e) => return format!("{:#x}", e.status()),
    };
    let (size, initrd, cmdline) = (
        le64(sizes, 0) as u32 as u64,
        le64(sizes, 4) as u32 as u64,
        le64(sizes, 8) as u32 as u64,
    );
    if let Err(e) = info.check_cmdline(cmdline.saturating_sub(1)) {
        return format!("{:#x}", e.status());
    }
    let Ok(map) = MemoryMap::from_qemu(e820) else {
        return "bad-e820".into();
    };
    let Ok(top) = map.low_ram_top() else {
        return "no-low-ram".into();
    };
    let mut zone = HighZone::new(top);
    zone.alloc(0x2_0000, 4096);
    let mut busy = vec![zone.used()];
    busy.extend(FIXED_RESERVATIONS);
    let kernel = match linux::place_kernel(&info, size, &map, &busy) {
        Ok(k) => k,
        Err(e) => return format!("{:#x}", e.status()),
    };
    assert!(map.is_ram(kernel), "kernel {kernel:x?} outside RAM");
    assert!(
        busy.iter().all(|b| !b.overlaps(&kernel)),
        "kernel {kernel:x?} on a reservation"
    );
    assert!(kernel.len() >= size.max(info.init_size.into()));
    assert!(kernel.start >= linux::KERNEL_FLOOR);
    if info.relocatable {
        assert_eq!(kernel.start % u64::from(info.alignment), 0);
        assert!(kernel.start >= info.pref_address);
    } else {
        assert_eq!(kernel.start, info.pref_address);
    }
    busy.push(kernel);
    match linux::place_initrd(&info, initrd, &map, &busy) {
        Ok(None) => {
            assert_eq!(initrd, 0);
            "ok-no-initrd".into()
        }
        Ok(Some(r)) => {
            assert!(map.is_ram(r), "initrd {r:x?} outside RAM");
            assert!(
                busy.iter().all(|b| !b.overlaps(&r)),
                "initrd {r:x?} on a reservation"
            );
            assert!(r.len() >= initrd);
            assert!(
                r.end - 1 <= info.initrd_addr_max.into() || (info.above_4g && r.start >= 1 << 32)
            );
            "ok".into()
        }
        Err(e) => format!("{:#x}", e.status()),
    }
}
