//! Unit tests of the fw_cfg driver, run against [`super::fake::FakeDevice`]:
//! DMA and port transfers, the directory, write-back and the errors.

use super::fake::FakeDevice;
use super::*;

fn device(dma: bool) -> FakeDevice {
    let mut d = FakeDevice::new(dma);
    d.items
        .insert(Item::KernelSize as u16, 1234u32.to_le_bytes().to_vec());
    d.add_file("etc/e820", &[7u8; 40]);
    d.add_file("etc/table-loader", &[1u8; 128]);
    d.add_file("opt/ferrite/log-level", b"debug");
    d
}

#[test]
fn dma_path_reads_items_and_files_with_few_port_accesses() {
    let mut dev = device(true);
    let mut fw = FwCfg::probe(&mut dev).unwrap();
    assert!(fw.has_dma());
    assert_eq!(fw.read_u32(Item::KernelSize as u16), 1234);
    let f = fw.find(b"etc/e820").unwrap();
    assert_eq!(f.size, 40);
    let mut buf = [0u8; 40];
    fw.read_into(f.select, &mut buf);
    assert_eq!(buf, [7u8; 40]);
    assert!(fw.find(b"etc/e82").is_none());
    assert!(fw.find(b"etc/e8200").is_none());
    // 2 signature reads + directory (count and entries in one request)
    // + KernelSize + file = 5 exits, the host stack address may need the
    // high half too.
    let stats = fw.stats;
    assert_eq!(stats.dma_requests, 3);
    assert!(
        dev.port_accesses <= 2 + 2 * 3,
        "{} port accesses",
        dev.port_accesses
    );
}

/// A name padded at compile time finds what the name finds, and only that:
/// a prefix, a longer name and a name with bytes after its NUL do not.
#[test]
fn a_padded_name_finds_what_the_name_finds() {
    let mut dev = device(true);
    let fw = FwCfg::probe(&mut dev).unwrap();
    const E820: [u8; FILE_NAME_LEN] = file_key(b"etc/e820");
    assert_eq!(fw.find_padded(&E820), fw.find(b"etc/e820"));
    assert!(fw.find_padded(&E820).is_some());
    assert!(fw.find_padded(&file_key(b"etc/e82")).is_none());
    assert!(fw.find_padded(&file_key(b"etc/e8200")).is_none());
    let mut junk = E820;
    junk[FILE_NAME_LEN - 1] = b'x';
    assert!(fw.find_padded(&junk).is_none());
    // the padding: the name, then zeros to 56 bytes; a longer name is cut
    assert_eq!(&E820[..9], b"etc/e820\0");
    assert!(E820[8..].iter().all(|&b| b == 0));
    assert_eq!(padded_name(&[b'a'; 70]), [b'a'; FILE_NAME_LEN]);
}

#[test]
#[should_panic(expected = "not a fw_cfg file name")]
fn a_name_without_room_for_its_nul_is_no_file_key() {
    file_key(&[b'a'; FILE_NAME_LEN]);
}

#[test]
fn port_io_fallback_gives_the_same_bytes() {
    let mut dev = device(false);
    let mut fw = FwCfg::probe(&mut dev).unwrap();
    assert!(!fw.has_dma());
    assert_eq!(fw.read_u32(Item::KernelSize as u16), 1234);
    let f = fw.find(b"opt/ferrite/log-level").unwrap();
    let mut buf = [0u8; 5];
    fw.read_into(f.select, &mut buf);
    assert_eq!(&buf, b"debug");
    assert_eq!(fw.stats.dma_requests, 0);
    let mut dst = [0u8; 40];
    // SAFETY: `dst` is a local buffer nothing else uses.
    unsafe {
        fw.read_to_phys(
            fw.find(b"etc/e820").unwrap().select,
            dst.as_mut_ptr() as u64,
            40,
        )
    };
    fw.check().unwrap();
    assert_eq!(dst, [7u8; 40]);
}

#[test]
fn irq0_override_is_qemus_numbered_item_not_a_file() {
    for dma in [true, false] {
        let mut dev = FakeDevice::qemu_x86(dma);
        let mut fw = FwCfg::probe(&mut dev).unwrap();
        // the name exists only inside SeaBIOS (qemu_cfg_legacy)
        assert!(fw.find(b"etc/irq0-override").is_none());
        assert!(fw.irq0_override(), "dma {dma}");
        // a QEMU without the item (or with 0 in it): no override
        let mut dev = FakeDevice::qemu_x86(dma);
        dev.items.remove(&(Item::Irq0Override as u16));
        assert!(!FwCfg::probe(&mut dev).unwrap().irq0_override());
        let mut dev = FakeDevice::qemu_x86(dma);
        dev.items
            .insert(Item::Irq0Override as u16, 0u32.to_le_bytes().to_vec());
        assert!(!FwCfg::probe(&mut dev).unwrap().irq0_override());
    }
}

#[test]
fn no_device_is_reported_as_such() {
    let mut dev = device(true);
    dev.present = false;
    assert_eq!(FwCfg::probe(&mut dev).err(), Some(Error::NoFwCfg));
}

#[test]
fn dma_errors_are_reported() {
    let mut dev = device(true);
    dev.fail_dma = true;
    assert!(matches!(
        FwCfg::probe(&mut dev).err(),
        Some(Error::FwCfgDma { .. })
    ));
    // probed without the check: a directory that failed lists no file
    let mut fw = FwCfg::unprobed(&mut dev);
    fw.probe_device().unwrap();
    assert_eq!(fw.file_count(), 0);
    assert_eq!(
        fw.check(),
        Err(Error::FwCfgDma {
            selector: Item::FileDir as u16
        })
    );
}

/// A failed transfer is recorded, not returned: the item reads as what the
/// buffer held, the first failure is the one kept, the reads that hand out
/// bytes refuse to, and a result worked out afterwards gives way to it.
#[test]
fn a_failed_transfer_is_kept_and_comes_first() {
    let mut dev = device(true);
    let sizes = Item::KernelSize as u16;
    dev.fail_item = Some(sizes);
    let mut fw = FwCfg::probe(&mut dev).unwrap();
    assert_eq!(fw.check(), Ok(()));
    assert_eq!(fw.read_u32(sizes), 0);
    let mut buf = [0xA5u8; 4];
    fw.read_into(sizes, &mut buf);
    assert_eq!(buf, [0xA5; 4]);
    let failed = Err(Error::FwCfgDma { selector: sizes });
    assert_eq!(fw.check(), failed);
    // a later transfer of another item works, and a later failure does not
    // replace the first
    let f = fw.find(b"etc/e820").unwrap();
    let mut e820 = [0u8; 40];
    fw.read_into(f.select, &mut e820);
    assert_eq!(e820, [7u8; 40]);
    fw.write_file(f.select, 36, &[0; 8]).unwrap();
    assert_eq!(fw.check(), failed);
    let mut raw = [MaybeUninit::uninit(); 64];
    assert_eq!(
        fw.read_prefix(f, &mut raw).map(<[u8]>::len),
        failed.map(|()| 0)
    );
    assert_eq!(
        fw.read_file("etc/e820", f, &mut raw).map(<[u8]>::len),
        failed.map(|()| 0)
    );
    assert_eq!(fw.verdict(Ok(7)), failed.map(|()| 7));
    assert_eq!(fw.verdict::<()>(Err(Error::NoKernel)), failed);
}

#[test]
fn a_file_too_large_for_its_buffer_is_refused_whole() {
    let mut dev = device(true);
    let mut fw = FwCfg::probe(&mut dev).unwrap();
    let f = fw.find(b"etc/e820").unwrap();
    let mut small = [MaybeUninit::uninit(); 39];
    assert_eq!(
        fw.read_file("etc/e820", f, &mut small),
        Err(Error::FileTooLarge {
            name: "etc/e820",
            size: 40,
            max: 39
        })
    );
    // a prefix is no error, and nothing failed
    assert_eq!(fw.read_prefix(f, &mut small).unwrap(), [7u8; 39]);
    assert_eq!(fw.verdict(Ok(())), Ok(()));
}

#[test]
fn write_file_patches_the_item_and_checks_bounds() {
    let mut dev = device(true);
    dev.add_file("etc/vmgenid_addr", &[0u8; 8]);
    let mut fw = FwCfg::probe(&mut dev).unwrap();
    let f = fw.find(b"etc/vmgenid_addr").unwrap();
    fw.write_file(f.select, 4, &[1, 2, 3, 4]).unwrap();
    assert_eq!(fw.check(), Ok(()));
    // past the item's end: the device refuses it, and the failure is kept
    fw.write_file(f.select, 6, &[1, 2, 3, 4]).unwrap();
    assert_eq!(fw.check(), Err(Error::FwCfgDma { selector: f.select }));
    assert_eq!(dev.items[&f.select], [0, 0, 0, 0, 1, 2, 3, 4]);
}

#[test]
fn a_directory_of_500_files_is_taken_whole() {
    for dma in [true, false] {
        let mut dev = FakeDevice::new(dma);
        for i in 0..500 {
            dev.add_file(&format!("opt/f{i}"), &(i as u32).to_le_bytes());
        }
        let mut fw = FwCfg::probe(&mut dev).unwrap();
        assert_eq!(fw.file_count(), 500);
        for i in [0, INLINE_FILES - 1, INLINE_FILES, 499] {
            let f = fw.find(format!("opt/f{i}").as_bytes()).unwrap();
            assert_eq!(f.size, 4);
            assert_eq!(f.select, 0x20 + i as u16);
            assert_eq!(fw.read_u32(f.select), i as u32, "dma {dma}");
        }
        assert!(fw.find(b"opt/f500").is_none());
    }
    // exactly the inline array's size stays off the heap
    let mut dev = FakeDevice::new(true);
    for i in 0..INLINE_FILES {
        dev.add_file(&format!("opt/f{i}"), &[0u8; 1]);
    }
    let fw = FwCfg::probe(&mut dev).unwrap();
    assert!(fw.spilled.is_empty());
    assert_eq!(fw.file_count(), INLINE_FILES);
}

#[test]
fn impossible_or_oversized_directories_are_refused() {
    // a count no fw_cfg can have: more files than selectors
    let mut dev = FakeDevice::new(true);
    let mut dir = dev.items[&(Item::FileDir as u16)].clone();
    dir[..4].copy_from_slice(&u32::MAX.to_be_bytes());
    dev.items.insert(Item::FileDir as u16, dir.clone());
    assert_eq!(
        FwCfg::probe(&mut dev).err(),
        Some(Error::BadFileDirectory {
            count: u32::MAX as usize
        })
    );
    // a possible count beyond the heap: the heap's own error
    dir[..4].copy_from_slice(&(MAX_FILES as u32).to_be_bytes());
    dev.items.insert(Item::FileDir as u16, dir);
    assert_eq!(
        FwCfg::probe(&mut dev).err().map(|e| e.status()),
        Some(Error::OutOfHeap { what: "", bytes: 0 }.status())
    );
    // a directory shorter than its count reads as empty names: nothing found
    let mut dev = FakeDevice::new(true);
    dev.add_file("etc/e820", &[0u8; 20]);
    let mut dir = dev.items[&(Item::FileDir as u16)].clone();
    dir[..4].copy_from_slice(&200u32.to_be_bytes());
    dev.items.insert(Item::FileDir as u16, dir);
    let fw = FwCfg::probe(&mut dev).unwrap();
    assert_eq!(fw.file_count(), 200);
    assert!(fw.find(b"etc/e820").is_some());
}

/// With DMA the count and an inline directory come in one request; one
/// more file than fits inline costs two more (the count again, then every
/// entry into the heap). Every entry is found.
#[test]
fn an_inline_directory_is_one_request_a_larger_one_three() {
    for (files, requests) in [(0, 1), (3, 1), (INLINE_FILES, 1), (INLINE_FILES + 1, 3)] {
        let mut dev = FakeDevice::new(true);
        for i in 0..files {
            dev.add_file(&format!("opt/f{i}"), &[0u8; 3]);
        }
        let fw = FwCfg::probe(&mut dev).unwrap();
        assert_eq!(fw.stats.dma_requests, requests, "{files} files");
        assert_eq!(fw.file_count(), files);
        for i in 0..files {
            let f = fw.find(format!("opt/f{i}").as_bytes()).unwrap();
            assert_eq!((f.select, f.size), (0x20 + i as u16, 3));
        }
        assert!(fw.find(format!("opt/f{files}").as_bytes()).is_none());
    }
}

/// A directory item shorter than its count, within the inline size: the
/// missing entries read as zeros (empty names), with DMA as by port I/O.
#[test]
fn a_short_inline_directory_reads_as_empty_names() {
    for dma in [true, false] {
        let mut dev = FakeDevice::new(dma);
        dev.add_file("etc/e820", &[0u8; 20]);
        let mut dir = dev.items[&(Item::FileDir as u16)].clone();
        dir[..4].copy_from_slice(&10u32.to_be_bytes());
        dev.items.insert(Item::FileDir as u16, dir);
        let fw = FwCfg::probe(&mut dev).unwrap();
        assert_eq!(fw.file_count(), 10, "dma {dma}");
        assert_eq!(fw.find(b"etc/e820").unwrap().select, 0x20);
        assert_eq!(fw.find(b""), Some(File { select: 0, size: 0 }));
        assert_eq!(fw.stats.dma_requests, if dma { 1 } else { 0 });
    }
}
