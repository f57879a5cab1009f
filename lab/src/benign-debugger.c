/* benign-debugger.c - benign control, debugger-like: read the suspended
 * child's memory, write one int3 byte at its entry point in .text, read it
 * back, then restore the original byte, as a debugger setting and removing a
 * breakpoint does. */
#include "attack.h"

int main(void)
{
    struct victim v;
    victim_start(&v, "victim-tls.exe");
    IMAGE_NT_HEADERS64 nt;
    ULONG_PTR nt_at;
    victim_headers(&v, &nt, &nt_at);
    ULONG_PTR at = v.image_base + nt.OptionalHeader.AddressOfEntryPoint;
    unsigned char orig = 0, check = 0, int3 = 0xCC;
    rd(&v, at, &orig, 1, "read-entry-byte");
    wr(&v, at, &int3, 1, "write-int3");
    rd(&v, at, &check, 1, "read-back-int3");
    if (check != 0xCC)
        lab_die("int3-not-written");
    wr(&v, at, &orig, 1, "restore-byte");
    rd(&v, at, &check, 1, "read-back-restored");
    if (check != orig)
        lab_die("byte-not-restored");
    FlushInstructionCache(v.pi.hProcess, (LPCVOID)at, 1);
    char detail[128];
    snprintf(detail, sizeof detail, "int3_at=0x%llx original=0x%02x restored", (unsigned long long)at, orig);
    victim_report(&v, detail);
    return victim_finish(&v);
}
