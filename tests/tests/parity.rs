//! The guest sees the same PC under ferrite as under SeaBIOS: Debian's stock
//! kernel boots under each with the same machine, memory, CPUs and devices
//! (virtio-blk, virtio-net without option ROM, a 64-bit BAR, a bridge or PCIe
//! root port with a device behind it), and every difference in what it reports
//! (iomem, ioports, PCI config headers, MTRRs, PAT, e820, ACPI tables, DMI, CPUs,
//! input devices, interrupts, kernel warnings) must be one of the harmless ones
//! listed in xtask/src/parity.rs and in the README.

use ferrite_tests::{rom, scratch};
use xtask::parity::{self, Config};
use xtask::qemu::Machine;

fn same_as_seabios(machine: Machine) {
    let mut failures = Vec::new();
    for (memory_mib, cpus) in [(512, 1), (512, 4), (5120, 1), (5120, 4)] {
        let cfg = Config {
            machine,
            memory_mib,
            cpus,
        };
        let (report, unexplained) = parity::run(&rom(), cfg, &scratch()).unwrap();
        println!("{report}");
        if unexplained > 0 {
            failures.push(report);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn pc_matches_seabios() {
    same_as_seabios(Machine::Pc);
}

#[test]
fn q35_matches_seabios() {
    same_as_seabios(Machine::Q35);
}
