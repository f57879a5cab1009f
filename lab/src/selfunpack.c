/* selfunpack.c - benign control: packer-like. In main (after the entry point)
 * it makes part of its own .text writable, decodes code into it, restores the
 * protection and runs the decoded code. */
#define VICTIM_NAME "selfunpack"
#define VICTIM_OWN_TLS
#include "victim.h"

/* 64 bytes of int3 inside .text: the "packed" area. */
__asm__(".text\n"
        ".p2align 4\n"
        "unpack_area:\n"
        ".fill 64,1,0xcc\n");
extern unsigned char unpack_area[];

#define KEY 0x5A
/* mov eax, 0x1234 ; ret -- stored XOR KEY */
static const unsigned char packed[] = {0xB8 ^ KEY, 0x34 ^ KEY, 0x12 ^ KEY, 0x00 ^ KEY, 0x00 ^ KEY, 0xC3 ^ KEY};

static void victim_activity(void)
{
    DWORD old = 0;
    if (!VirtualProtect(unpack_area, 64, PAGE_EXECUTE_READWRITE, &old))
        lab_die("unpack-protect");
    for (unsigned i = 0; i < sizeof packed; i++)
        unpack_area[i] = packed[i] ^ KEY;
    VirtualProtect(unpack_area, 64, old, &old);
    FlushInstructionCache(GetCurrentProcess(), unpack_area, 64);
    int r = ((int (*)(void))unpack_area)();
    char extra[64];
    char *p = lab_cat(extra, extra + sizeof extra, "area=");
    p = lab_num(p, extra + sizeof extra, (ULONG_PTR)unpack_area, 16);
    p = lab_cat(p, extra + sizeof extra, " result=");
    lab_num(p, extra + sizeof extra, (unsigned)r, 10);
    lab_mark2("activity", "selfunpack", extra);
}
