# The jump into Linux. Both entries: interrupts off, DS = ES = SS = __BOOT_DS,
# RSI/ESI = the zero page, EBP = EDI = EBX = 0 (Documentation/arch/x86/boot.rst).

.section .ram.text, "ax"
.code64

# enter_linux64(entry: u64 in rdi, boot_params: u64 in rsi) -> !
# Long mode, paging on, identity map in place; CS is already __BOOT_CS (0x10).
.globl enter_linux64
enter_linux64:
    cli
    mov ${boot_ds}, %eax
    # SS first: under TCG each segment load ends a translation block, and
    # the instruction after SS's (interrupts inhibited) is one of its own;
    # that one being DS's load, which ends its block anyway, saves a block.
    mov %eax, %ss
    mov %eax, %ds
    mov %eax, %es
    mov %rdi, %rax
    xor %edi, %edi
    xor %ebx, %ebx
    xor %ebp, %ebp
    jmp *%rax

# enter_linux32(entry: u32 in edi, boot_params: u32 in esi) -> !
# Leaves long mode: load the 32-bit boot GDT, far-return into 32-bit code,
# turn paging off, clear EFER.LME and PAE, and jump. Runs from low RAM, which is
# identity-mapped, so the switch is seamless.
.globl enter_linux32
enter_linux32:
    cli
    mov $gdt_linux32_ptr, %eax
    lgdt (%rax)
    mov %edi, %edx                 # entry survives in edx until rdmsr
    push ${boot_cs}
    lea 1f(%rip), %rax
    push %rax
    lretq
.code32
1:
    mov %cr0, %eax
    and ${cr0_no_pg}, %eax
    mov %eax, %cr0
    mov %edx, %edi
    mov ${efer_msr}, %ecx
    rdmsr
    and ${efer_no_lme}, %eax
    wrmsr
    mov %cr4, %eax
    and ${cr4_no_pae}, %eax
    mov %eax, %cr4
    mov ${boot_ds}, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    push %edi
    xor %edi, %edi
    xor %ebx, %ebx
    xor %ebp, %ebp
    ret

# enter_flat32(entry: u32 in edi, ebx: u32 in esi, eax: u32 in edx) -> !
# The PVH entry (Xen's x86/HVM direct boot ABI) and the multiboot v1 entry:
# 32-bit flat protected mode, paging off, CR0 = PE only, CR4 = 0, EFER.LME
# clear, EBX = the start info or multiboot information, EAX = the multiboot
# magic (0 for PVH). Leaves long mode as enter_linux32 does, through the same
# GDT.
.code64
.globl enter_flat32
enter_flat32:
    cli
    mov $gdt_linux32_ptr, %eax
    lgdt (%rax)
    mov %esi, %ebx
    mov %edx, %ebp                 # EAX's value survives in ebp
    push ${boot_cs}
    lea 1f(%rip), %rax
    push %rax
    lretq
.code32
1:
    mov ${cr0_pe}, %eax
    mov %eax, %cr0
    mov ${efer_msr}, %ecx
    rdmsr
    and ${efer_no_lme}, %eax
    wrmsr
    xor %eax, %eax
    mov %eax, %cr4
    mov ${boot_ds}, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    mov %eax, %fs
    mov %eax, %gs
    mov %ebp, %eax
    xor %ecx, %ecx
    xor %edx, %edx
    xor %esi, %esi
    xor %ebp, %ebp
    jmp *%edi
