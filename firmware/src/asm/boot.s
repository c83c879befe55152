# From the reset vector to Rust: real mode -> protected mode -> long mode, using
# the identity map that sits in the ROM, then copy the RAM image out of the ROM,
# clear .bss, set the stack and call rust_main. Constants come from Rust (boot.rs).

.section .reset, "ax"
.code16
.globl reset_vector
reset_vector:
    jmp rom16_start             # a near jump inside the ROM's top 64 KiB segment
    .balign 16, 0xf4

.section .rom.text, "ax"
.code16
rom16_start:
    cli
    cld
    # Boot marker: tQEMU ends here (isa-debug-exit on this port ends QEMU).
    mov ${marker_value}, %al
    out %al, ${marker_port}
    rdtsc                       # the timeline's first stamp, kept in ebp:ebx
    mov %eax, %ebx
    mov %edx, %ebp
    lgdtl %cs:(gdt_ptr - 0xffff0000)
    mov %cr0, %eax
    and ${cr0_clear}, %eax      # caches on (CD, NW clear)
    or ${cr0_pe}, %eax
    mov %eax, %cr0
    ljmpl ${code32}, $rom32_start

.code32
rom32_start:
    mov ${data}, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %ax, %fs
    mov %ax, %gs
    mov ${page_tables}, %eax
    mov %eax, %cr3
    mov %cr4, %eax
    or ${cr4_pae}, %eax
    mov %eax, %cr4
    mov ${efer_msr}, %ecx
    rdmsr
    or ${efer_lme}, %eax
    wrmsr
    mov %cr0, %eax
    or ${cr0_pg}, %eax
    mov %eax, %cr0
    ljmpl ${code64}, $rom64_start

.code64
rom64_start:
    lidt idt_ptr(%rip)          # exceptions now report instead of triple-faulting
    mov $ram_image_lma, %esi
    mov $ram_image_start, %edi
    mov $ram_image_qwords, %ecx
    rep movsq
    mov $bss_start, %edi
    mov $bss_qwords, %ecx
    xor %eax, %eax
    rep stosq
    mov $stack_top, %esp
    shl $32, %rbp
    or %rbx, %rbp
    mov %rbp, %rdi              # rust_main(reset_tsc)
    xor %ebp, %ebp
    mov ${main}, %eax           # absolute: RAM is ~4 GiB away from here
    call *%rax
    ud2

# Every CPU exception lands here (one handler: ferrite has no recoverable ones).
# The Rust side gets the stack pointer, to report the faulting RIP.
.globl exception_entry
exception_entry:
    mov %rsp, %rdi
    and $-16, %rsp
    mov ${exception}, %eax
    call *%rax
    ud2

# The firmware's GDT: in ROM, so every descriptor has its Accessed bit preset
# (the CPU would otherwise try to write it). Selectors match the Linux boot
# protocol's 64-bit entry (__BOOT_CS = 0x10, __BOOT_DS = 0x18).
.section .rom.gdt, "a"
.balign 8
gdt:
    .quad 0
    .quad {code32_desc}
    .quad {code64_desc}
    .quad {data_desc}
gdt_end:
gdt_ptr:
    .word gdt_end - gdt - 1
    .long gdt

# 32 interrupt gates to exception_entry; the handler's address halves come from
# linker.ld (exception_entry_lo/hi), since the assembler cannot split a symbol.
.balign 8
idt:
.rept 32
    .word exception_entry_lo
    .word {code64}
    .byte 0, 0x8E               # present, DPL 0, 64-bit interrupt gate
    .word exception_entry_hi
    .long 0
    .long 0
.endr
idt_end:
idt_ptr:
    .word idt_end - idt - 1
    .quad idt

# For the 32-bit kernel entry, where __BOOT_CS (0x10) must be 32-bit code.
.balign 8
.globl gdt_linux32_ptr
gdt_linux32:
    .quad 0
    .quad {code64_desc}
    .quad {code32_desc}
    .quad {data_desc}
gdt_linux32_end:
gdt_linux32_ptr:
    .word gdt_linux32_end - gdt_linux32 - 1
    .quad gdt_linux32
