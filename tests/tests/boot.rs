//! ferrite boots the test kernel, which checks the zero page, command line,
//! initrd, e820 map, ACPI tables and CPU state it was handed.

use ferrite_tests::{expect_exit, firmware, kernel, qemu, random_file, scratch};
use xtask::qemu::Machine;
use xtask::testkernel::{BzImageSpec, PASS_32, PASS_64, with_check};

/// One boot with an initrd, checked against memory size and CPU count.
fn boot(machine: Machine, memory_mib: u64, cpus: u32, extra_cmdline: &str) {
    let k = kernel("default.bzImage", &BzImageSpec::default());
    let name = format!("initrd-{}-{memory_mib}-{cpus}", machine.name());
    let (initrd, hash) = random_file(
        &name,
        300_000 + cpus as usize * 4099,
        memory_mib ^ cpus as u64,
    );
    let mut q = qemu(machine, &k);
    q.memory_mib = memory_mib;
    q.cpus = cpus;
    q.initrd = Some(initrd);
    q.append = Some(with_check(&format!(
        "console=ttyS0 expect.cpus={cpus} expect.mem_mib={memory_mib} expect.initrd_len={} expect.initrd_fnv={hash:016x}{extra_cmdline}",
        300_000 + cpus as usize * 4099
    )));
    let out = expect_exit(&q, PASS_64);
    assert!(out.serial.contains("testkernel: PASS"), "{}", out.serial);
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
    q.exit_ports = vec![0xF4];
    q.append = Some("x".into());
    let out = expect_exit(&q, 0x26 * 2 + 1);
    assert!(
        out.serial.contains("ferrite: error: the initrd"),
        "{}",
        out.serial
    );
}

#[test]
fn dtb_arrives_as_setup_data() {
    let k = kernel("default.bzImage", &BzImageSpec::default());
    let (dtb, hash) = random_file("fake.dtb", 5000, 11);
    for machine in [Machine::Pc, Machine::Microvm] {
        let mut q = qemu(machine, &k);
        q.extra = vec!["-dtb".into(), dtb.display().to_string()];
        q.append = Some(with_check(&format!("expect.dtb_fnv={hash:016x}")));
        expect_exit(&q, PASS_64);
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
        q.exit_ports = vec![0xF5];
        expect_exit(&q, 3); // value 1
        q.exit_ports = vec![0xF4];
        expect_exit(&q, 3 * 2 + 1);
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
    q.extra = vec![
        "-fw_cfg".into(),
        "name=opt/ferrite/log-level,string=debug".into(),
    ];
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

#[test]
fn timeline_on_the_debug_console_on_request() {
    let k = kernel("default.bzImage", &BzImageSpec::default());
    let log = scratch().join("debugcon.txt");
    let mut q = qemu(Machine::Pc, &k);
    q.append = Some(with_check("x"));
    q.extra = vec![
        "-debugcon".into(),
        format!("file:{}", log.display()),
        "-fw_cfg".into(),
        "name=opt/ferrite/timeline,string=1".into(),
    ];
    expect_exit(&q, PASS_64);
    let line = std::fs::read_to_string(&log).unwrap();
    assert!(
        line.starts_with("ferrite-timeline: reset=0 rust="),
        "{line}"
    );
    let stamps: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|kv| kv.split('=').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(stamps.len(), 11, "{line}");
    assert!(
        stamps.windows(2).all(|w| w[0] <= w[1]),
        "stamps not increasing: {line}"
    );

    // The file's value decides, not its presence: `string=0` is off.
    std::fs::remove_file(&log).unwrap();
    q.extra[3] = "name=opt/ferrite/timeline,string=0".into();
    expect_exit(&q, PASS_64);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!text.contains("ferrite-timeline"), "{text}");
}

/// The bench's per-step instruction counts: under KVM (which emulates every
/// guest instruction on this machine type) the trace splits at each call of
/// ferrite's stamp function into the timeline's steps, and microvm pays
/// nothing for the PC set-up that pc and q35 need.
#[test]
fn instructions_per_step_under_kvm() {
    assert!(
        std::path::Path::new("/dev/kvm").exists(),
        "this test needs /dev/kvm"
    );
    let k = kernel("default.bzImage", &BzImageSpec::default());
    let mut hardware = Vec::new();
    for machine in Machine::ALL {
        let mut q = qemu(machine, &k);
        q.exit_ports = vec![0xF4]; // ferrite's last marker, right before the jump
        let dir = scratch().join(format!("trace-{}", machine.name()));
        std::fs::create_dir_all(&dir).unwrap();
        let seg = xtask::insn_steps::record(&q, &firmware().elf, &dir).expect("tracing a boot");
        // reset..rust, then one segment per step up to zero_page, then the hand-off
        assert_eq!(seg.counts.len(), 11, "{machine:?}: {:?}", seg.counts);
        assert!(
            seg.counts[..10].iter().all(|&n| n > 0),
            "{machine:?}: {:?}",
            seg.counts
        );
        // the hand-off is a few instructions up to the 0xf4 marker
        assert!(seg.counts[10] < 100, "{machine:?}: {:?}", seg.counts);
        hardware.push(seg.counts[3]); // pci_hardware (after rust, fw_cfg, e820)
    }
    let [pc, q35, microvm] = hardware[..] else {
        unreachable!()
    };
    assert!(pc > 1000 && q35 > 1000, "pc {pc}, q35 {q35}");
    assert!(
        microvm < 100,
        "microvm's hardware step: {microvm} instructions"
    );
}
