#!/bin/busybox sh
# /init of the parity initramfs: prints what the guest sees of its firmware's
# set-up, section by section, between "=== name" lines, then powers off.
# xtask/src/parity.rs boots it under SeaBIOS and ferrite and compares.
bb=/bin/busybox
$bb mount -t proc proc /proc
$bb mount -t sysfs sysfs /sys
sec() { echo "=== $1"; }
untime() { $bb sed -e 's/^\[ *[0-9.]*\] //' -e 's/^<[0-9]>\[ *[0-9.]*\] /&/'; }

sec e820
$bb dmesg | untime | $bb grep 'BIOS-e820'
sec iomem
$bb cat /proc/iomem
sec ioports
$bb cat /proc/ioports
sec pci
for d in /sys/bus/pci/devices/*; do
    echo "$($bb basename $d) $($bb cat $d/vendor) $($bb cat $d/device) class=$($bb cat $d/class) irq=$($bb cat $d/irq)"
    $bb grep -v '^0x0000000000000000 0x0000000000000000' $d/resource | $bb sed 's/^/  res /'
    $bb od -An -tx1 -N64 $d/config | $bb sed 's/^/  cfg/'
done
sec mtrr
$bb cat /proc/mtrr
sec pat
$bb dmesg | untime | $bb grep -E 'x86/PAT|mtrr'
sec acpi
$bb ls /sys/firmware/acpi/tables
sec dmi
for f in /sys/class/dmi/id/*; do
    [ -f "$f" ] && echo "$($bb basename $f)=$($bb cat $f 2>/dev/null)"
done
sec cpus
echo "nproc=$($bb nproc)"
for f in online possible present; do
    echo "$f=$($bb cat /sys/devices/system/cpu/$f)"
done
sec input
$bb cat /proc/bus/input/devices
sec interrupts
$bb awk 'NR > 1 { printf "%s", $1; for (i = 2; i <= NF; i++) if ($i !~ /^[0-9]+$/) printf " %s", $i; print "" }' /proc/interrupts
sec warnings
$bb dmesg -r | $bb grep -E '^<[0-4]>' | $bb sed -e 's/^<[0-9]>\[ *[0-9.]*\] //'
$bb dmesg | untime | $bb grep -iE 'BAR .*(assign|fail)|reassign|can.t claim|firmware bug|FW_BUG|inconsistent|no compatible bridge window' 
sec acpi-dmesg
$bb dmesg | untime | $bb grep '^ACPI'
sec pci-dmesg
$bb dmesg | untime | $bb grep -E '^(pci|PCI|pci_bus|pcieport|shpchp|acpiphp)[ :]'
sec messages
$bb dmesg | untime | $bb grep -E 'BAR|reassign|can.t claim|Firmware Bug|FW_BUG|WARNING|inconsistent|BIOS|MTRR' \
    | $bb grep -v 'BIOS-e820'
# what the firmware placed or left (MP table, initrd, PCI gap, text console)
# and what Linux decides from it (the RTC's alarm source follows the BIOS date,
# the timer's route from the MP table's interrupt entries when ACPI is off)
$bb dmesg | untime | $bb grep -E 'MP-table|^MPTABLE|^Processors:|^RAMDISK|available for PCI devices|^Console: |^rtc_cmos .*alarms'
# (8259A, not 8259: bare digits also match timestamps and estimates, e.g.
# the Unix time 1796082592 in the audit line)
$bb dmesg | untime | $bb grep -E '^\.\.TIMER|IO-APIC|IOAPIC|APIC timer|ExtINT|8259A'
sec end
# without ACPI (-M pc,acpi=off) Linux cannot power off; a reset ends QEMU
# just as well under -no-reboot
if [ -e /sys/firmware/acpi/tables/FACP ]; then $bb poweroff -f; else $bb reboot -f; fi
