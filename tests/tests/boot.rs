//! ferrite boots the test kernel, which checks the zero page, command line,
//! initrd, e820 map, ACPI tables and CPU state it was handed.

use ferrite_contract::{fw_cfg, marker, qemu_exit, status, timeline};
use ferrite_tests::{
    expect_exit, firmware, kernel, multiboot_kernel, pvh_kernel, qemu, random_file, scratch,
};
use xtask::qemu::{Accel, Machine};
use xtask::testkernel::{
    BzImageSpec, MultibootSpec, PASS_32, PASS_64, PASS_MULTIBOOT, PASS_PVH, PvhSpec, with_check,
};

/// One boot with an initrd, checked against memory size and CPU count.
fn boot(machine: Machine, memory_mib: u64, cpus: u32, extra_cmdline: &str) {
    boot_acpi(machine, true, memory_mib, cpus, extra_cmdline)
}

/// [`boot`], with the machine's ACPI on or off.
fn boot_acpi(machine: Machine, acpi: bool, memory_mib: u64, cpus: u32, extra_cmdline: &str) {
    let k = kernel("default.bzImage", &BzImageSpec::default());
    let name = format!("initrd-{}-{memory_mib}-{cpus}", machine.name());
    let (initrd, hash) = random_file(
        &name,
        300_000 + cpus as usize * 4099,
        memory_mib ^ cpus as u64,
    );
    let mut q = qemu(machine, &k);
    q.acpi = acpi;
    q.memory_mib = memory_mib;
    q.cpus = cpus;
    q.initrd = Some(initrd);
    // Without ACPI there is no MADT to count the CPUs in.
    let cpus_check = if acpi {
        format!(" expect.cpus={cpus}")
    } else {
        String::new()
    };
    let pit = pit_check(machine);
    q.append = Some(with_check(&format!(
        "console=ttyS0{cpus_check}{pit} expect.mem_mib={memory_mib} expect.initrd_len={} expect.initrd_fnv={hash:016x}{extra_cmdline}",
        300_000 + cpus as usize * 4099
    )));
    let out = expect_exit(&q, PASS_64);
    assert!(out.serial.contains("testkernel: PASS"), "{}", out.serial);
}

/// On pc and q35, where ferrite sets up the legacy devices, the test kernel
/// checks that the PIT's channel 0 was left idle (`chipset::legacy`).
fn pit_check(machine: Machine) -> &'static str {
    if machine == Machine::Microvm {
        ""
    } else {
        " expect.pit_idle=1"
    }
}

fn matrix(machine: Machine) {
    for memory in [128, 2048, 6144] {
        for cpus in [1, 4] {
            boot(machine, memory, cpus, "");
        }
    }
}

#[test]
fn pc_memory_and_cpu_matrix() {
    matrix(Machine::Pc);
}

#[test]
fn q35_memory_and_cpu_matrix() {
    matrix(Machine::Q35);
}

#[test]
fn microvm_memory_and_cpu_matrix() {
    matrix(Machine::Microvm);
}

/// microvm without ACPI gets an MP table in the high zone: the initrd goes
/// clear of it (it was once placed under the zone before the table was
/// taken from it, and lost its last bytes to it).
#[test]
fn microvm_without_acpi_keeps_the_initrd_clear_of_the_mp_table() {
    for cpus in [1, 4] {
        boot_acpi(Machine::Microvm, false, 128, cpus, "");
    }
}

#[test]
fn long_command_line_arrives_intact() {
    let long: String = (0..170).map(|i| format!(" word{i:04}")).collect();
    assert!(long.len() > 1400);
    boot(Machine::Q35, 512, 2, &long);
}

#[test]
fn port_io_fallback_without_dma() {
    for machine in Machine::ALL {
        let k = kernel("default.bzImage", &BzImageSpec::default());
        let (initrd, hash) = random_file("initrd-pio", 65_537, 7);
        let mut q = qemu(machine, &k);
        q.memory_mib = 256;
        q.initrd = Some(initrd);
        q.extra = vec!["-global".into(), "fw_cfg_io.dma_enabled=off".into()];
        q.append = Some(with_check(&format!(
            "expect.cpus=1 expect.mem_mib=256 expect.initrd_len=65537 expect.initrd_fnv={hash:016x}"
        )));
        expect_exit(&q, PASS_64);
    }
}

#[test]
fn initrd_goes_above_4g_when_it_fits_nowhere_below() {
    // initrd_addr_max = 64 MiB: a 48 MiB initrd does not fit next to the kernel at 16 MiB.
    let spec = BzImageSpec {
        initrd_addr_max: (64 << 20) - 1,
        ..BzImageSpec::default()
    };
    let k = kernel("low-initrd-max.bzImage", &spec);
    let (initrd, hash) = random_file("initrd-48m", 48 << 20, 3);
    let mut q = qemu(Machine::Q35, &k);
    q.memory_mib = 6144;
    q.initrd = Some(initrd.clone());
    q.append = Some(with_check(&format!(
        "expect.mem_mib=6144 expect.initrd_len={} expect.initrd_fnv={hash:016x}",
        48 << 20
    )));
    let out = expect_exit(&q, PASS_64);
    let at = out.serial.split("at 0x").nth(1).unwrap_or("0");
    let addr = u64::from_str_radix(at.trim(), 16).unwrap_or(0);
    assert!(
        addr >= 1 << 32,
        "initrd at {addr:#x}, expected above 4 GiB:\n{}",
        out.serial
    );

    // Without XLF_CAN_BE_LOADED_ABOVE_4G the same boot is refused with a message.
    let spec = BzImageSpec {
        xloadflags: 0x01,
        ..spec
    };
    let k = kernel("low-initrd-max-no4g.bzImage", &spec);
    let mut q = qemu(Machine::Q35, &k);
    q.memory_mib = 6144;
    q.initrd = Some(initrd);
    q.exit_ports = vec![status::PORT];
    q.append = Some("x".into());
    let out = expect_exit(&q, qemu_exit(status::INITRD_DOES_NOT_FIT));
    assert!(
        out.serial.contains("ferrite: error: the initrd"),
        "{}",
        out.serial
    );
}

/// A DTB as QEMU hands it over (`setup_data`), moved out of the kernel's
/// way into the tables' zone: a small one beside the tables below 1 MiB,
/// and one too large to leave the low zone its spare room, with which the
/// zone goes to the top of low RAM.
#[test]
fn dtb_arrives_as_setup_data() {
    let k = kernel("default.bzImage", &BzImageSpec::default());
    for (name, len, machines) in [
        ("fake.dtb", 5000, &[Machine::Pc, Machine::Microvm][..]),
        ("large.dtb", 100_000, &Machine::ALL[..]),
    ] {
        let (dtb, hash) = random_file(name, len, 11);
        for &machine in machines {
            let mut q = qemu(machine, &k);
            q.extra = vec!["-dtb".into(), dtb.display().to_string()];
            q.append = Some(with_check(&format!("expect.dtb_fnv={hash:016x}")));
            expect_exit(&q, PASS_64);
        }
    }
}

#[test]
fn kernel_without_64_bit_entry_gets_the_32_bit_protocol() {
    let spec = BzImageSpec {
        xloadflags: 0,
        ..BzImageSpec::default()
    };
    let k = kernel("entry32.bzImage", &spec);
    for machine in Machine::ALL {
        expect_exit(&qemu(machine, &k), PASS_32);
    }
}

#[test]
fn markers_on_0xf5_and_0xf4() {
    let k = kernel("default.bzImage", &BzImageSpec::default());
    for machine in Machine::ALL {
        let mut q = qemu(machine, &k);
        q.exit_ports = vec![marker::START_PORT];
        expect_exit(&q, qemu_exit(marker::START));
        q.exit_ports = vec![marker::KERNEL_PORT];
        expect_exit(&q, qemu_exit(marker::KERNEL_BZIMAGE));
    }
}

#[test]
fn silent_by_default_and_verbose_on_request() {
    let k = kernel("default.bzImage", &BzImageSpec::default());
    let mut q = qemu(Machine::Q35, &k);
    q.append = Some(with_check("x"));
    let out = expect_exit(&q, PASS_64);
    assert!(
        out.serial.starts_with("testkernel:"),
        "ferrite printed something:\n{}",
        out.serial
    );
    q.fw_cfg_string(fw_cfg::LOG_LEVEL, "debug");
    let out = expect_exit(&q, PASS_64);
    assert!(
        out.serial.contains("ferrite: debug: machine: Q35"),
        "{}",
        out.serial
    );
    assert!(
        out.serial.contains("ferrite: debug: kernel 0x1000000"),
        "{}",
        out.serial
    );
}

/// A VM with more fw_cfg files than ferrite's inline directory (96) boots,
/// and a file sorted after all of them is found: QEMU lists files by name, so
/// `opt/ferrite/log-level` comes after 200 `opt/a/N` files (QEMU's default
/// of 32 file slots is raised with `x-file-slots`).
#[test]
fn many_fw_cfg_files_are_all_looked_at() {
    let k = kernel("default.bzImage", &BzImageSpec::default());
    for machine in Machine::ALL {
        let mut q = qemu(machine, &k);
        q.append = Some(with_check("x"));
        // microvm's fw_cfg is at the same I/O ports: fw_cfg_io too
        q.extra = vec!["-global".into(), "fw_cfg_io.x-file-slots=512".into()];
        for i in 0..200 {
            q.fw_cfg_string(&format!("opt/a/{i}"), &i.to_string());
        }
        q.fw_cfg_string(fw_cfg::LOG_LEVEL, "debug");
        let out = expect_exit(&q, PASS_64);
        assert!(
            out.serial.contains("ferrite: debug: machine:"),
            "{machine:?}: the log level, file 2xx of the directory, was not read:\n{}",
            out.serial
        );
    }
}

/// A VM with more PCI functions than ferrite's inline arrays hold (256)
/// boots, every function set up: 272 `edu` functions (a memory BAR each) on
/// bus 0 and behind a bridge, multi-function, besides the chipset's.
#[test]
fn more_than_256_pci_functions_are_all_set_up() {
    let k = kernel("default.bzImage", &BzImageSpec::default());
    let mut q = qemu(Machine::Pc, &k);
    q.append = Some(with_check("x"));
    q.extra = vec![
        "-device".into(),
        "pci-bridge,id=br1,chassis_nr=1,addr=2".into(),
    ];
    let slots = (3..32u8)
        .map(|s| (None, s))
        .chain((1..6u8).map(|s| (Some("br1"), s)));
    for (bus, slot) in slots {
        for f in 0..8 {
            let bus = bus.map_or(String::new(), |b| format!(",bus={b}"));
            let multi = if f == 0 { ",multifunction=on" } else { "" };
            q.extra.push("-device".into());
            q.extra.push(format!("edu{bus},addr={slot:x}.{f}{multi}"));
        }
    }
    q.fw_cfg_string(fw_cfg::LOG_LEVEL, "debug");
    let out = expect_exit(&q, PASS_64);
    // the set-up's layout, in hex: 277 functions (the chipset's 4, the bridge)
    assert!(out.serial.contains("functions: 115,"), "{}", out.serial);
}

#[test]
fn timeline_on_the_debug_console_on_request() {
    let k = kernel("default.bzImage", &BzImageSpec::default());
    let log = scratch().join("debugcon.txt");
    let mut q = qemu(Machine::Pc, &k);
    q.append = Some(with_check("x"));
    q.extra = vec!["-debugcon".into(), format!("file:{}", log.display())];
    q.fw_cfg_string(fw_cfg::TIMELINE, "1");
    expect_exit(&q, PASS_64);
    let line = std::fs::read_to_string(&log).unwrap();
    assert!(
        line.starts_with(&format!(
            "{} {}=0 {}=",
            timeline::PREFIX,
            timeline::RESET,
            timeline::RUST
        )),
        "{line}"
    );
    let stamps: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|kv| kv.split('=').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(stamps.len(), timeline::STEPS.len(), "{line}");
    assert!(
        stamps.windows(2).all(|w| w[0] <= w[1]),
        "stamps not increasing: {line}"
    );

    // The file's value decides, not its presence: `string=0` is off.
    std::fs::remove_file(&log).unwrap();
    q.extra.truncate(2);
    q.fw_cfg_string(fw_cfg::TIMELINE, "0");
    expect_exit(&q, PASS_64);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!text.contains(timeline::PREFIX), "{text}");
}

/// The waking vector's report (tests/testkernel): CS:IP and the ACPI PM timer
/// were right in real mode after the firmware's resume path.
const S3_RESUMED: i32 = 0x18 * 2 + 1;

/// The trace segment of the PC set-up: segment 0 runs from the reset vector
/// to Rust's first stamp, then one segment per step in the contract's order.
const HARDWARE_SEGMENT: usize = hardware_step() - 1;

const fn hardware_step() -> usize {
    let mut i = 0;
    while !timeline::same(timeline::STEPS[i], timeline::HARDWARE) {
        i += 1;
    }
    i
}

/// The test kernel plays a guest waking from S3 (QEMU's "S3 resume" status in
/// the CMOS, then a reset): ferrite must jump to the real-mode waking vector
/// the kernel left in the FACS, with the chipset's ACPI I/O decoded again, and
/// not boot the kernel afresh.
#[test]
fn s3_wake_up_jumps_to_the_waking_vector() {
    let k = kernel("default.bzImage", &BzImageSpec::default());
    for machine in [Machine::Pc, Machine::Q35] {
        let mut q = qemu(machine, &k);
        q.allow_reboot = true;
        q.append = Some(with_check("console=ttyS0 s3.wake=vector"));
        let out = expect_exit(&q, S3_RESUMED);
        assert!(!out.serial.contains("testkernel:"), "{}", out.serial);
        assert!(!out.serial.contains("ferrite:"), "{}", out.serial);
    }
}

/// An S3 wake-up whose OS left no waking vector boots afresh (as SeaBIOS does),
/// saying so in one line.
#[test]
fn s3_wake_up_without_a_waking_vector_boots_afresh_and_says_so() {
    let k = kernel("default.bzImage", &BzImageSpec::default());
    for machine in [Machine::Pc, Machine::Q35] {
        let mut q = qemu(machine, &k);
        q.allow_reboot = true;
        q.append = Some(with_check("console=ttyS0 s3.wake=none"));
        let out = expect_exit(&q, PASS_64);
        let line = "ferrite: error: S3 wake-up, but the OS left no real-mode waking vector in the FACS: booting afresh";
        assert_eq!(out.serial.matches(line).count(), 1, "{}", out.serial);
        assert_eq!(
            out.serial.matches("testkernel: PASS").count(),
            1,
            "{}",
            out.serial
        );
    }
}

/// The bench's boot for its counts: the stock-size probe kernel, timed to
/// its marker at the kernel's entry, where it halts. A QEMU whose
/// isa-debug-exit lets the guest run on after the write (10.0 does; 7.2
/// exits at once) then counts the same boot every time; stopping at
/// ferrite's own last marker, the kernel after it ran on for as long as QEMU
/// took to shut down.
fn probe_boot(dir: &std::path::Path, machine: Machine) -> xtask::qemu::Qemu {
    xtask::probe::stock_size_boot(dir, machine, ferrite_tests::rom()).expect("the probe's files")
}

/// The bench's per-step instruction and exit counts: under KVM (which
/// emulates every guest instruction on this machine type) the trace splits at
/// ferrite's inline stamps into the timeline's steps, and
/// microvm pays nothing for the PC set-up that pc and q35 need, in
/// instructions and in exits to QEMU.
#[test]
fn instructions_per_step_under_kvm() {
    assert!(
        std::path::Path::new("/dev/kvm").exists(),
        "this test needs /dev/kvm"
    );
    let mut hardware = Vec::new();
    let mut exits = Vec::new();
    for machine in Machine::ALL {
        let dir = scratch().join(format!("trace-{}", machine.name()));
        let q = probe_boot(&dir, machine);
        let seg = xtask::insn_steps::record(&q, &firmware().elf, &dir).expect("tracing a boot");
        // reset..rust, then one segment per step up to zero_page, then the hand-off
        assert_eq!(seg.counts.len(), 11, "{machine:?}: {:?}", seg.counts);
        assert!(
            seg.counts[..10].iter().all(|&n| n > 0),
            "{machine:?}: {:?}",
            seg.counts
        );
        // the hand-off is a few instructions: ferrite's jump and the probe's
        // marker
        assert!(seg.counts[10] < 100, "{machine:?}: {:?}", seg.counts);
        hardware.push(seg.counts[HARDWARE_SEGMENT]);
        assert_eq!(seg.exits.len(), seg.counts.len());
        let total: u64 = seg.exits.iter().map(|e| e.userspace).sum();
        // the markers alone are two port writes that QEMU handles
        assert!(total >= 2, "{machine:?}: {:?}", seg.exits);
        exits.push((total, seg.exits[HARDWARE_SEGMENT].pio));
        // perf stat (the bench's cost model) counts the same boot's
        // instructions and port exits as the trace
        let mut kvm = q.clone();
        kvm.accel = Accel::Kvm;
        let stat = xtask::insn_steps::perf_stat(
            &kvm,
            &[
                xtask::insn_steps::GUEST_INSTRUCTIONS,
                xtask::insn_steps::PORT_EXITS,
            ],
        )
        .expect("perf stat of a boot");
        let pio: u64 = seg.exits.iter().map(|e| e.pio).sum();
        assert!(
            stat[0].abs_diff(seg.total()) * 100 <= seg.total() && stat[1].abs_diff(pio) <= 2,
            "{machine:?}: perf stat {stat:?}, trace {} instructions and {pio} port exits",
            seg.total()
        );
    }
    let [
        (pc_exits, pc_pci),
        (q35_exits, _),
        (microvm_exits, microvm_pci),
    ] = exits[..]
    else {
        unreachable!()
    };
    // the PC set-up is configuration-space traffic: port exits to QEMU
    assert!(pc_pci > 100 && microvm_pci < 5, "{exits:?}");
    assert!(
        microvm_exits * 4 < pc_exits && microvm_exits * 4 < q35_exits,
        "{exits:?}"
    );
    let [pc, q35, microvm] = hardware[..] else {
        unreachable!()
    };
    assert!(pc > 1000 && q35 > 1000, "pc {pc}, q35 {q35}");
    assert!(
        microvm < 100,
        "microvm's hardware step: {microvm} instructions"
    );
}

/// The test kernel as a PVH `vmlinux`: ferrite enters it at its note's entry
/// with the start info, memory map, command line, initrd module and RSDP, on
/// every machine, with RAM above 4 GiB on one; then the 0xf4 marker is 4.
#[test]
fn pvh_entry_on_every_machine() {
    let k = pvh_kernel("default.vmlinux", &PvhSpec::default());
    for (machine, memory_mib, cpus) in [
        (Machine::Pc, 512, 2),
        (Machine::Q35, 6144, 4),
        (Machine::Microvm, 256, 1),
    ] {
        let len = 200_000 + memory_mib as usize;
        let (initrd, hash) = random_file(&format!("initrd-pvh-{}", machine.name()), len, 17);
        let mut q = qemu(machine, &k);
        q.memory_mib = memory_mib;
        q.cpus = cpus;
        q.initrd = Some(initrd);
        let pit = pit_check(machine);
        q.append = Some(with_check(&format!(
            "console=ttyS0 expect.cpus={cpus}{pit} expect.mem_mib={memory_mib} expect.initrd_len={len} expect.initrd_fnv={hash:016x}"
        )));
        let out = expect_exit(&q, PASS_PVH);
        assert!(
            out.serial.contains("testkernel: PASS pvh"),
            "{}",
            out.serial
        );
    }
    // Without an initrd: no module; through fw_cfg's port I/O as well as DMA.
    let mut q = qemu(Machine::Q35, &k);
    q.append = Some(with_check("x"));
    expect_exit(&q, PASS_PVH);
    q.extra = vec!["-global".into(), "fw_cfg_io.dma_enabled=off".into()];
    expect_exit(&q, PASS_PVH);
    q.extra.clear();
    // The marker before the PVH jump.
    q.exit_ports = vec![marker::KERNEL_PORT];
    expect_exit(&q, qemu_exit(marker::KERNEL_PVH));
}

/// The test kernel as a multiboot kernel: ferrite loads QEMU's image and
/// information block, fills in mem_lower, mem_upper and the memory map, and
/// enters with EAX = 0x2BADB002; the kernel checks them, its module and (on pc
/// and q35, where the RSDP is in the BIOS segment) the ACPI tables. Then the
/// 0xf4 marker is 2.
#[test]
fn multiboot_on_every_machine() {
    let k = multiboot_kernel("default.multiboot", &MultibootSpec::default());
    for (machine, memory_mib, cpus) in [
        (Machine::Pc, 512, 2),
        (Machine::Q35, 2048, 4),
        (Machine::Microvm, 256, 1),
    ] {
        let len = 100_000 + memory_mib as usize;
        let (module, hash) = random_file(&format!("module-mb-{}", machine.name()), len, 23);
        let mut q = qemu(machine, &k);
        q.memory_mib = memory_mib;
        q.cpus = cpus;
        q.initrd = Some(module);
        let cpus_check = if machine == Machine::Microvm {
            String::new()
        } else {
            format!(" expect.cpus={cpus}")
        };
        let pit = pit_check(machine);
        q.append = Some(with_check(&format!(
            "console=ttyS0{cpus_check}{pit} expect.mem_mib={memory_mib} expect.initrd_len={len} expect.initrd_fnv={hash:016x}"
        )));
        let out = expect_exit(&q, PASS_MULTIBOOT);
        assert!(
            out.serial.contains("testkernel: PASS multiboot"),
            "{}",
            out.serial
        );
    }
    let mut q = qemu(Machine::Pc, &k);
    q.append = Some(with_check("x"));
    expect_exit(&q, PASS_MULTIBOOT);
    q.extra = vec!["-global".into(), "fw_cfg_io.dma_enabled=off".into()];
    expect_exit(&q, PASS_MULTIBOOT);
    q.extra.clear();
    q.exit_ports = vec![marker::KERNEL_PORT];
    expect_exit(&q, qemu_exit(marker::KERNEL_MULTIBOOT));
}

/// The bench's translated code per step: under TCG, QEMU's translation log
/// splits at the inline stamps (their addresses listed in the ELF) into the
/// timeline's steps, the steps add up to what the whole log counts, and
/// microvm translates almost nothing for the PC set-up.
#[test]
fn translated_code_per_step_under_tcg() {
    let image = std::fs::read(&firmware().elf).unwrap();
    let stamps = xtask::rom::stamp_addresses(&image).expect("the stamps' addresses");
    // one per step at least (the kinds of kernel each inline their own)
    assert!(stamps.len() >= 10, "{stamps:x?}");
    let mut pci = Vec::new();
    for machine in [Machine::Q35, Machine::Microvm] {
        let dir = scratch().join(format!("tcg-{}", machine.name()));
        let q = probe_boot(&dir, machine);
        let steps = xtask::bench::cost::translated_steps(&q, &dir, &stamps).expect("in_asm log");
        assert_eq!(steps.len(), 11, "{machine:?}: {steps:?}");
        // A second boot, counted whole: TCG translates the same code each time.
        let total = xtask::bench::cost::translated_code(&q, &dir).expect("in_asm log");
        let sum = |f: fn(&xtask::bench::cost::Translated) -> u64| steps.iter().map(f).sum::<u64>();
        let (blocks, insns) = (sum(|t| t.blocks), sum(|t| t.instructions));
        assert!(
            blocks == total.blocks && insns == total.instructions,
            "{machine:?}: steps add up to ({blocks}, {insns}), the boot to ({}, {}): {steps:?}",
            total.blocks,
            total.instructions
        );
        pci.push(steps[HARDWARE_SEGMENT].instructions);
    }
    assert!(pci[0] > 500 && pci[1] < 100, "pci_hardware: {pci:?}");
}

/// The bench's in-process timing: QEMU started paused runs only after QMP's
/// `cont`, reaches ferrite's last marker, and the time from `cont` is part of
/// the whole process's.
#[test]
fn timed_from_qmp_cont() {
    let k = kernel("default.bzImage", &BzImageSpec::default());
    let mut q = qemu(Machine::Microvm, &k);
    q.exit_ports = vec![marker::KERNEL_PORT];
    let out = q.run_from_cont().expect("running QEMU paused");
    assert_eq!(
        out.exit_code,
        Some(qemu_exit(marker::KERNEL_BZIMAGE)),
        "{}",
        out.stderr
    );
    let from_cont = out.from_cont.expect("QMP negotiated and cont sent");
    assert!(from_cont < out.wall, "{from_cont:?} vs {:?}", out.wall);
}
