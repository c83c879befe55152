#!/bin/busybox sh
# /init of ferrite's test and bench initramfs. Checks what the firmware passed on
# (command line, initrd contents, memory, CPUs), reports on the console, writes 2
# to port 0xf6 (the "userspace reached" marker) when all is well, and powers off.
bb=/bin/busybox
$bb mount -t proc proc /proc
$bb mount -t sysfs sysfs /sys
$bb mount -t devtmpfs devtmpfs /dev 2>/dev/null
. /expect

# With ferrite.dmesg=1 (`cargo xtask host-cost --kernel-init`): the kernel's
# ring buffer, time-stamped, between two lines the tool looks for. The boot
# itself ran with the console quiet, so printing its messages cost it nothing.
if $bb grep -q ferrite.dmesg=1 /proc/cmdline; then
    echo "ferrite-init: dmesg begin"
    $bb dmesg
    echo "ferrite-init: dmesg end"
fi

fail() {
    echo "ferrite-init: FAIL $*"
    $bb poweroff -f
}

$bb grep -q -- "$EXPECT_TOKEN" /proc/cmdline || fail "command line lacks $EXPECT_TOKEN: $($bb cat /proc/cmdline)"
sum=$($bb sha256sum /payload.bin | $bb cut -d' ' -f1)
[ "$sum" = "$EXPECT_SHA256" ] || fail "payload sha256 $sum, expected $EXPECT_SHA256"
cpus=$($bb grep -c ^processor /proc/cpuinfo)
[ "$cpus" = "$EXPECT_CPUS" ] || fail "$cpus CPUs online, expected $EXPECT_CPUS"
mem=$($bb awk '/^MemTotal:/ {print $2}' /proc/meminfo)
[ "$mem" -le "$EXPECT_MEM_MAX_KB" ] && [ "$mem" -ge "$EXPECT_MEM_MIN_KB" ] \
    || fail "MemTotal $mem kB, expected $EXPECT_MEM_MIN_KB..$EXPECT_MEM_MAX_KB"
# CMOS byte 0x7e (unused by QEMU) survives a reset and a suspend: a flag that
# tells a second run of /init from the first.
cmos_flag() {
    printf '\176' | $bb dd of=/dev/port bs=1 seek=112 count=1 2>/dev/null
    $bb dd if=/dev/port bs=1 skip=113 count=1 2>/dev/null | $bb od -An -tx1 | $bb tr -d ' '
}
set_cmos_flag() {
    printf '\176' | $bb dd of=/dev/port bs=1 seek=112 count=1 2>/dev/null
    printf "$1" | $bb dd of=/dev/port bs=1 seek=113 count=1 2>/dev/null
}
if $bb grep -q ferrite.reboot=1 /proc/cmdline; then
    # 0xa5: "rebooted".
    if [ "$(cmos_flag)" != "a5" ]; then
        set_cmos_flag '\245'
        echo "ferrite-init: rebooting"
        $bb reboot -f
    fi
    set_cmos_flag '\000'
    echo "ferrite-init: back after a reboot"
fi
if $bb grep -q ferrite.suspend=1 /proc/cmdline; then
    # 0x5a: "suspended". Finding it here means the firmware booted the kernel
    # again instead of resuming it.
    if [ "$(cmos_flag)" = "5a" ]; then
        set_cmos_flag '\000'
        fail "/init started again after suspending: the guest was rebooted, not resumed"
    fi
    states=$($bb cat /sys/power/state)
    echo " $states " | $bb grep -q " mem " || fail "no suspend to RAM offered: /sys/power/state is '$states'"
    set_cmos_flag '\132'
    echo "ferrite-init: suspending pid=$$"
    # Under a loaded host the alarm can ring before the kernel is asleep; it
    # then aborts the suspend (echo fails): arm it again and retry.
    tries=0
    while :; do
        echo 0 > /sys/class/rtc/rtc0/wakealarm
        echo +3 > /sys/class/rtc/rtc0/wakealarm || fail "cannot set the RTC wake alarm"
        echo mem > /sys/power/state && break
        tries=$((tries + 1))
        [ $tries -lt 3 ] || fail "echo mem > /sys/power/state failed $tries times"
        echo "ferrite-init: the suspend was aborted, trying again"
    done
    set_cmos_flag '\000'
    echo "ferrite-init: resumed pid=$$"
    $bb dmesg | $bb grep -q "ACPI: PM: Waking up from system sleep state S3" \
        || fail "no 'Waking up from system sleep state S3' in dmesg"
fi
echo "ferrite-init: PASS cpus=$cpus memtotal=${mem}kB"
printf '\002' | $bb dd of=/dev/port bs=1 seek=246 count=1 2>/dev/null
$bb poweroff -f
