/* jit.c - benign control: JIT-like. In main (after the entry point) it
 * allocates RWX memory in itself, writes code there and runs it. */
#define VICTIM_NAME "jit"
#define VICTIM_OWN_TLS
#include "victim.h"

static void victim_activity(void)
{
    /* mov eax, 42 ; ret */
    static const unsigned char code[] = {0xB8, 0x2A, 0x00, 0x00, 0x00, 0xC3};
    unsigned char *mem = VirtualAlloc(NULL, 4096, MEM_COMMIT | MEM_RESERVE, PAGE_EXECUTE_READWRITE);
    if (!mem)
        lab_die("jit-alloc");
    for (unsigned i = 0; i < sizeof code; i++)
        mem[i] = code[i];
    FlushInstructionCache(GetCurrentProcess(), mem, sizeof code);
    int r = ((int (*)(void))mem)();
    char extra[64];
    char *p = lab_cat(extra, extra + sizeof extra, "region=");
    p = lab_num(p, extra + sizeof extra, (ULONG_PTR)mem, 16);
    p = lab_cat(p, extra + sizeof extra, " result=");
    lab_num(p, extra + sizeof extra, (unsigned)r, 10);
    lab_mark2("activity", "jit", extra);
    /* the region stays allocated, so scans at the at-main checkpoint see it */
}
