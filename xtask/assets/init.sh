#!/bin/busybox sh
# /init of ferrite's test and bench initramfs. Checks what the firmware passed on
# (command line, initrd contents, memory, CPUs), reports on the console, writes 2
# to port 0xf6 (the "userspace reached" marker) when all is well, and powers off.
bb=/bin/busybox
$bb mount -t proc proc /proc
$bb mount -t sysfs sysfs /sys
$bb mount -t devtmpfs devtmpfs /dev 2>/dev/null
. /expect

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
if $bb grep -q ferrite.reboot=1 /proc/cmdline; then
    # CMOS byte 0x7e (unused by QEMU) survives a reset: 0xa5 means "rebooted".
    cmos() { printf "$1" | $bb dd of=/dev/port bs=1 seek=112 count=1 2>/dev/null; }
    cmos '\176'
    flag=$($bb dd if=/dev/port bs=1 skip=113 count=1 2>/dev/null | $bb od -An -tx1 | $bb tr -d ' ')
    if [ "$flag" != "a5" ]; then
        cmos '\176'
        printf '\245' | $bb dd of=/dev/port bs=1 seek=113 count=1 2>/dev/null
        echo "ferrite-init: rebooting"
        $bb reboot -f
    fi
    cmos '\176'
    printf '\000' | $bb dd of=/dev/port bs=1 seek=113 count=1 2>/dev/null
    echo "ferrite-init: back after a reboot"
fi
echo "ferrite-init: PASS cpus=$cpus memtotal=${mem}kB"
printf '\002' | $bb dd of=/dev/port bs=1 seek=246 count=1 2>/dev/null
$bb poweroff -f
