# Application processors start here: cpus.rs copies these bytes to the page it
# names in the start-up IPI, so they run in real mode with CS = page >> 4, IP = 0.
# Each writes the MSR list cpus.rs put at offset {msrs} (index, low, high; a zero
# index ends it), sets its APIC ID's bit in the bitmap at {ids}, counts itself in
# at {count} and halts until the kernel's INIT-SIPI.

.section .rodata.ap_trampoline, "a"
.code16
.globl ap_trampoline_start
.globl ap_trampoline_end
ap_trampoline_start:
    cli
    mov %cs, %ax
    mov %ax, %ds
    mov ${msrs}, %si
1:  mov (%si), %ecx
    test %ecx, %ecx
    jz 2f
    mov 4(%si), %eax
    mov 8(%si), %edx
    wrmsr
    add $12, %si
    jmp 1b
2:  mov $1, %eax
    cpuid
    shr $24, %ebx               # initial APIC ID
    lock btsw %bx, {ids}
    lock incw {count}
3:  hlt
    jmp 3b
ap_trampoline_end:
.code64
